"""`root_cause`: a new disturbance reaches node k at step t; which node did it start from?

Every option is a source that fires (its series departs before t) and links to k (the
graph has the edge, with its lag): the series alone and the graph alone each leave every
option standing. Only the alignment of the two answers it: the culprit's departure plus
its link's lag is t; every other candidate's disturbance reaches k at least three steps
earlier or later (`graphq.aligned_design` draws leads and lags so that neither half alone
ranks the gold apart). All candidates fire the same event (same size, duration and
recovery rate, no daily cycle), so k's response cannot be matched to its source by
waveform; the decoys' links to k are closed while the series run (the graph shows them,
the data show that nothing crossed), so k shows one arrival and no faint extra bump tells
which decoys arrive early or late.
"""

from __future__ import annotations

import re

import numpy as np

from envs.detect import departures
from envs.domains import Domain
from envs.prompt import ParsedPrompt
from envs.tasks.common import (
    Draft,
    EnvConfig,
    Parts,
    Task,
    context,
    event_amp,
    nd,
    pick_domain,
    pick_size,
    shuffle,
)
from envs.tasks.graphq import aligned_design, hang, lead_window, min_lag_paths
from envs.world import Event, World, draw_world

_Q = re.compile(r"reaches Node (\d+) at step (\d+)")
LEADS = (2, 9)
"""Range of candidate leads and link lags in steps (see `graphq.aligned_design`)."""
TOLERANCE = 1
"""Steps by which the oracle's predicted arrival may miss (onset detection jitter)."""


def star_graph(rng: np.random.Generator, n: int, k: int) -> tuple[list[tuple[int, int]], int,
                                                                    list[int]]:
    """Edges of a DAG where candidates 0..k-1 are the only parents of a target node.

    Returns (edges, target, extra sources). Extra sources and the nodes after the target
    hang off earlier nodes, so no other path into the target exists.
    """
    rest = n - k - 1
    extra = int(rng.integers(0, min(2, rest - 1) + 1)) if rest >= 2 else 0
    target = k + extra
    edges = {(c, target) for c in range(k)}
    hang(rng, edges, target + 1, n)
    for s in range(k, target):  # every extra source feeds a node after the target
        if not any(u == s for u, _ in edges):
            edges.add((s, int(rng.integers(target + 1, n))))
    return sorted(edges), target, list(range(k, target))


def star_world(rng: np.random.Generator, cfg: EnvConfig, domain: Domain, n: int,
               length: int, star: tuple[list[tuple[int, int]], int, list[int]],
               leads: list[int], lags: list[int], arrival: int,
               extra_window: tuple[int, int], lag_range: tuple[int, int]) -> World:
    """The world of a `star_graph` whose k candidates all fire the same event, candidate c
    departing `leads[c]` steps before `arrival` over a link of lag `lags[c]` into the
    target. Only candidate 0's link carries anything (the others are closed while the
    series run); each extra source fires, with even odds, at a step drawn from
    `extra_window`; the other links' lags are drawn from `lag_range`. Shared by root_cause
    and intervention."""
    edges, target, extra = star
    k = len(leads)
    amp, dur = event_amp(rng, domain), int(rng.integers(8, 13))
    # The event starts one step before the departure it causes (Euler steps forward).
    events = [Event((c,), arrival - leads[c] - 1, dur, amp) for c in range(k)]
    fired = [s for s in extra if rng.random() < 0.5]
    events += [Event((s,), int(rng.integers(*extra_window)) - 1, dur, amp) for s in fired]
    return draw_world(rng, domain, n, length, edges, k + len(extra), events, cfg.noise,
                      lag_range=lag_range, lags={(c, target): lags[c] for c in range(k)},
                      alike=tuple(range(k)) + tuple(fired),
                      closed_edges=frozenset((c, target) for c in range(1, k)))


class RootCause(Task):
    name = "root_cause"
    needs = ("series", "graph")

    def nodes_needed(self, cfg: EnvConfig) -> int:
        return cfg.n_options + 1

    def plan(self, rng: np.random.Generator, cfg: EnvConfig,
             design: np.random.Generator) -> Draft:
        domain = pick_domain(rng, cfg)
        n, t_len = pick_size(rng, cfg, self.nodes_needed(cfg))
        k = cfg.n_options
        leads, lags = aligned_design(design, k, *LEADS)
        star = star_graph(rng, n, k)
        lo, hi = lead_window(t_len, LEADS[1])
        t_k = int(rng.integers(lo, hi + 1))
        world = star_world(rng, cfg, domain, n, t_len, star, leads, lags, t_k,
                           (lo - LEADS[1], hi), LEADS)
        return Draft(world, {"target": star[1], "k": k})

    def finish(self, rng, cfg, draft, noisy, clean) -> Parts | None:
        w, target, k = draft.world, draft.info["target"], draft.info["k"]
        dep, obs = departures(clean), departures(noisy)
        cands = list(range(k))
        if any(dep.onset[c] < 0 or obs.onset[c] != dep.onset[c] for c in cands):
            return None
        arrival = [int(dep.onset[c]) + w.lags[(c, target)] for c in cands]
        t_k = arrival[0]
        if any(abs(a - t_k) < 2 * TOLERANCE + 1 for a in arrival[1:]):
            return None
        # The arrival must be visible at the target: a clear move within three steps.
        base = max(abs(dep.baseline[target]), 1e-9)
        end = min(t_k + 3, w.length - 1)
        if abs(clean[target, end] - clean[target, t_k - 1]) / base < 0.03:
            return None
        texts, gold = shuffle(rng, [nd(w, c) for c in cands], 0)
        order = sorted(cands, key=w.label)
        why = [f"{nd(w, target)} receives links from {', '.join(nd(w, c) for c in order)}."]
        for c in order:
            lag, on = w.lags[(c, target)], int(obs.onset[c])
            verdict = ("matches" if c == 0 else
                       "too early" if on + lag < t_k else "too late")
            why.append(f"{nd(w, c)} departs at step {on}. {nd(w, c)}->{nd(w, target)} "
                       f"(lag {lag}), so {on} + {lag} = {on + lag}: {verdict}.")
        why.append(f"So the disturbance at step {t_k} started at {nd(w, 0)}: option "
                   f"{'ABCDEF'[gold]}.")
        return Parts(
            question=(f"{context(w)} A new disturbance reaches {nd(w, target)} at step {t_k}. "
                      "Which node did it start from?"),
            options=texts, gold=gold, rationale=" ".join(why),
            meta={"target": w.label(target), "culprit": w.label(0),
                  "arrivals": {w.label(c): a for c, a in zip(cands, arrival, strict=True)}},
        )

    def solve(self, p: ParsedPrompt) -> int:
        target, t_k = (int(x) for x in _Q.search(p.question).groups())
        if not p.lags:  # without the graph's lags nothing can be aligned
            return 0
        dep = departures(p.series)
        to_k = min_lag_paths(len(p.series), p.lags, target)
        miss = [abs(dep.onset[x] + to_k[x] - t_k) if dep.onset[x] >= 0 else np.inf
                for x in (int(o.split()[1]) for o in p.options)]
        return int(np.argmin(miss))
