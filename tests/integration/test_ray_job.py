"""The documented launch: a Ray head node started with `ray start`, then `ray job submit
--working-dir . -- strl train ...`, as the README shows. The driver
attaches to the running cluster, the plug-in reward and task files travel with the working
directory, and the job's logs and final status show in `ray job logs` / `ray job status`."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.runner import SMALL, grpo_rows, ray_cli

pytestmark = pytest.mark.slow


def _submit(head_node: str, job: str, *args: str) -> None:
    submit = ray_cli("job", "submit", "--address", head_node, "--working-dir", ".",
                     "--submission-id", job, "--no-wait", "--", *args)
    assert submit.returncode == 0, submit.stdout + submit.stderr


def _wait(head_node: str, job: str, timeout: float = 900) -> tuple[str, str]:
    """The final status line of a job and its logs."""
    status, t0 = "", time.monotonic()
    while time.monotonic() - t0 < timeout:
        out = ray_cli("job", "status", "--address", head_node, job)
        status = out.stdout + out.stderr  # "Job 'strl-test-job' succeeded", or "... failed"
        if any(f"'{job}' {s}" in status for s in ("succeeded", "failed", "was stopped")):
            break
        time.sleep(3)
    got = ray_cli("job", "logs", "--address", head_node, job)
    return status, got.stdout + got.stderr


def test_ray_job_submit_trains_with_plugins_from_the_working_dir(
        head_node: str, tmp_path: Path, tiny_model: Path) -> None:
    """One job: it trains with the plug-ins shipped in the working directory, then
    `ray job stop` (SIGTERM) makes it finish its step and write a checkpoint."""
    job = "strl-test-job"
    rewards = ("reward.rewards=[{name: accuracy, weight: 0.5}, "
               "{name: format, weight: 0.5, params: {strict: true}}, "
               "{name: my_len_penalty, weight: 0.1, module: examples/my_rewards.py}]")
    _submit(head_node, job, "strl", "train", "--config", "configs/tiny_cpu.yaml",
            f"model.path={tiny_model}", f"trainer.out_dir={tmp_path / 'runs'}", *SMALL,
            "trainer.name=job", "trainer.steps=500", "data.modules=[examples/my_task.py]",
            "data.tasks={my_onset: 1, root_cause: 1}", rewards)
    run = tmp_path / "runs" / "job"
    t0 = time.monotonic()
    while 1 not in grpo_rows(run) and time.monotonic() - t0 < 600:
        time.sleep(0.5)
    rows = grpo_rows(run)
    assert 0 in rows and 1 in rows, _wait(head_node, job, timeout=1)[1][-3000:]
    assert all("reward/my_len_penalty" in r for r in rows.values())

    assert ray_cli("job", "stop", "--address", head_node, job).returncode == 0
    status, logs = _wait(head_node, job)
    assert f"Job '{job}' was stopped" in status, status + logs[-3000:]
    assert "grpo" in logs and "SIGTERM" in logs  # the driver's output is the job's log
    saved = list((run / "checkpoints").glob("grpo-step-*/state.json"))
    assert saved, logs[-3000:]
    assert (saved[0].parent / "policy" / "model.safetensors").is_file()
