"""Config to runtime in one direction: the actors' settings hold the config's sections
themselves (no copied fields, no second set of defaults), and one `Sampling` type, built by
the config, is what every engine receives."""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from actors.judge_server import JudgeServerSettings
from actors.learner import LearnerSettings
from actors.rollout import EngineSettings
from rlsys.algorithms import Correction
from rlsys.config import Config, JudgeServerConfig, load_config
from rlsys.sampling import Sampling

CONFIGS = Path(__file__).parents[3] / "configs"


def _defaulted(cls: type) -> set[str]:
    return {f.name for f in fields(cls)
            if f.default is not MISSING or f.default_factory is not MISSING}


def test_engine_and_learner_settings_are_the_config_sections() -> None:
    cfg = load_config(CONFIGS / "tiny_cpu.yaml", ["learner.lr=3e-3", "algorithm.kl_coef=0.5"])
    e = EngineSettings.from_config(cfg, "m", "cpu", "float32")
    assert e.model is cfg.model and e.rollout is cfg.rollout and e.seed == cfg.trainer.seed
    ln = LearnerSettings.from_config(cfg, "m", "cuda", "bfloat16", "nccl")
    assert ln.learner is cfg.learner and ln.algorithm is cfg.algorithm and ln.model is cfg.model
    assert (ln.learner.lr, ln.algorithm.kl_coef, ln.device, ln.dtype, ln.backend) == (
        3e-3, 0.5, "cuda", "bfloat16", "nccl")
    assert ln.encoder_lr == 3e-3  # model.encoder.lr unset: the LM's
    assert LearnerSettings.from_config(load_config(None, ["model.encoder.lr=0.1"]), "m", "cpu",
                                       "float32", "gloo").encoder_lr == 0.1
    # a setting no longer has a second default: nothing here can disagree with the config
    assert _defaulted(EngineSettings) == _defaulted(LearnerSettings) == set()


def test_the_judge_server_takes_its_config_and_keeps_only_engine_limits_of_its_own() -> None:
    cfg = load_config(None, ["judge_server.model=big", "rollout.kv_cache_gib=3",
                             "trainer.seed=5"])
    j = JudgeServerSettings.from_config(cfg, "policy", "cpu", "float32", "127.0.0.1")
    assert (j.model_path, j.served_name, j.dtype, j.kv_cache_gib, j.seed) == (
        "policy", "big", "float32", 3, 5)
    assert JudgeServerSettings.from_config(
        load_config(None, ["judge_server.model_path=judge-dir"]), "policy", "cpu",
        "float32").model_path == "judge-dir"
    from_config = set(JudgeServerConfig.model_fields) | {"served_name", "dtype", "seed",
                                                         "kv_cache_gib", "model_path"}
    assert _defaulted(JudgeServerSettings) == {"max_model_len", "gpu_memory_utilization",
                                               "max_tokens_cap"}
    assert not _defaulted(JudgeServerSettings) & from_config


def test_one_sampling_type_built_by_the_config() -> None:
    cfg = load_config(CONFIGS / "tiny_cpu.yaml", ["rollout.top_p=0.9", "trainer.seed=2"])
    r = cfg.rollout.sampling((7,))
    assert r == Sampling(n=cfg.rollout.n, temperature=cfg.rollout.temperature, top_p=0.9,
                         max_tokens=cfg.rollout.max_tokens, stop_token_ids=(7,))
    ev = cfg.eval_sampling((7,))
    assert (ev.n, ev.temperature, ev.top_p, ev.max_tokens, ev.stop_token_ids) == (
        1, cfg.trainer.eval_temperature, 0.9, cfg.rollout.max_tokens, (7,))
    assert ev.seed == cfg.eval_sampling(()).seed != Config().eval_sampling(()).seed  # seeded
    assert cfg.rollout.context == cfg.rollout.max_model_len
    assert Config().rollout.context == Config().rollout.max_prompt_tokens + Config(
    ).rollout.max_tokens
    # what the config declares, Sampling does not default
    assert not _defaulted(Sampling) & {"n", "temperature", "top_p", "max_tokens"}


def test_to_vllm_is_the_one_translation() -> None:
    s = Sampling(n=3, temperature=0.7, top_p=0.9, max_tokens=11, seed=4, stop_token_ids=(2, 5),
                 stop=("</answer>",), schema='{"type": "object"}')
    p = s.to_vllm()
    assert (p.n, p.temperature, p.top_p, p.max_tokens, p.seed) == (3, 0.7, 0.9, 11, 4)
    assert list(p.stop_token_ids) == [2, 5] and list(p.stop) == ["</answer>"]
    assert p.structured_outputs.json == '{"type": "object"}' and p.logprobs is None
    q = s.with_(schema=None).to_vllm(per_request_seed=False, logprobs=True, stream=True)
    assert q.seed is None and q.logprobs == 0 and q.structured_outputs is None
    assert q.output_kind.name == "DELTA"
    assert s.to_vllm(stream=False).output_kind.name == "FINAL_ONLY"


def test_the_config_builds_the_learners_correction() -> None:
    cfg = load_config(CONFIGS / "tiny_cpu.yaml", ["algorithm.correction=mis",
                                                "algorithm.correction_bounds=[0.5, 2.0]"])
    s = LearnerSettings.from_config(cfg, "m", "cpu", "float32", "gloo")
    assert s.correction == Correction("mis", 2.0, 0.5, 2.0)
    with pytest.raises(ValueError, match="correction_bounds"):
        load_config(CONFIGS / "tiny_cpu.yaml", ["algorithm.correction_bounds=[1.2, 2.0]"])
