"""Checkpoints of a run and what `strl train --resume` reads back.

A checkpoint is a directory `run_dir/checkpoints/<stage>-step-<k>/`:

    policy/       the policy in Hugging Face format (vLLM and transformers load it)
    learner/      every learner rank's DeepSpeed state: parameters, optimizer moments,
                  fp32 master weights, the step counter of the learning-rate schedule, RNG
    state.json    `Progress`: the stage and step reached, the prompt-stream positions, the
                  evaluations recorded so far, counters
    manifest.json the size and content hash (BLAKE2b) of every other file, written last

It is written under a hidden temporary name and renamed when complete, so a directory
without the leading dot is always a whole checkpoint; a directory without `state.json` is
never picked. Only the newest `trainer.keep_checkpoints` are kept.

Resume verifies a checkpoint against its manifest before loading anything: a file missing,
truncated or changed (a disk error, a copy cut short, a stray write) fails it, and resume
falls back to the newest checkpoint that verifies, saying which file failed and why. When
none does, it stops with one line. The learners also refuse weights or optimizer state that
are not finite (`actors.learner`).

Nothing else is needed to continue exactly: prompts come from a stream that is a pure
function of (seed, position), and the engines are reseeded per generation from
(seed, stage, step, round), so a resumed run sees the same prompts and samples the same
tokens as the run that was not interrupted.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ray

from rlsys.files import replace_dir, write_atomic
from rlsys.model.card import PromptCard, write_card

CHECKPOINTS = "checkpoints"
STATE_FILE = "state.json"
MANIFEST = "manifest.json"
_CHUNK = 8 << 20
POLICY = "policy"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                   "special_tokens_map.json", "generation_config.json")


@dataclass
class Progress:
    """How far a run got: everything a resume needs besides the weights."""

    stage: int = 0
    """Index in `trainer.stages` of the stage in progress."""
    step: int = 0
    """Steps of that stage already done."""
    position: int = 0
    """Next index of the training prompt stream."""
    sft_position: int = 0
    """Next index of the supervised warm-start split."""
    evals: dict[str, Any] = field(default_factory=dict)
    """Held-out evaluations recorded so far ("before", then "after <stage>" for each
    supervised stage done)."""
    align_evals: dict[str, Any] = field(default_factory=dict)
    """The same points' held-out ST-Align evaluations, per skill (runs with `sft_align`)."""
    probes: dict[str, Any] = field(default_factory=dict)
    """The same points' token probes ("rationale": per kind of token, "align": per
    ST-Align skill), with `trainer.probe`."""
    objective: dict[str, Any] = field(default_factory=dict)
    """GRPO's objective on the held-out questions just before and after GRPO, with
    `trainer.objective_samples`."""
    counters: dict[str, float] = field(default_factory=dict)
    """Run-wide counters (skipped gradient steps, actor restarts, ...)."""

    def to_json(self) -> str:
        """Keys in insertion order: the points of a run ("before", "after sft_align", ...)
        come back in run order, and a resumed run's report lists them so."""
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Progress:
        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read; the message says which and why."""


def due(step: int, every: int, last: int) -> bool:
    """Whether a stage writes a full checkpoint after its step `step` (1-based): every
    `every` steps and after its last one (`last`); never when `every` is 0. The last one
    lets `--resume ... trainer.steps=<more>` extend GRPO, and GRPO variants branch off
    the same supervised warm start."""
    return every > 0 and (step % every == 0 or step == last)


def name_of(stage: str, step: int) -> str:
    return f"{stage}-step-{step}"


def save_policy(learners: list, path: Path, model_path: str | Path,
                card: PromptCard | None = None) -> Path:
    """The policy as an HF directory (weights from the learner group, tokenizer files from
    the model directory, the prompt card); every learner rank takes part (ZeRO-3 gathers
    collectively)."""
    ray.get([ln.save_hf.remote(str(path)) for ln in learners])
    for name in TOKENIZER_FILES:
        if (Path(model_path) / name).exists():
            shutil.copy(Path(model_path) / name, path / name)
    if card is not None:
        write_card(card, path)
    return path


def write_policy(learners: list, final: Path, model_path: str | Path,
                 card: PromptCard | None = None) -> Path:
    """`save_policy` into a temporary directory, then `publish` it as `final`."""
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # leftovers of a crashed earlier attempt
    return publish(save_policy(learners, tmp, model_path, card), final)


def publish(tmp: Path, final: Path) -> Path:
    """Make a completely written directory visible under its final name.

    A complete checkpoint of the same step already there that verifies is kept and `tmp`
    dropped: it holds the same state (a run resumed from it re-reached it), and replacing it
    would leave a moment with neither visible. One that fails verification (the reason a
    resume fell back past it) is replaced."""
    if (final / STATE_FILE).is_file() and verify(final) is None:
        shutil.rmtree(tmp, ignore_errors=True)
        return final
    return replace_dir(tmp, final)  # e.g. `final` (the HF policy) of an earlier attempt


def save(run_dir: Path, stage: str, progress: Progress, learners: list,
         model_path: str | Path, keep: int, card: PromptCard | None = None,
         extra: dict[str, str] | None = None) -> Path:
    """Write a full checkpoint of the run at `progress`, then drop all but the newest `keep`.
    `extra`: more files of the run's state, by name (asynchronous GRPO's rounds in flight).

    The learner ranks write their state into the checkpoint directory, so with several
    nodes `run_dir` must be on a filesystem every learner node sees (as for Ray Train)."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / name_of(stage, progress.step)
    tmp = root / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_policy(learners, tmp / POLICY, model_path, card)
    ray.get([ln.save_state.remote(str(tmp / "learner")) for ln in learners])
    for name, text in (extra or {}).items():
        write_atomic(tmp / name, text, fsync=True)
    write_atomic(tmp / STATE_FILE, progress.to_json(), fsync=True)
    write_atomic(tmp / MANIFEST, json.dumps(manifest(tmp), indent=1, sort_keys=True),
                 fsync=True)  # last: it vouches for everything above
    publish(tmp, final)
    prune(run_dir, keep)
    return final


