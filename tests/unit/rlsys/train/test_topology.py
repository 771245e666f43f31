"""The topology plan: actors, bundles and node placement, for every preset."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlsys.cli import main
from rlsys.config import load_config
from rlsys.train.topology import PlacementError, plan_topology

CONFIGS = Path(__file__).parents[4] / "configs"


@pytest.mark.parametrize("preset", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_strl_plan_works_for_every_preset(preset: str, capsys) -> None:
    assert main(["plan", "--config", str(CONFIGS / preset)]) == 0
    out = capsys.readouterr().out
    assert "rollout-0" in out and "learner-0" in out and "reward-0" in out
    cfg = load_config(CONFIGS / preset)
    assert ("series: inline" in out) == (cfg.model.series == "inline")


def test_gpu_presets_read_series_through_the_encoder_and_plan_says_so(capsys) -> None:
    for name in ("gpu_8x_qwen3_8b.yaml", "gpu_2x8_qwen3_8b.yaml"):
        cfg = load_config(CONFIGS / name)
        assert cfg.model.series == "encoder" and cfg.trainer.stages[0] == "sft_align"
        assert main(["plan", "--config", str(CONFIGS / name)]) == 0
        out = capsys.readouterr().out
        assert "series: through the time-series encoder: patches of 16 steps" in out
        assert "read from /models/Qwen3-8B/config.json when the run starts" in out
    assert main(["plan", "--config", str(CONFIGS / "tiny_cpu.yaml"), "model.series=encoder",
                 "model.path=/nonexistent/tiny"]) == 0
    assert "-> hidden size 256 (the 'tiny' preset)" in capsys.readouterr().out


def test_tiny_cpu_plan_fits_two_cores() -> None:
    topo = plan_topology(load_config(CONFIGS / "tiny_cpu.yaml"))
    assert topo.device == "cpu" and topo.total_gpus == 0
    assert topo.total_cpus <= 4  # the local cluster's logical CPUs
    assert [a.role for a in topo.actors] == ["rollout", "learner", "reward"]


def test_gpu_preset_splits_learner_and_engines_over_eight_gpus() -> None:
    topo = plan_topology(load_config(CONFIGS / "gpu_8x_qwen3_8b.yaml"))
    assert topo.device == "cuda" and topo.total_gpus == 8
    learners = [a for a in topo.actors if a.role == "learner"]
    engines = [a for a in topo.actors if a.role == "rollout"]
    assert len(learners) == 4 and len(engines) == 4
    assert all(a.gpus == 1 for a in learners + engines)
    assert set(topo.group("learner").nodes) == {0}


def test_two_node_preset_puts_learner_and_engines_on_different_nodes() -> None:
    topo = plan_topology(load_config(CONFIGS / "gpu_2x8_qwen3_8b.yaml"))
    learner_nodes = set(topo.group("learner").nodes)
    engine_nodes = {n for g in topo.groups if g.name.startswith("rollout") for n in g.nodes}
    assert len(learner_nodes) == 1 and learner_nodes.isdisjoint(engine_nodes)


def test_tensor_parallel_engines_pack_their_gpus_on_one_node() -> None:
    cfg = load_config(CONFIGS / "gpu_8x_qwen3_8b.yaml",
                      ["rollout.engines=2", "rollout.tensor_parallel=2"])
    topo = plan_topology(cfg)
    for e in range(2):
        g = topo.group(f"rollout-{e}")
        assert len(g.bundles) == 2 and len(set(g.nodes)) == 1


def test_infeasible_placement_is_a_clear_error() -> None:
    cfg = load_config(CONFIGS / "gpu_8x_qwen3_8b.yaml", ["rollout.engines=6"])
    with pytest.raises(PlacementError, match="does not fit|on one node"):
        plan_topology(cfg)
    with pytest.raises(PlacementError, match="tensor_parallel must be 1 on CPU"):
        plan_topology(load_config(CONFIGS / "tiny_cpu.yaml", ["rollout.tensor_parallel=2"]))


def test_judge_actor_and_node_resources_enter_the_plan(capsys) -> None:
    cfg = load_config(CONFIGS / "tiny_cpu.yaml", [
        "judge_server.mode=actor", "judge_server.cpus=0.5", "rollout.node_resource=rollout_node",
        "learner.node_resource=learner_node"])
    topo = plan_topology(cfg)
    judge = topo.group("judge_server")
    assert judge.strategy == "STRICT_PACK" and judge.bundles[0].as_ray() == {"CPU": 0.5}
    assert topo.group("rollout-0").bundles[0].as_ray() == {"CPU": 1.0, "rollout_node": 0.001}
    assert topo.group("learner").bundles[0].as_ray()["learner_node"] == 0.001
    assert "reward_node" not in str(topo.group("reward").bundles[0].as_ray())
    assert "nodes with rollout_node" in topo.table()
