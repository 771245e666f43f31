"""`correlation`: how is Node b's change during steps w0-w1 related to Node a: directly
over their link, or through an intermediate node?

Node a's disturbance leaves it along several routes to b (the direct link and routes
through intermediates), each with its own total lag; the window names the arrival that
the question is about. The graph alone gives every route's total lag but not when a
departed; the series alone give when a departed (so the delay the window implies) but
not the routes' lags. Only together do they single out the route whose total lag equals
the observed delay. Route totals are drawn distinct (three or more steps apart) and the
gold route uniformly among them, independently of its total and of being direct, so
neither a lag nor a route type points at it; the other routes' last links are closed
while the series run, so b shows one arrival and cannot be matched to its route by
counting arrivals.

Neither the size of the disturbance nor the window gives the route away:
- *Magnitude.* Every link of a route passes on a pinned share of its tail's departure
  (`draw_world`'s `gains`). The gold route's end-to-end gain is drawn from one range
  whether it is direct or a relay (a relay's last link makes up what its first link took),
  and every first link's gain from another, so b's peak over a's, and b's over each
  intermediate's, are distributed alike for the gold and for the other routes.
- *Feasibility.* The arrival step is drawn from a range that every route fits (a's
  departure, arrival minus the route's total, lies after the baseline window for all of
  them) and then a departs the gold route's total earlier: the window does not depend on
  which route is the gold, so no route is ruled out or favoured by it.
"""

from __future__ import annotations

import re

import numpy as np

from envs.detect import baseline_len, departures
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
from envs.tasks.graphq import hang
from envs.world import Event, draw_world

_Q = re.compile(r"between Node (\d+) and Node (\d+) during time steps (\d+)-(\d+)")
_DIRECT = re.compile(r"^Directly, over the link Node (\d+)->Node (\d+)")
_VIA = re.compile(r"^Through Node (\d+) \(Node (\d+)->Node \d+->Node (\d+)\)")
LEAST_TOTAL = 4
"""Least total lag of a route in steps (first links take 1-2 steps, last links 2 or more)."""
GAP = 3
"""Least difference between two routes' totals."""
HALF = 2
"""The window is the arrival step +- HALF (a fixed width: its size says nothing)."""
ROUTE_GAIN = (0.45, 0.7)
"""Range of the gold route's end-to-end gain (b's departure over a's), for every route type."""
FIRST_GAIN = (0.78, 0.9)
"""Range of each first link's gain (an intermediate's departure over a's); a relay's last
link passes on route gain / first gain, at most 0.7 / 0.78 < 0.9."""


def route_totals(design: np.random.Generator, k: int) -> list[int]:
    """k totals of at least LEAST_TOTAL steps, pairwise at least GAP apart, in random
    order (drawn from a range with room for 4 free steps whatever k is)."""
    lo = LEAST_TOTAL
    span = k + 3  # k - 1 gaps of GAP steps and 4 free steps, less the k - 1 (GAP - 1) taken
    picks = np.sort(design.choice(span + 1, size=k, replace=False))
    totals = [lo + int(p) + i * (GAP - 1) for i, p in enumerate(picks)]
    return [totals[i] for i in design.permutation(k)]


