"""Checkpoint and resume through the real entry point: a run stopped by SIGTERM writes a
complete checkpoint and exits 143; `strl train --resume` continues it, and the resumed run
trains on exactly the prompts, and reaches the same losses, as a run never interrupted."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.integration.runner import finish, grpo_rows, jsonl, start, train_cmd, wait_for

pytestmark = pytest.mark.slow
STEPS = ["trainer.steps=6", "trainer.save_every=2", "trainer.keep_checkpoints=2"]


def _prompts(run: Path) -> dict[int, list[str]]:
    return {r["step"]: r["ids"] for r in jsonl(run / "prompts.jsonl")}


def test_sigterm_checkpoint_then_resume_matches_the_uninterrupted_run(
        tmp_path: Path, tiny_model: Path) -> None:
    runs = tmp_path / "runs"
    log_a = tmp_path / "a.log"
    a = start(train_cmd(tiny_model, runs, "whole", *STEPS), log_a)
    assert finish(a, log_a) == 0, log_a.read_text()[-3000:]

    log_b = tmp_path / "b.log"
    b = start(train_cmd(tiny_model, runs, "cut", *STEPS), log_b)
    cut = runs / "cut"
    wait_for(lambda: 0 in grpo_rows(cut), b, log_b)
    b.send_signal(signal.SIGTERM)
    assert finish(b, log_b) == 143, log_b.read_text()[-3000:]
    assert "strl train --resume" in log_b.read_text()
    ckpts = sorted(p.name for p in (cut / "checkpoints").iterdir())
    assert ckpts and all(not n.startswith(".") for n in ckpts), ckpts  # no half-written dir
    first = max(ckpts, key=lambda n: int(n.rsplit("-", 1)[1]))  # the stop's checkpoint
    stopped_at = int(first.rsplit("-", 1)[1])
    assert 1 <= stopped_at < 6
    for part in ("policy/config.json", "policy/model.safetensors", "learner", "state.json"):
        assert (cut / "checkpoints" / first / part).exists(), part

    log_c = tmp_path / "c.log"
    c = start(train_cmd(tiny_model, runs, "cut", resume=cut), log_c)
    assert finish(c, log_c) == 0, log_c.read_text()[-3000:]
    assert f"resuming {cut} from {first}" in log_c.read_text()

    whole, resumed = grpo_rows(runs / "whole"), grpo_rows(cut)
    assert sorted(whole) == sorted(resumed) == list(range(6))
    assert _prompts(runs / "whole") == _prompts(cut)  # no prompt skipped or repeated
    for step in range(6):
        assert resumed[step]["loss"] == pytest.approx(whole[step]["loss"], rel=1e-4, abs=1e-6), \
            step
        assert resumed[step]["reward/mean"] == pytest.approx(whole[step]["reward/mean"])
    # only the newest two full checkpoints are kept, plus the final policy
    kept = sorted(p.name for p in (cut / "checkpoints").iterdir())
    assert kept == ["final", "grpo-step-4", "grpo-step-6"]
    assert (cut / "report.md").is_file()
