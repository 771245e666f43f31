"""The few statistics the reports state: a mean's standard error, a paired change, and a
share's confidence interval."""

from __future__ import annotations

import math

import numpy as np


def standard_error(values: list[float]) -> float:
    """Standard error of the mean of `values` (0 for fewer than two)."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def paired_change(before: list[float], after: list[float]) -> dict[str, float]:
    """The mean change of paired values (after - before) and its standard error."""
    d = [b - a for a, b in zip(before, after, strict=True)]
    return {"change": float(np.mean(d)) if d else 0.0, "se": standard_error(d)}


def wilson(p: float | None, n: int, z: float = 1.96) -> list[float] | None:
    """The Wilson score interval of a share `p` of `n` trials (None without trials)."""
    if p is None or n <= 0:
        return None
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]