def run_of(ckpt: Path) -> Path:
    """The run directory a full checkpoint belongs to (`<run>/checkpoints/<name>`)."""
    return Path(ckpt).resolve().parents[1]


def branch_point(ckpt: Path) -> Progress:
    """Where the full checkpoint `ckpt` of some run stands, for a new run that starts there
    (`strl train --from`): CheckpointError when it is not one, or fails verification."""
    ckpt = Path(ckpt)
    if not (ckpt / STATE_FILE).is_file():
        raise CheckpointError(f"{ckpt} is not a full checkpoint (no {STATE_FILE}); give one "
                              f"of <run>/{CHECKPOINTS}/<stage>-step-<n>")
    why = verify(ckpt)
    if why is not None:
        raise CheckpointError(f"{ckpt} fails verification: {why}")
    return Progress.from_json((ckpt / STATE_FILE).read_text(encoding="utf-8"))


def complete(run_dir: Path) -> list[tuple[Progress, Path]]:
    """The complete checkpoints of a run, oldest first (by stage, then step)."""
    root = Path(run_dir) / CHECKPOINTS
    found = []
    for d in root.glob("*-step-*") if root.is_dir() else []:
        if d.name.startswith(".") or not (d / STATE_FILE).is_file():
            continue
        try:
            p = Progress.from_json((d / STATE_FILE).read_text(encoding="utf-8"))
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{d / STATE_FILE} is unreadable ({e}); move that "
                                  "checkpoint away to resume from an older one") from None
        found.append((p, d))
    return sorted(found, key=lambda x: (x[0].stage, x[0].step))


def _digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)  # releases the GIL on large blocks: files hash in parallel
    return h.hexdigest()


def manifest(ckpt: Path) -> dict[str, Any]:
    """{"files": {relative path: {"size", "blake2b"}}} of every file under `ckpt` but the
    manifest itself."""
    files = sorted(p for p in ckpt.rglob("*") if p.is_file() and p.name != MANIFEST)
    with ThreadPoolExecutor(max_workers=4) as pool:
        digests = list(pool.map(_digest, files))
    return {"files": {p.relative_to(ckpt).as_posix(): {"size": p.stat().st_size, "blake2b": d}
                      for p, d in zip(files, digests, strict=True)}}


def verify(ckpt: Path) -> str | None:
    """Why `ckpt` does not match its manifest ("<file>: <reason>"), or None when it does."""
    try:
        listed = json.loads((ckpt / MANIFEST).read_text(encoding="utf-8"))["files"]
        listed = {str(k): (int(v["size"]), str(v["blake2b"])) for k, v in listed.items()}
    except FileNotFoundError:
        return f"{MANIFEST}: missing (a checkpoint written before strl checked them, or cut)"
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return f"{MANIFEST}: unreadable ({type(e).__name__})"
    present = {p.relative_to(ckpt).as_posix() for p in ckpt.rglob("*")
               if p.is_file() and p.name != MANIFEST}
    if missing := sorted(set(listed) - present):
        return f"{missing[0]}: missing"
    if extra := sorted(present - set(listed)):
        return f"{extra[0]}: not in the manifest"
    for name, (size, _) in listed.items():
        if (got := (ckpt / name).stat().st_size) != size:
            return f"{name}: {got} bytes, the manifest says {size} (truncated or overwritten)"
    files = sorted(listed)
    with ThreadPoolExecutor(max_workers=4) as pool:
        digests = list(pool.map(_digest, (ckpt / n for n in files)))
    for name, got in zip(files, digests, strict=True):
        if got != listed[name][1]:
            return f"{name}: content differs from the manifest (corrupted)"
    return None


def latest(run_dir: Path, say: Any = print) -> tuple[Progress, Path] | None:
    """The newest complete checkpoint of a run that verifies, or None when it has none.

    Each newer one that fails verification is named with its file and reason (`say`);
    CheckpointError when checkpoints exist but none verifies."""
    found = complete(run_dir)
    failed = []
    for progress, ckpt in reversed(found):
        why = verify(ckpt)
        if why is None:
            if failed:
                say(f"resuming from {ckpt.name}, the newest checkpoint that verifies")
            return progress, ckpt
        failed.append(f"{ckpt.name}: {why}")
        say(f"checkpoint {ckpt} fails verification: {why}")
    if failed:
        raise CheckpointError(f"no checkpoint of {run_dir} verifies ({'; '.join(failed)}); "
                              "it cannot be resumed: start a new run")
    return None


def prune(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` complete checkpoints, and leftover temporaries."""
    root = Path(run_dir) / CHECKPOINTS
    for d in root.glob(".*-step-*"):
        shutil.rmtree(d, ignore_errors=True)
    if keep > 0:
        for _, d in complete(run_dir)[:-keep]:
            shutil.rmtree(d, ignore_errors=True)
