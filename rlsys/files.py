"""Writing so that a reader never sees half a file: the one atomic writer.

A file is written under a temporary sibling name (`.name.tmp-<pid>`, so concurrent
writers never share one) and renamed into place; a directory is written completely under
its own temporary name and swapped in with `replace_dir`. A crash leaves the old version
or the new one under the final name, and at most a dot-file beside it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def tmp_name(path: Path) -> Path:
    """The temporary sibling a file is written under before it is renamed to `path`."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_atomic(path: str | Path, data: str | bytes, fsync: bool = False) -> Path:
    """Write text (UTF-8) or bytes to `path` atomically; `fsync` also makes the content
    durable before the rename (checkpoints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_png(fig: Any, path: str | Path, **savefig: Any) -> Path:
    """A matplotlib figure as PNG, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    try:
        fig.savefig(tmp, format="png", **{"dpi": 100, **savefig})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def replace_dir(tmp: Path, final: Path) -> Path:
    """Swap a completely written directory `tmp` in as `final` (an existing `final` is set
    aside first, then removed) and persist the rename."""
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
        final.rename(old / final.name)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)  # atomic; fails if another writer filled `final` meanwhile
    fsync_dir(final.parent)
    return final


def fsync_dir(path: Path) -> None:
    """Persist a rename: fsync the directory that holds the entry."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
