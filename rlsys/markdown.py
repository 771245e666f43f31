"""Markdown pieces shared by the reports (`strl train`'s report.md, `strl eval`'s eval.md and
compare.md): numbers formatted one way, tables, differences."""

from __future__ import annotations

import math
from typing import Any


def fmt(v: Any, digits: int = 3, sign: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"
    return str(v)


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a
