"""Checkpoint and resume through the real entry point: a run stopped by SIGTERM writes a
complete checkpoint and exits 143; `strl train --resume` continues it, and the resumed run
trains on exactly the prompts, and reaches the same losses, as a run never interrupted.
The loop is the asynchronous one (max_staleness 1: the checkpoint also keeps the round
sampled for the next step by weights it no longer holds), whose resume is the synchronous
one's plus that round; the synchronous loop's stop and checkpoint are also checked by
`ray job stop` (test_ray_job.py) and by a failed judge (test_judge_server.py)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from rlsys.train import checkpoint
from tests.integration.runner import finish, grpo_rows, jsonl, start, train_cmd, wait_for

pytestmark = pytest.mark.slow
STEPS = ["trainer.steps=6", "trainer.save_every=2", "trainer.keep_checkpoints=2",
         "algorithm.max_staleness=1"]


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
    ahead = cut / "checkpoints" / first / "rounds.json"
    assert ahead.is_file()

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
        assert resumed[step].get("staleness/mean", 0) == min(step, 1), step
    # only the newest two full checkpoints are kept, plus the final policy
    kept = sorted(p.name for p in (cut / "checkpoints").iterdir())
    assert kept == ["final", "grpo-step-4", "grpo-step-6"]
    assert (cut / "report.md").is_file()
    _damaged_checkpoints_are_not_loaded(tmp_path, runs / "whole", whole)


def _damaged_checkpoints_are_not_loaded(tmp_path: Path, run: Path, rows: dict) -> None:
    """Random bytes inside the newest checkpoint's largest file: resume names the file, falls
    back to the checkpoint before and continues exactly from there (here with one step more
    than the finished run had, `--resume ... trainer.steps=7`). Non-finite optimizer state
    under a matching manifest: resume refuses it with one line, exit 2."""
    newest = run / "checkpoints" / "grpo-step-6"
    big = max((p for p in (newest / "learner").rglob("*") if p.is_file()),
              key=lambda p: p.stat().st_size)
    with big.open("r+b") as f:
        f.seek(big.stat().st_size // 4)
        f.write(os.urandom(min(1 << 20, big.stat().st_size // 2)))
    log = tmp_path / "fallback.log"
    proc = start(train_cmd(Path(), run.parent, run.name, "trainer.steps=7", resume=run), log)
    assert finish(proc, log) == 0, log.read_text()[-3000:]
    text = log.read_text()
    name = big.relative_to(newest).as_posix()
    assert f"grpo-step-6 fails verification: {name}: content differs from the manifest" in text
    assert "resuming from grpo-step-4, the newest checkpoint that verifies" in text
    again = grpo_rows(run)
    for step in (4, 5):  # redone from the older checkpoint: the same losses
        assert again[step]["loss"] == pytest.approx(rows[step]["loss"], rel=1e-4, abs=1e-6)
    assert 6 in again  # and one step further
    assert checkpoint.verify(newest) is None  # the damaged one was rewritten whole

    newest = run / "checkpoints" / "grpo-step-7"
    optim = next(p for p in (newest / "learner").rglob("*optim_states.pt"))
    state = torch.load(optim, weights_only=False)
    master = _first_float(state, min_size=1000)
    master.view(-1)[:7] = float("nan")
    torch.save(state, optim)
    (newest / checkpoint.MANIFEST).write_text(json.dumps(checkpoint.manifest(newest)))
    log = tmp_path / "nan.log"
    proc = start(train_cmd(Path(), run.parent, run.name, resume=run), log)
    assert finish(proc, log) == 2, log.read_text()[-3000:]
    last = log.read_text().strip().splitlines()[-1]
    assert last.startswith("strl: error:") and "holds non-finite values" in last and ": 7" in last


def _first_float(x: object, min_size: int) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor) and x.is_floating_point() and x.numel() >= min_size:
        return x
    items = x.values() if isinstance(x, dict) else x if isinstance(x, list | tuple) else ()
    for v in items:
        found = _first_float(v, min_size)
        if found is not None:
            return found
    return None
