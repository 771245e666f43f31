"""Reading disturbances off series: the one definition of "node k departs at step t".

Ground truth (on the noise-free twin), oracle solvers (on the numbers in a prompt) and
reference rationales all use these functions, so a question's gold answer and its
verification agree by construction.

A node departs at the first step s >= the baseline window where its relative deviation
from the baseline median (the upper median for an even window) exceeds `TAU` at s and at
s + 1. Events never start inside the baseline window (the first `BASELINE_FRAC` of the
series).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TAU = 0.1
"""Relative deviation that counts as a departure (events move a source by 35-70%)."""
BASELINE_FRAC = 0.3
VISIBLE = 2 * TAU
"""A node 'responds' when its noise-free peak deviation reaches this."""


@dataclass(frozen=True)
class Departures:
    onset: np.ndarray  # (N,) int, -1 where the node never departs
    peak: np.ndarray  # (N,) max |relative deviation| after the baseline window
    sign: np.ndarray  # (N,) sign of the deviation at its peak
    baseline: np.ndarray  # (N,) baseline median in the series' units
    peak_at: np.ndarray  # (N,) step of the peak


def baseline_len(length: int) -> int:
    return max(6, int(length * BASELINE_FRAC))


def baselines(x: np.ndarray) -> np.ndarray:
    """Each series' baseline level, shape (N,): the (upper) median of its baseline window
    (series x of shape (N, T); a series shorter than the window is its own window)."""
    w = min(baseline_len(x.shape[1]), x.shape[1])
    return np.partition(x[:, :w], w // 2, axis=1)[:, w // 2]


def departures(x: np.ndarray) -> Departures:
    """Departure analysis of series x of shape (N, T)."""
    w = baseline_len(x.shape[1])
    base = baselines(x)
    d = (x - base[:, None]) / np.maximum(np.abs(base[:, None]), 1e-9)
    post = np.abs(d[:, w:])
    above = post > TAU
    both = above[:, :-1] & above[:, 1:]
    has = both.any(axis=1)
    onset = np.where(has, both.argmax(axis=1) + w, -1)
    k = post.argmax(axis=1)
    peak = post[np.arange(len(x)), k]
    sign = np.sign(d[np.arange(len(x)), k + w])
    return Departures(onset, peak, sign, base, k + w)
