"""Running the real `strl train` entry point in a subprocess, and reading its outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
CONFIG = ROOT / "configs" / "tiny_cpu.yaml"
RAY = str(Path(sys.executable).with_name("ray"))

# Token authentication on both sides, as the README recipe does: a head started where a
# token file exists (any earlier `ray.init` writes one) requires it from every client.
# The venv's bin first on PATH, as `source .venv/bin/activate` does: the job's entrypoint
# (`strl`) and its Python come from the environment the head node was started in.
# RAY_JOB_STOP_WAIT_TIME_S: how long `ray job stop` waits after its SIGTERM before SIGKILL
# (Ray's default, 3 s, is shorter than a step and a checkpoint).
ENV = dict(os.environ, RAY_AUTH_MODE="token", RAY_JOB_STOP_WAIT_TIME_S="300",
           PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")

# A few small GRPO steps: enough to exercise every phase in about a second per step. The
# onset head's fit runs 2 steps, not the preset's 300 (about 30 s of every start).
SMALL = ["trainer.sft.steps=1", "trainer.align.steps=1", "trainer.align.onset_steps=2",
         "data.align_eval_size=2",
         "data.eval_size=2", "rollout.prompts_per_step=2",
         "rollout.n=2", "rollout.max_tokens=12", "algorithm.dynamic_sampling=false",
         "trainer.wandb=disabled", "trainer.log_samples_every=0",
         "trainer.suite_per_cell=0"]


def train_cmd(model: Path, out_dir: Path, name: str, *overrides: str,
              resume: Path | None = None) -> list[str]:
    head = [sys.executable, "-m", "rlsys.cli", "train"]
    if resume is not None:
        return head + ["--resume", str(resume), *overrides]
    return head + ["--config", str(CONFIG), f"model.path={model}", f"trainer.out_dir={out_dir}",
                   f"trainer.name={name}", *SMALL, *overrides]


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    """The command in its own session (a signal reaches the driver only), output to `log`."""
    f = open(log, "w")  # noqa: SIM115 - closed with the process by the caller's wait
    return subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                            start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def finish(proc: subprocess.Popen, log: Path, timeout: float = 900) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"timed out; log tail:\n{log.read_text()[-3000:]}")


def wait_for(cond: Callable[[], bool], proc: subprocess.Popen, log: Path,
             timeout: float = 600) -> None:
    """Poll `cond` until it holds; fail with the log if the process ends or time runs out."""
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"process ended ({proc.returncode}) first; log tail:\n"
                        f"{log.read_text()[-3000:]}")
        if time.monotonic() - t0 > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"condition not met in {timeout}s; log tail:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] \
        if path.exists() else []


def grpo_rows(run: Path) -> dict[int, dict]:
    """GRPO metrics by step; a step logged twice keeps its last record (as the report)."""
    return {r["step"]: r for r in jsonl(run / "metrics.jsonl") if "reward/mean" in r}


def ray_cli(*args: str, timeout: float = 120, tool: str = RAY) -> subprocess.CompletedProcess:
    """`ray ...` (or another CLI of the venv, e.g. `serve`) with the recipe's environment."""
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=ENV)
