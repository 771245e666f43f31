"""Shared fixtures of the integration tests: the embedded tiny model, and two short real
training runs (`strl train`: the default pipeline, and an inline one that serving tests
serve), each built once per session."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rlsys.model.build import build_model

    return build_model(tmp_path_factory.mktemp("tiny") / "model", "tiny", seed=0,
                       corpus_size=300, progress=False)


@dataclass(frozen=True)
class TrainedRun:
    run: Path  # the run directory
    checkpoint: Path  # its final policy (HF format, with the prompt card)
    stderr: str


def _train(tmp: Path, name: str, *overrides: str) -> TrainedRun:
    from rlsys.model.build import build_model

    model = build_model(tmp / "model", "tiny", seed=0, corpus_size=300, progress=False)
    cmd = [sys.executable, "-m", "rlsys.cli", "train", "--config",
           str(ROOT / "configs" / "tiny_cpu.yaml"), f"model.path={model}",
           f"trainer.out_dir={tmp / 'runs'}", f"trainer.name={name}", "trainer.steps=3",
           "data.eval_size=4", "rollout.prompts_per_step=2", "rollout.n=2",
           "rollout.max_tokens=16", "algorithm.dynamic_sampling=false",
           "trainer.wandb=offline", "trainer.log_samples_every=1",
           "trainer.suite_per_cell=1", "trainer.sft.steps=2", "trainer.align.steps=2",
           "trainer.align.one_node_steps=1",  # one step of each half of the curriculum
           "trainer.align.onset_steps=2",  # the onset head's fit runs, briefly
           "data.align_eval_size=11", *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp / "runs" / name
    return TrainedRun(run, run / "checkpoints" / "final", proc.stderr)


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """`make run`'s pipeline, short: the tiny preset as configured (series through the
    encoder, chain-of-thought warm start, GRPO on accuracy + format + rationale), 2 SFT
    steps, 3 GRPO steps and the end-of-run eval suite (1 question per cell)."""
    return _train(tmp_path_factory.mktemp("default"), "e2e")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """A short run of a model that reads its series inline (answer-format warm start, 3
    GRPO steps): the checkpoint the serving and evaluation tests serve, whose prompts are
    the text a client sees. (Encoder checkpoints are served in test_series_encoder.py.)"""
    return _train(tmp_path_factory.mktemp("trained"), "inline", "model.series=inline",
                  "trainer.stages=[sft_answer, grpo]", "trainer.eval_temperature=1.0",
                  "reward.rewards=[{name: accuracy, weight: 0.5}, "
                  "{name: format, weight: 0.5, params: {strict: true}}]")


@pytest.fixture
def short_run(tmp_path: Path):
    """`strl train` of the default pipeline, short, with more overrides: call it with a
    run name and the overrides."""
    return lambda name, *overrides: _train(tmp_path, name, *overrides)


@pytest.fixture
def head_node():
    """A Ray head node started with `ray start` (token auth, dashboard on loopback); yields
    the dashboard's address."""
    from rlsys.weightsync import free_port
    from tests.integration.runner import ray_cli

    assert ray_cli("get-auth-token", "--generate").returncode == 0  # creates one if missing
    gcs, dash, client = free_port(), free_port(), free_port()
    started = ray_cli("start", "--head", f"--port={gcs}", "--num-cpus=4",
                      "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                      f"--dashboard-port={dash}", f"--ray-client-server-port={client}",
                      "--disable-usage-stats", timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield f"http://127.0.0.1:{dash}"
    finally:
        ray_cli("stop", "--force")
