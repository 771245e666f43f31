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
ENV = dict(os.environ, RAY_AUTH_MODE="token",
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


def test_ray_job_submit_trains_with_plugins_from_the_working_dir(
        head_node: str, tmp_path: Path, tiny_model: Path) -> None:
    job = "strl-test-job"
    rewards = ("reward.rewards=[{name: accuracy, weight: 0.5}, "
               "{name: format, weight: 0.5, params: {strict: true}}, "
               "{name: my_len_penalty, weight: 0.1, module: examples/my_rewards.py}]")
    submit = _ray("job", "submit", "--address", head_node, "--working-dir", ".",
                  "--submission-id", job, "--no-wait", "--",
                  "strl", "train", "--config", "configs/tiny_cpu.yaml",
                  f"model.path={tiny_model}", f"trainer.out_dir={tmp_path / 'runs'}",
                  "trainer.name=job", *SMALL, "trainer.steps=2",
                  "data.modules=[examples/my_task.py]",
                  "data.tasks={my_onset: 1, root_cause: 1}", rewards)
    assert submit.returncode == 0, submit.stdout + submit.stderr
    status, t0 = "", time.monotonic()
    while time.monotonic() - t0 < 900:
        out = _ray("job", "status", "--address", head_node, job)
        status = out.stdout + out.stderr  # "Job 'strl-test-job' succeeded", or "... failed"
        if any(f"'{job}' {s}" in status for s in ("succeeded", "failed", "was stopped")):
            break
        time.sleep(3)
    got = _ray("job", "logs", "--address", head_node, job)
    logs = got.stdout + got.stderr
    assert f"Job '{job}' succeeded" in status, status + logs[-3000:]
    assert "report: " in logs and "grpo" in logs  # the driver's output is the job's log
    run = tmp_path / "runs" / "job"
    rows = grpo_rows(run)
    assert sorted(rows) == [0, 1]
    assert all("reward/my_len_penalty" in r for r in rows.values())
    assert (run / "checkpoints" / "final" / "model.safetensors").is_file()
