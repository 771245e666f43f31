"""Reading and writing sample files: JSONL or Parquet, chosen by the file's extension.

Errors name the file and what is wrong with it (`DataError`), so the CLI can print one
clear line instead of a traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rlsys.files import tmp_name

FORMATS = (".jsonl", ".parquet")


class DataError(ValueError):
    """A data file is missing, malformed, or lacks a needed column."""


def _kind(path: str | os.PathLike) -> str:
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise DataError(f"{path}: unsupported extension '{ext}'; use .jsonl or .parquet")
    return ext


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of a JSONL or Parquet file as dicts."""
    kind = _kind(path)
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    if kind == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    rows = []
    with open(path, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{ln}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{ln}: each line must be a JSON object")
            rows.append(row)
    return rows


class RowWriter:
    """Streams rows to JSONL or Parquet; writes to a temp file and renames on close, so a
    crashed or interrupted run never leaves a half-written file under the final name."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.kind = _kind(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp_name(self.path)
        self._f = open(self.tmp, "w", encoding="utf-8") if self.kind == ".jsonl" else None
        self._writer = None

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        if self.kind == ".jsonl":
            for r in rows:
                self._f.write(json.dumps(r, ensure_ascii=False) + "\n")
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(rows)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.tmp, table.schema)
        self._writer.write_table(table.cast(self._writer.schema))

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
        if self._writer is not None:
            self._writer.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self._f is not None:
            self._f.close()
        if self._writer is not None:
            self._writer.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def iter_chunks(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def fresh_dir(base: Path) -> Path:
    """`base`, or `base-2`, `base-3`, ... : the first that is missing or empty (so an
    earlier run or evaluation is never overwritten)."""
    path, k = base, 1
    while path.exists() and any(path.iterdir()):
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path
