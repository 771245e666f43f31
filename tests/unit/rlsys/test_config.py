"""Typed config: presets load, dotted overrides apply, bad keys and values name themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from rlsys.config import Config, ConfigError, dump_config, explain, load_config

PRESETS = sorted((Path(__file__).parents[3] / "configs").glob("*.yaml"))


def test_presets_exist_and_load() -> None:
    assert {p.name for p in PRESETS} >= {"tiny_cpu.yaml", "gpu_8x_qwen3_8b.yaml"}
    for p in PRESETS:
        assert isinstance(load_config(p), Config)


def test_make_learn_is_make_run_with_a_longer_budget() -> None:
    """configs/tiny_learn.yaml differs from configs/tiny_cpu.yaml only in its budget and
    its name: the same pipeline, so `make learn` measures what `make run` cannot reach."""
    run = load_config(PRESETS[0].with_name("tiny_cpu.yaml")).model_dump(mode="json")
    learn = load_config(PRESETS[0].with_name("tiny_learn.yaml")).model_dump(mode="json")
    budget = {("trainer", "name"), ("trainer", "steps"), ("trainer", "save_every"),
              ("trainer", "objective_samples"), ("trainer", "sft", "steps"),
              ("trainer", "sft", "save_every"), ("trainer", "align", "steps"),
              ("trainer", "align", "save_every"), ("trainer", "align", "one_node_steps")}

    def flat(d: dict, at: tuple = ()) -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, (*at, k)) if isinstance(v, dict) else {(*at, k): v})
        return out

    a, b = flat(run), flat(learn)
    assert {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)} == budget
    assert learn["trainer"]["sft"]["steps"] > run["trainer"]["sft"]["steps"]
    assert learn["trainer"]["align"]["save_every"] > 0 and learn["trainer"]["name"] == "learn"
    for cfg in (run, learn):  # the same curriculum: at least the first half on one node
        align = cfg["trainer"]["align"]
        assert align["steps"] / 2 <= align["one_node_steps"] < align["steps"]


def test_dotted_overrides_are_typed_and_nested() -> None:
    cfg = load_config(PRESETS[0], ["trainer.steps=7", "rollout.n=4", "data.env.nodes=[3, 5]",
                                   "algorithm.spatial.enabled=true", "learner.lr=3e-5"])
    assert cfg.trainer.steps == 7 and cfg.rollout.n == 4
    assert cfg.data.env.nodes == [3, 5]
    assert cfg.algorithm.spatial.enabled is True
    assert cfg.learner.lr == pytest.approx(3e-5)


@pytest.mark.parametrize("override, needle", [
    ("rollout.nn=3", "unknown key 'rollout.nn' (valid at rollout: device, engines"),
    ("nope=1", "unknown key 'nope'"),
    ("rollout.n=eight", "rollout.n: Input should be a valid integer"),
    ("rollout.n=0", "rollout.n: Input should be greater than or equal to 1"),
    ("learner.zero_stage=1", "learner.zero_stage"),
    ("data.source=file", "data.file is required"),
    ("trainer.steps", "is not of the form key.sub=value"),
])
def test_bad_overrides_name_the_key(override: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert needle in str(e.value)


def test_unknown_key_in_a_file_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("rollout:\n  n: 4\n  temprature: 0.7\n")
    with pytest.raises(ConfigError, match=r"rollout.temprature: unknown key"):
        load_config(p)
    p.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(PRESETS[0], ["trainer.steps=9"])
    out = dump_config(cfg, tmp_path / "run" / "config.yaml")
    assert yaml.safe_load(out.read_text())["trainer"]["steps"] == 9
    assert load_config(out) == cfg


def test_every_field_is_documented() -> None:
    lines = explain()
    assert any(line.startswith("rollout.n = 8  # Completions per prompt") for line in lines)
    undocumented = [line for line in lines if line.rstrip().endswith("#")]
    assert undocumented == []


def test_judge_settings_are_checked_and_point_the_judge_reward() -> None:
    judge_reward = "reward.rewards=[{name: accuracy}, {name: judge, weight: 0.5}]"
    with pytest.raises(ConfigError, match="reward 'judge' needs a judge"):
        load_config(None, [judge_reward])
    with pytest.raises(ConfigError, match="judge_server.base_url is required"):
        load_config(None, [judge_reward, "judge_server.mode=endpoint"])
    cfg = load_config(None, [judge_reward, "judge_server.mode=endpoint",
                             "judge_server.base_url=http://judge:8000/v1",
                             "judge_server.model=big"])
    specs = cfg.reward_specs(cfg.judge_server.base_url)
    assert specs[1]["params"] == {"base_url": "http://judge:8000/v1", "model": "big",
                                  "structured": True}
    assert specs[0]["params"] == {}


def test_spatial_component_must_be_a_configured_reward() -> None:
    with pytest.raises(ConfigError, match="spatial.component 'nope' is not one of"):
        load_config(None, ["algorithm.spatial.component=nope"])
    cfg = load_config(None, ["algorithm.spatial.component=accuracy"])
    assert cfg.algorithm.spatial.component == "accuracy"


def test_the_sft_learning_rate_schedule() -> None:
    from rlsys.config import SFTConfig

    flat = SFTConfig(steps=5, lr=1e-3)
    assert [flat.lr_at(i) for i in range(5)] == [1e-3] * 5
    cos = SFTConfig(steps=5, lr=1e-3, schedule="cosine", min_lr_ratio=0.1)
    lrs = [cos.lr_at(i) for i in range(5)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-4)
    assert lrs[2] == pytest.approx(0.55e-3) and all(np.diff(lrs) < 0)
    assert cos.lr_at(99) == pytest.approx(1e-4)  # past the last step: stays at the floor
    assert SFTConfig(steps=1, lr=1e-3, schedule="cosine").lr_at(0) == 1e-3
    with pytest.raises(ValueError):
        SFTConfig(schedule="linear")


def test_examples_seen_counts_each_stage_in_its_own_batches() -> None:
    """`strl probe --plot`'s x axis: supervised batches, then GRPO's prompts x n."""
    cfg = load_config(PRESETS[0].with_name("tiny_cpu.yaml"))  # align 600x16, CoT 400x8, 4x4
    assert cfg.trainer.stages == ["sft_align", "sft_cot", "grpo"]
    assert (cfg.trainer.align.steps, cfg.trainer.sft.steps) == (600, 400)
    assert cfg.examples_seen(0, 0) == 0
    assert cfg.examples_seen(0, 50) == 50 * 16
    assert cfg.examples_seen(1, 10) == 600 * 16 + 10 * 8
    assert cfg.examples_seen(2, 3) == 600 * 16 + 400 * 8 + 3 * 4 * 4
    assert cfg.trainer.supervised("sft_align") is cfg.trainer.align
    assert cfg.trainer.supervised("sft_cot") is cfg.trainer.sft
