"""Helpers shared by the tasks that need the graph: reading responses, ancestry, and the
timing-alignment design (departures read off the series + route lags read off the graph)
behind root_cause, propagation and correlation."""

from __future__ import annotations

import numpy as np

from envs.detect import VISIBLE, Departures, baseline_len


def responds(dep: Departures) -> np.ndarray:
    """Nodes whose noise-free peak is clearly visible (a noisy copy will show it too)."""
    return (dep.onset >= 0) & (dep.peak >= VISIBLE)


def hang(rng: np.random.Generator, edges: set[tuple[int, int]], start: int, n: int,
         avoid: int | None = None) -> None:
    """Give nodes start..n-1 a parent among the earlier nodes (sometimes two), never
    `avoid`: the rest of a network around a task's fixed core, added to `edges`."""
    u01 = rng.random((n, 3))
    for v in range(start, n):
        pool = [x for x in range(v) if x != avoid]
        edges.add((pool[int(u01[v, 0] * len(pool))], v))
        if u01[v, 1] < 0.35:
            edges.add((pool[int(u01[v, 2] * len(pool))], v))


def ancestors_all(n: int, edges: list[tuple[int, int]]) -> list[set[int]]:
    """Ancestor sets of nodes 0..n-1 of a DAG whose edges go from lower to higher index."""
    anc: list[set[int]] = [set() for _ in range(n)]
    for u, v in sorted(edges, key=lambda e: e[1]):
        anc[v] |= anc[u] | {u}
    return anc


# ---- timing alignment ----------------------------------------------------------------
#
# The graph-needing tasks ask for the one candidate whose *timing lines up*: a source's
# departure (read off the series) plus the delay of its route (read off the graph's lags)
# equals a stated arrival. Each candidate has a lead (steps between its departure and the
# arrival: the series' half) and a route lag (the graph's half); only the gold has
# lead == lag. For neither half alone to point at the gold, the gold's lead and its lag
# must each be distributed exactly like a decoy's: the gold draws lead = lag uniformly in
# [lo, hi], a decoy draws its lead uniformly and its lag as the lead shifted cyclically by
# s in [gap, R - gap] (R = hi - lo + 1), which is again uniform and never within gap - 1
# of the lead. Ranks, means and extremes of either half are then the same for gold and
# decoys; only their pairing, which needs both inputs, differs.

def aligned_design(design: np.random.Generator, k: int, lo: int, hi: int,
                   gap: int = 3) -> tuple[list[int], list[int]]:
    """(leads, lags) of k candidates, the gold first: lead == lag for the gold only."""
    span = hi - lo + 1
    if span < 2 * gap:
        raise ValueError(f"an aligned design needs hi - lo + 1 >= {2 * gap}, got [{lo}, {hi}]")
    leads = [int(x) for x in design.integers(lo, hi + 1, size=k)]
    shifts = design.integers(gap, span - gap + 1, size=k)
    lags = [leads[0]] + [lo + (leads[i] - lo + int(shifts[i])) % span for i in range(1, k)]
    return leads, lags


def min_lag_paths(n: int, lags: dict[tuple[int, int], int], target: int) -> np.ndarray:
    """Least total lag of a path from every node to `target` (inf where none; 0 at it)."""
    best = np.full(n, np.inf)
    best[target] = 0.0
    for _ in range(n):  # Bellman-Ford on a DAG of at most n nodes
        changed = False
        for (u, v), lag in lags.items():
            if best[v] + lag < best[u]:
                best[u] = best[v] + lag
                changed = True
        if not changed:
            break
    return best


def lead_window(length: int, hi: int) -> tuple[int, int]:
    """Arrival steps t for which every candidate departure t - lead (lead <= hi) falls
    after the baseline window and every arrival t +- hi falls before the end."""
    return baseline_len(length) + 2 + hi, length - hi - 2