class Correlation(Task):
    name = "correlation"
    needs = ("series", "graph")

    def nodes_needed(self, cfg: EnvConfig) -> int:
        return cfg.n_options + 1  # a, b and one intermediate per route but the direct one

    def plan(self, rng: np.random.Generator, cfg: EnvConfig,
             design: np.random.Generator) -> Draft:
        domain = pick_domain(rng, cfg)
        n, t_len = pick_size(rng, cfg, self.nodes_needed(cfg))
        k = cfg.n_options
        totals = route_totals(design, k)  # route 0 is direct, route i goes through node i
        gold = int(design.integers(k))
        # Node order: a = 0, intermediates 1..k-1, b = k, the rest after b.
        a, b = 0, k
        first = [0] + [int(h) for h in rng.integers(1, 3, size=k - 1)]
        edges = {(a, b)} | {(a, i) for i in range(1, k)} | {(i, b) for i in range(1, k)}
        lags = {(a, b): totals[0]}
        for i in range(1, k):
            lags[(a, i)] = first[i]
            lags[(i, b)] = totals[i] - first[i]
        hang(rng, edges, k + 1, n)
        first_gain = rng.uniform(*FIRST_GAIN, size=k)  # [0] unused: route 0 is direct
        route_gain = float(rng.uniform(*ROUTE_GAIN))
        gains = {(a, i): float(first_gain[i]) for i in range(1, k)}
        gains[(a, b) if gold == 0 else (gold, b)] = route_gain / (
            1.0 if gold == 0 else float(first_gain[gold]))
        # The arrival fits every route (only a 6-option question on a 36-step series
        # lacks the room, and is clipped to the series' end).
        last = t_len - 4
        t_b = int(rng.integers(min(last, baseline_len(t_len) + 2 + max(totals)), last + 1))
        t_a = t_b - totals[gold]
        closed = {(a, b) if r == 0 else (r, b) for r in range(k) if r != gold}
        world = draw_world(rng, domain, n, t_len, sorted(edges), 1,
                           [Event((a,), t_a - 1, int(rng.integers(8, 13)),
                                  event_amp(rng, domain))],
                           cfg.noise, lag_range=(1, 4), lags=lags,
                           alike=tuple(range(k)), closed_edges=frozenset(closed),
                           gains=gains)
        return Draft(world, {"k": k, "gold": gold, "totals": totals})

    def finish(self, rng, cfg, draft, noisy, clean) -> Parts | None:
        w, info = draft.world, draft.info
        k, gold, totals = info["k"], info["gold"], info["totals"]
        a, b = 0, k
        dep, obs = departures(clean), departures(noisy)
        if dep.onset[a] < 0 or obs.onset[a] != dep.onset[a]:
            return None
        t_a = int(dep.onset[a])
        t_b = t_a + totals[gold]
        if t_b + 3 >= w.length:
            return None
        base = max(abs(dep.baseline[b]), 1e-9)
        if abs(clean[b, min(t_b + 3, w.length - 1)] - clean[b, t_b - 1]) / base < 0.03:
            return None  # the arrival must be visible at b
        texts = [f"Directly, over the link {nd(w, a)}->{nd(w, b)}."] + [
            f"Through {nd(w, i)} ({nd(w, a)}->{nd(w, i)}->{nd(w, b)})." for i in range(1, k)]
        texts, g = shuffle(rng, texts, gold)
        w0, w1 = t_b - HALF, t_b + HALF
        why = [f"{nd(w, a)} departs at step {t_a}, and {nd(w, b)} changes at about step "
               f"{t_b}."]
        for r in range(k):
            route = (f"Direct: {nd(w, a)}->{nd(w, b)} (lag {totals[0]})," if r == 0 else
                     f"Via {nd(w, r)}: {nd(w, a)}->{nd(w, r)} (lag {w.lags[(a, r)]}), "
                     f"{nd(w, r)}->{nd(w, b)} (lag {w.lags[(r, b)]}), {w.lags[(a, r)]} + "
                     f"{w.lags[(r, b)]} = {totals[r]},")
            why.append(f"{route} {t_a} + {totals[r]} = {t_a + totals[r]}: "
                       + ("matches." if r == gold else "no."))
        why.append(f"So option {'ABCDEF'[g]}.")
        return Parts(
            question=(f"{context(w)} Which route explains the relationship between "
                      f"{nd(w, a)} and {nd(w, b)} during time steps {w0}-{w1}? "
                      f"{nd(w, a)}'s disturbance reaches {nd(w, b)}:"),
            options=texts, gold=g, rationale=" ".join(why),
            meta={"pair": [w.label(a), w.label(b)],
                  "route": "direct" if gold == 0 else f"via {w.label(gold)}",
                  "delay": totals[gold]},
        )

    def solve(self, p: ParsedPrompt) -> int:
        a, b, w0, w1 = (int(x) for x in _Q.search(p.question).groups())
        if not p.lags:
            return 0
        dep = departures(p.series)
        delay = (w0 + w1) // 2 - dep.onset[a]
        miss = []
        for o in p.options:
            if m := _DIRECT.match(o):
                total = p.lags.get((a, b), 10**6)
            elif m := _VIA.match(o):
                x = int(m.group(1))
                total = p.lags.get((a, x), 10**6) + p.lags.get((x, b), 10**6)
            else:
                total = 10**6
            miss.append(abs(total - delay))
        return int(np.argmin(miss))
