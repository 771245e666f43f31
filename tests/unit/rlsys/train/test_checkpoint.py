"""Checkpoint bookkeeping without a cluster: which checkpoints count as complete, which is
the newest that verifies against its manifest, pruning, atomic replacement; `strl train
--resume` argument errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rlsys.cli import main
from rlsys.train import checkpoint
from rlsys.train.checkpoint import Progress


def _fake(run: Path, stage_index: int, stage: str, step: int, complete: bool = True) -> Path:
    """A checkpoint directory as `checkpoint.save` lays it out, with a manifest when
    complete (the learner's file holds 64 KiB of random bytes)."""
    d = run / "checkpoints" / checkpoint.name_of(stage, step)
    (d / "policy").mkdir(parents=True)
    (d / "learner" / "learner").mkdir(parents=True)
    (d / "policy" / "model.safetensors").write_bytes(b"weights %d" % step)
    (d / "learner" / "learner" / "optim_states.pt").write_bytes(
        np.random.default_rng(step).bytes(1 << 16))
    if complete:
        p = Progress(stage=stage_index, step=step, position=10 * step)
        (d / checkpoint.STATE_FILE).write_text(p.to_json())
        (d / checkpoint.MANIFEST).write_text(json.dumps(checkpoint.manifest(d)))
    return d


def test_progress_round_trips_through_json() -> None:
    p = Progress(stage=1, step=7, position=42, sft_position=96,
                 evals={"before": {"entity": {"n": 3}}}, counters={"skipped_grad_steps": 1})
    assert Progress.from_json(p.to_json()) == p
    points = {"before": {}, "after sft_align": {}, "after sft_cot": {}}  # run order
    assert list(Progress.from_json(Progress(evals=points).to_json()).evals) == list(points)


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
    ckpt = _fake(tmp_path / "src", 1, "sft_cot", 4)
    assert main(["train", "--from", str(ckpt), "--resume", str(tmp_path)]) == 2
    assert "give one" in capsys.readouterr().err
    assert main(["train", "--from", str(ckpt)]) == 2  # its run has no config.yaml
    assert "src is not a run directory" in capsys.readouterr().err


def test_a_new_run_starts_at_another_runs_verified_checkpoint(tmp_path: Path) -> None:
    from rlsys.config import load_config
    from rlsys.train.run import REFERENCE, open_run_dir

    src = tmp_path / "src"
    sft, grpo = _fake(src, 1, "sft_cot", 4), _fake(src, 2, "grpo", 6)
    (src / REFERENCE).mkdir()
    (src / REFERENCE / "config.json").write_text("{}")  # frozen when GRPO began
    cfg = load_config(None, [f"trainer.out_dir={tmp_path}", "trainer.name=variant"])
    run_dir, progress, ckpt = open_run_dir(cfg, None, sft)
    assert (run_dir.name, ckpt, progress.stage, progress.step) == ("variant", sft, 1, 4)
    assert not (run_dir / REFERENCE).exists()  # GRPO of this run freezes its own
    run_dir, progress, ckpt = open_run_dir(cfg, None, grpo)
    assert run_dir.name == "variant-2" and progress.position == 60
    assert (run_dir / REFERENCE / "config.json").is_file()  # inside GRPO: the KL reference
    with pytest.raises(checkpoint.CheckpointError, match="not a full checkpoint"):
        checkpoint.branch_point(src)
    _scribble(grpo / OPTIM)
    with pytest.raises(checkpoint.CheckpointError, match="fails verification"):
        checkpoint.branch_point(grpo)


OPTIM = "learner/learner/optim_states.pt"


def _scribble(path: Path) -> None:
    """1 KiB of random bytes written inside the file, its size unchanged."""
    with path.open("r+b") as f:
        f.seek(1000)
        f.write(np.random.default_rng(99).bytes(1024))


@pytest.mark.parametrize("damage, reason", [
    (_scribble, "content differs from the manifest"),
    (lambda p: p.write_bytes(p.read_bytes()[:100]), "100 bytes, the manifest says 65536"),
    (lambda p: p.unlink(), "missing"),
])
def test_a_damaged_checkpoint_is_skipped_for_the_newest_that_verifies(
        tmp_path: Path, damage, reason: str) -> None:
    for step in (2, 4, 6):
        _fake(tmp_path, 1, "grpo", step)
    damage(tmp_path / "checkpoints" / "grpo-step-6" / OPTIM)
    said: list[str] = []
    progress, path = checkpoint.latest(tmp_path, say=said.append)
    assert path.name == "grpo-step-4" and progress.step == 4
    assert f"grpo-step-6 fails verification: {OPTIM}: {reason}" in said[0]
    assert said[1] == "resuming from grpo-step-4, the newest checkpoint that verifies"


def test_every_file_is_covered_and_none_verifying_is_one_clear_error(tmp_path: Path) -> None:
    d2, d4 = _fake(tmp_path, 1, "grpo", 2), _fake(tmp_path, 1, "grpo", 4)
    listed = json.loads((d2 / checkpoint.MANIFEST).read_text())["files"]
    assert sorted(listed) == [OPTIM, "policy/model.safetensors", checkpoint.STATE_FILE]
    assert checkpoint.verify(d2) is None
    (d2 / "policy" / "stray.bin").write_text("x")  # a file nobody wrote at save time
    assert checkpoint.verify(d2) == "policy/stray.bin: not in the manifest"
    (d4 / checkpoint.MANIFEST).write_text("{garbage")
    assert checkpoint.verify(d4) == "manifest.json: unreadable (JSONDecodeError)"
    with pytest.raises(checkpoint.CheckpointError) as e:
        checkpoint.latest(tmp_path, say=lambda _: None)
    msg = str(e.value)
    assert "\n" not in msg and "no checkpoint of" in msg and "grpo-step-4: manifest.json" in msg
    assert "grpo-step-2: policy/stray.bin: not in the manifest" in msg


def test_a_checkpoint_without_a_manifest_does_not_verify(tmp_path: Path) -> None:
    d = _fake(tmp_path, 1, "grpo", 2)
    (d / checkpoint.MANIFEST).unlink()
    assert checkpoint.verify(d).startswith("manifest.json: missing")


def test_publish_replaces_a_same_step_checkpoint_that_fails_verification(
        tmp_path: Path) -> None:
    done = _fake(tmp_path, 1, "grpo", 2)
    _scribble(done / OPTIM)
    again = tmp_path / ".grpo-step-2.tmp"
    (again / "learner" / "learner").mkdir(parents=True)
    (again / OPTIM).write_bytes(b"fresh")
    (again / checkpoint.STATE_FILE).write_text(Progress(stage=1, step=2).to_json())
    (again / checkpoint.MANIFEST).write_text(json.dumps(checkpoint.manifest(again)))
    checkpoint.publish(again, done)
    assert (done / OPTIM).read_bytes() == b"fresh" and checkpoint.verify(done) is None


def test_a_stage_saves_every_k_steps_and_after_its_last() -> None:
    assert [s for s in range(1, 11) if checkpoint.due(s, 4, 10)] == [4, 8, 10]
    assert [s for s in range(1, 9) if checkpoint.due(s, 4, 8)] == [4, 8]
    assert not any(checkpoint.due(s, 0, 10) for s in range(1, 11))  # 0: no periodic saves
