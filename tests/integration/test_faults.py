"""Failures a long run survives, through the real entry point and real processes: a rollout
engine and a reward worker killed with SIGKILL mid-run are rebuilt (the engine re-joins the
weight sync and gets the current weights) and the step is retried; a reward that raises
scores 0 and is counted; the run (with S-GRPO on, and asynchronous with max_staleness 2, so
the engine dies with the rounds of the next steps in flight) finishes every step, none lost.
A non-finite loss skips the optimizer step on the DeepSpeed learner and leaves the weights
untouched."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from rlsys.config import load_config
from tests.integration.runner import finish, grpo_rows, start, train_cmd, wait_for

pytestmark = pytest.mark.slow
FLAKY = Path(__file__).with_name("flaky_reward.py")


def _pid(title: str) -> int:
    """The process whose title (Ray sets `ray::<Class>...`) starts with `title`."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    pids = [int(line.split(None, 1)[0]) for line in out.splitlines()
            if line.split(None, 1)[1:] and line.split(None, 1)[1].startswith(title)]
    assert len(pids) == 1, (title, pids)
    return pids[0]


def test_killed_engine_and_reward_worker_are_rebuilt_and_every_step_runs(
        tmp_path: Path, tiny_model: Path) -> None:
    runs = tmp_path / "runs"
    rewards = ("reward.rewards=[{name: accuracy, weight: 1.0}, "
               f"{{name: flaky, weight: 0.1, module: {FLAKY}}}]")
    log = tmp_path / "faults.log"
    # S-GRPO on: every step also generates from the graph-free prompts. The sync loop
    # gathers its rounds through the same code, so this covers it too.
    proc = start(train_cmd(tiny_model, runs, "faults", "trainer.steps=6", rewards,
                           "algorithm.spatial.enabled=true", "algorithm.max_staleness=2",
                           "algorithm.correction=tis"), log)
    run = runs / "faults"
    wait_for(lambda: 0 in grpo_rows(run), proc, log)
    os.kill(_pid("ray::RolloutWorker"), signal.SIGKILL)
    wait_for(lambda: any(r.get("restarts/rollout", 0) >= 1 for r in grpo_rows(run).values()),
             proc, log)
    os.kill(_pid("ray::RewardWorker"), signal.SIGKILL)
    assert finish(proc, log) == 0, log.read_text()[-3000:]

    rows = grpo_rows(run)
    assert sorted(rows) == list(range(6))
    assert rows[5]["restarts/rollout"] == 1 and rows[5]["restarts/reward"] == 1
    assert sum(r["time/recover"] for r in rows.values()) > 0
    assert sum(r["reward_errors"] for r in rows.values()) > 0  # the odd-length completions
    assert all(r["sync_bytes"] > 0 for r in rows.values())
    # no batch lost: every step trained its prompts, none older than 2 versions
    assert all(r["kept_groups"] > 0 and r["staleness/max"] <= 2 for r in rows.values())
    assert [r["policy_version"] for r in rows.values()] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert rows[3]["staleness/2"] > 0 or rows[4]["staleness/2"] > 0
    assert "rebuilt 1 rollout actor(s)" in log.read_text()
    for r in rows.values():  # S-GRPO: the graph-free generation is timed, the help logged
        assert r["time/generate_no_graph"] > 0 and 0.0 <= r["spatial/helped"] <= 1.0
        assert any(k.startswith("spatial/helped/") for k in r)


def test_non_finite_loss_skips_the_optimizer_step(tmp_path: Path, tiny_model: Path) -> None:
    import ray
    from safetensors.numpy import load_file

    from actors.learner import LearnerActor, LearnerSettings, MicroBatch, Sequence

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        learner = LearnerActor.options(num_cpus=1).remote(
            LearnerSettings.from_config(
                load_config(None, ["learner.lr=1e-2", "algorithm.kl_coef=0"]),
                str(tiny_model), "cpu", "float32", "gloo"),
            0, 1)
        ray.get(learner.start.remote(*ray.get(learner.address.remote())))
        seq = [Sequence(list(range(10, 30)), 10, [-1.0] * 10, 1.0)]

        def weights(tag: str) -> dict:
            ray.get(learner.save_hf.remote(str(tmp_path / tag)))
            return load_file(tmp_path / tag / "model.safetensors")

        ok = ray.get(learner.train_step.remote([MicroBatch(seq)], 10))
        assert ok["skipped"] == 0.0
        before = weights("before")
        nan = [Sequence(s.input_ids, s.prompt_len, s.old_logprobs, float("nan")) for s in seq]
        bad = ray.get(learner.train_step.remote([MicroBatch(nan)], 10))
        assert bad["skipped"] == 1.0
        after = weights("after")
        assert all((before[k] == after[k]).all() for k in before)  # momentum did not move them
        again = ray.get(learner.train_step.remote([MicroBatch(seq)], 10))
        assert again["skipped"] == 0.0  # the next good step trains normally
        assert any((after[k] != weights("again")[k]).any() for k in after)
    finally:
        ray.shutdown()
