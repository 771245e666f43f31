"""Helpers shared by the tasks that need the graph: reading onsets, ancestry on parsed
edges, and assembling options from data-consistent and graph-consistent decoys."""

from __future__ import annotations

import numpy as np

from envs.detect import QUIET, VISIBLE, Departures


def responds(dep: Departures) -> np.ndarray:
    """Nodes whose noise-free peak is clearly visible (a noisy copy will show it too)."""
    return (dep.onset >= 0) & (dep.peak >= VISIBLE)


def stays_quiet(dep: Departures) -> np.ndarray:
    return dep.peak < QUIET


def option_counts(rng: np.random.Generator, n_options: int, n_data_decoys: int,
                  has_graph_decoy: bool) -> tuple[int, int]:
    """(data-consistent decoys, graph-consistent decoys) to use.

    A graph-consistent decoy (ruled out only by the data) is added only next to at least
    two data-consistent ones, and then in half the cases, so a graph-free solver stays
    within (1/(n-1) - 1/n) / 2 of chance on average (about 4 points for 4 options).
    """
    g = int(has_graph_decoy and n_options >= 4 and n_data_decoys >= n_options - 2
            and rng.random() < 0.5)
    return min(n_data_decoys, n_options - 1 - g), g


def ancestors_all(n: int, edges: list[tuple[int, int]]) -> list[set[int]]:
    """Ancestor sets of nodes 0..n-1 of a DAG whose edges go from lower to higher index."""
    anc: list[set[int]] = [set() for _ in range(n)]
    for u, v in sorted(edges, key=lambda e: e[1]):
        anc[v] |= anc[u] | {u}
    return anc


def reach(edges: list[tuple[int, int]], start: int, forward: bool = True) -> set[int]:
    """Descendants (forward) or ancestors of `start` in an edge list."""
    nxt: dict[int, list[int]] = {}
    for u, v in edges:
        a, b = (u, v) if forward else (v, u)
        nxt.setdefault(a, []).append(b)
    out: set[int] = set()
    stack = list(nxt.get(start, []))
    while stack:
        x = stack.pop()
        if x not in out:
            out.add(x)
            stack.extend(nxt.get(x, []))
    return out
