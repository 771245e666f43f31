"""The documented launch: a Ray head node started with `ray start`, then `ray job submit
--working-dir . -- strl train ...`, as the README shows. The driver
attaches to the running cluster, the plug-in reward and task files travel with the working
directory, and the job's logs and final status show in `ray job logs` / `ray job status`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlsys.weightsync import free_port
from tests.integration.runner import ROOT, SMALL, grpo_rows

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).with_name("ray"))


# Token authentication on both sides, as the README recipe does: a head started where a
# token file exists (any earlier `ray.init` writes one) requires it from every client.
# The venv's bin first on PATH, as `source .venv/bin/activate` does: the job's entrypoint
# (`strl`) and its Python come from the environment the head node was started in.
# RAY_JOB_STOP_WAIT_TIME_S: how long `ray job stop` waits after its SIGTERM before SIGKILL
# (Ray's default, 3 s, is shorter than a step and a checkpoint).
ENV = dict(os.environ, RAY_AUTH_MODE="token", RAY_JOB_STOP_WAIT_TIME_S="300",
           PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def _ray(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=ENV)


@pytest.fixture
def head_node():
    assert _ray("get-auth-token", "--generate").returncode == 0  # creates one if missing
    gcs, dash, client = free_port(), free_port(), free_port()
    started = _ray("start", "--head", f"--port={gcs}", "--num-cpus=4",
                   "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                   f"--dashboard-port={dash}", f"--ray-client-server-port={client}",
                   "--disable-usage-stats", timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield f"http://127.0.0.1:{dash}"
    finally:
        _ray("stop", "--force")


def _submit(head_node: str, job: str, *args: str) -> None:
    submit = _ray("job", "submit", "--address", head_node, "--working-dir", ".",
                  "--submission-id", job, "--no-wait", "--", *args)
    assert submit.returncode == 0, submit.stdout + submit.stderr


def _wait(head_node: str, job: str, timeout: float = 900) -> tuple[str, str]:
    """The final status line of a job and its logs."""
    status, t0 = "", time.monotonic()
    while time.monotonic() - t0 < timeout:
        out = _ray("job", "status", "--address", head_node, job)
        status = out.stdout + out.stderr  # "Job 'strl-test-job' succeeded", or "... failed"
        if any(f"'{job}' {s}" in status for s in ("succeeded", "failed", "was stopped")):
            break
        time.sleep(3)
    got = _ray("job", "logs", "--address", head_node, job)
    return status, got.stdout + got.stderr


def test_ray_job_submit_trains_with_plugins_from_the_working_dir(
        head_node: str, tmp_path: Path, tiny_model: Path) -> None:
    job = "strl-test-job"
    rewards = ("reward.rewards=[{name: accuracy, weight: 0.5}, "
               "{name: format, weight: 0.5, params: {strict: true}}, "
               "{name: my_len_penalty, weight: 0.1, module: examples/my_rewards.py}]")
    base = ["strl", "train", "--config", "configs/tiny_cpu.yaml", f"model.path={tiny_model}",
            f"trainer.out_dir={tmp_path / 'runs'}", *SMALL]
    _submit(head_node, job, *base, "trainer.name=job", "trainer.steps=2",
            "data.modules=[examples/my_task.py]", "data.tasks={my_onset: 1, root_cause: 1}",
            rewards)
    status, logs = _wait(head_node, job)
    assert f"Job '{job}' succeeded" in status, status + logs[-3000:]
    assert "report: " in logs and "grpo" in logs  # the driver's output is the job's log
    run = tmp_path / "runs" / "job"
    rows = grpo_rows(run)
    assert sorted(rows) == [0, 1]
    assert all("reward/my_len_penalty" in r for r in rows.values())
    assert (run / "checkpoints" / "final" / "model.safetensors").is_file()

    # `ray job stop` sends SIGTERM: the run finishes its step and writes a checkpoint.
    long = "strl-test-long"
    _submit(head_node, long, *base, "trainer.name=long", "trainer.steps=500")
    t0 = time.monotonic()
    while 0 not in grpo_rows(tmp_path / "runs" / "long") and time.monotonic() - t0 < 600:
        time.sleep(0.5)
    assert _ray("job", "stop", "--address", head_node, long).returncode == 0
    status, logs = _wait(head_node, long)
    assert f"Job '{long}' was stopped" in status, status + logs[-3000:]
    saved = list((tmp_path / "runs" / "long" / "checkpoints").glob("grpo-step-*/state.json"))
    assert saved, logs[-3000:]
