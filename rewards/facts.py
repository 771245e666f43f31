"""`Facts`: the data of one question that a rationale's claims are checked against.

A `Target` carries its question's facts (built from a record's `series` and `edges`), and
`rewards.rationale` checks a `<think>`'s claims against them. They live here, below both,
so that the target and the checker import them and not each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from envs.detect import departures


@dataclass(frozen=True)
class Facts:
    """What the claims are checked against: each node's departure step (-1: none) read
    off the prompt's numbers, and the graph's links with their lags (None: not given)."""

    onsets: tuple[int, ...]
    links: Mapping[tuple[int, int], int | None]

    @classmethod
    def of(cls, series: Sequence[Sequence[float]], edges: Sequence[Sequence[int]]) -> Facts:
        x = np.asarray(series, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] < 2:
            raise ValueError("series: one row of at least 2 values per node")
        links = {(int(e[0]), int(e[1])): (int(e[2]) if len(e) > 2 and e[2] is not None
                                          else None) for e in edges}
        return cls(tuple(int(o) for o in departures(x).onset), links)
