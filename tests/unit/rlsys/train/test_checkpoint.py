"""Checkpoint bookkeeping without a cluster: which checkpoints count as complete, which is
the newest, pruning, atomic replacement; `strl train --resume` argument errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlsys.cli import main
from rlsys.train import checkpoint
from rlsys.train.checkpoint import Progress


def _fake(run: Path, stage_index: int, stage: str, step: int, complete: bool = True) -> Path:
    d = run / "checkpoints" / checkpoint.name_of(stage, step)
    d.mkdir(parents=True)
    (d / "policy").mkdir()
    if complete:
        p = Progress(stage=stage_index, step=step, position=10 * step)
        (d / checkpoint.STATE_FILE).write_text(p.to_json())
    return d


def test_progress_round_trips_through_json() -> None:
    p = Progress(stage=1, step=7, position=42, sft_position=96,
                 evals={"before": {"entity": {"n": 3}}}, counters={"skipped_grad_steps": 1})
    assert Progress.from_json(p.to_json()) == p


def test_latest_is_the_newest_complete_checkpoint_by_stage_then_step(tmp_path: Path) -> None:
    assert checkpoint.latest(tmp_path) is None
    _fake(tmp_path, 0, "sft_align", 12)
    _fake(tmp_path, 1, "grpo", 2)
    _fake(tmp_path, 1, "grpo", 10)
    _fake(tmp_path, 1, "grpo", 12, complete=False)  # no state.json: never picked
    hidden = tmp_path / "checkpoints" / ".grpo-step-14.tmp"
    hidden.mkdir()
    (hidden / checkpoint.STATE_FILE).write_text(Progress(stage=1, step=14).to_json())
    progress, path = checkpoint.latest(tmp_path)
    assert path.name == "grpo-step-10" and progress.step == 10 and progress.position == 100


def test_prune_keeps_the_newest_and_removes_temporaries(tmp_path: Path) -> None:
    for s in (2, 4, 6):
        _fake(tmp_path, 1, "grpo", s)
    (tmp_path / "checkpoints" / ".grpo-step-8.tmp").mkdir()
    checkpoint.prune(tmp_path, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "grpo-step-4", "grpo-step-6"]


def test_publish_replaces_a_directory_whole_and_keeps_a_complete_checkpoint(
        tmp_path: Path) -> None:
    final = tmp_path / "final"
    final.mkdir()
    (final / "old").write_text("x")
    tmp = tmp_path / ".final.tmp"
    tmp.mkdir()
    (tmp / "new").write_text("y")
    checkpoint.publish(tmp, final)
    assert [p.name for p in final.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    done = _fake(tmp_path, 1, "grpo", 2)  # complete: the same step again keeps it
    again = tmp_path / ".grpo-step-2.tmp"
    again.mkdir()
    checkpoint.publish(again, done)
    assert (done / checkpoint.STATE_FILE).is_file() and not again.exists()


def test_an_unreadable_state_file_is_a_clear_error(tmp_path: Path) -> None:
    d = _fake(tmp_path, 1, "grpo", 2)
    (d / checkpoint.STATE_FILE).write_text("{not json")
    with pytest.raises(checkpoint.CheckpointError, match="grpo-step-2/state.json"):
        checkpoint.latest(tmp_path)


def test_resume_argument_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a run directory (no config.yaml)" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path), "--config", "configs/tiny_cpu.yaml"]) == 2
    assert "reads the run's own config.yaml" in capsys.readouterr().err
