"""`propagation`: at step t a shock hits one node; which node does it reach next?

The question names no node: the series tell which node jumps at step t (several sources
fire the same event, each at its own step), the graph tells where that node's shock goes
first (its link with the least lag). Every option is the first child of some firing
source (the graph alone cannot tell which source is meant) and departs a few steps after
t (the series alone cannot tell which departure the shock caused): the offsets of the
options' departures after t and their links' lags are drawn by `graphq.aligned_design`,
so only their pairing, which needs both inputs, identifies the gold.
"""

from __future__ import annotations

import re

import numpy as np

from envs.detect import departures
from envs.prompt import ParsedPrompt
from envs.tasks.common import (
    Draft,
    EnvConfig,
    Parts,
    Task,
    context,
    event_amp,
    nd,
    node_list,
    pick_domain,
    pick_size,
    shuffle,
)
from envs.tasks.graphq import aligned_design, hang, lead_window, responds
from envs.world import Event, draw_world

_Q = re.compile(r"At step (\d+) a shock hits")
LAGS = (2, 8)
"""Range of the options' link lags and departure offsets in steps."""


def fan_graph(rng: np.random.Generator, n: int, k: int,
              lags: list[int]) -> tuple[list[tuple[int, int]], dict[tuple[int, int], int]]:
    """Sources 0..k-1, each with its own first child k..2k-1 (link lag `lags[i]`), and a
    shadow source 2k with no option among its children; the other nodes hang below,
    joined by links slower than any source's first link."""
    edges = {(i, k + i) for i in range(k)}
    fixed = {(i, k + i): lags[i] for i in range(k)}
    hang(rng, edges, 2 * k + 1, n)
    if n > 2 * k + 1 and not any(u == 2 * k for u, _ in edges):
        edges.add((2 * k, int(rng.integers(2 * k + 1, n))))  # the shadow feeds someone too
    for u, v in edges:
        if u < k and v >= 2 * k:  # a source's other children come later than its first
            fixed[(u, v)] = lags[u] + 2 + int(rng.integers(0, 4))
    return sorted(edges), fixed


class Propagation(Task):
    name = "propagation"
    needs = ("series", "graph")

    def nodes_needed(self, cfg: EnvConfig) -> int:
        return 2 * cfg.n_options + 1

    def plan(self, rng: np.random.Generator, cfg: EnvConfig,
             design: np.random.Generator) -> Draft:
        domain = pick_domain(rng, cfg)
        n, t_len = pick_size(rng, cfg, self.nodes_needed(cfg))
        k = cfg.n_options
        offsets, lags = aligned_design(design, k, *LAGS, gap=2)
        edges, fixed = fan_graph(rng, n, k, lags)
        lo, hi = lead_window(t_len, LAGS[1])
        t = int(rng.integers(lo, hi + 1))
        amp, dur = event_amp(rng, domain), int(rng.integers(8, 13))
        # Source i fires so that its first child departs `offsets[i]` steps after t.
        events = [Event((i,), t + offsets[i] - lags[i] - 1, dur, amp) for i in range(k)]
        # The shadow fires within reach of the gold's departure, as the decoys' own
        # sources are within reach of theirs: the series cannot single out the one
        # option that nothing but the shocked node could have moved.
        shadow = t + offsets[0] - int(rng.integers(LAGS[0], LAGS[1] + 1))
        if abs(shadow - t) < 2:
            shadow = t + offsets[0] - LAGS[0] if offsets[0] - LAGS[0] >= 2 else t - 2
        events.append(Event((2 * k,), shadow - 1, dur, amp))
        world = draw_world(rng, domain, n, t_len, edges, k + 1, events, cfg.noise,
                           lag_range=LAGS, lags=fixed, alike=tuple(range(k)) + (2 * k,))
        return Draft(world, {"k": k})

    def finish(self, rng, cfg, draft, noisy, clean) -> Parts | None:
        w, k = draft.world, draft.info["k"]
        dep, obs = departures(clean), departures(noisy)
        vis = responds(dep)
        srcs, kids = list(range(k)), list(range(k, 2 * k))
        if any(obs.onset[i] != dep.onset[i] or dep.onset[i] < 0 for i in srcs + [2 * k]):
            return None
        t = int(dep.onset[0])
        if not all(vis[c] for c in kids):
            return None
        if any(abs(int(obs.onset[i]) - t) < 2 for i in srcs[1:] + [2 * k]):
            return None  # the shocked node must be the only source departing near t
        delay = int(dep.onset[k]) - t
        if abs(delay - w.lags[(0, k)]) > 1:
            return None
        texts, gold = shuffle(rng, [nd(w, c) for c in kids], 0)
        out = sorted(w.children[0], key=lambda c: w.lags[(0, c)])
        why = [f"At step {t}, {nd(w, 0)} leaves its baseline: the shock hits it.",
               "In the graph: "
               + "; ".join(f"{nd(w, 0)}->{nd(w, c)} (lag {w.lags[(0, c)]})" for c in out)
               + ".",
               f"The least lag is to {nd(w, k)}, and {nd(w, k)} departs at step "
               f"{int(obs.onset[k])}, {int(obs.onset[k]) - t} steps after {nd(w, 0)}."]
        others = kids[1:]
        why.append(f"{node_list(w, others)} "
                   f"{'is' if len(others) == 1 else 'are'} fed by other sources "
                   f"({', '.join(f'{nd(w, i)} from step {int(obs.onset[i])}' for i in srcs[1:])}"
                   f"), not by {nd(w, 0)}.")
        why.append(f"So the shock reaches {nd(w, k)} next: option {'ABCDEF'[gold]}.")
        return Parts(
            question=(f"{context(w)} At step {t} a shock hits one node of the network. "
                      "Which node does it reach next?"),
            options=texts, gold=gold, rationale=" ".join(why),
            meta={"shocked": w.label(0), "next": w.label(k), "delay": delay},
        )

    def solve(self, p: ParsedPrompt) -> int:
        t = int(_Q.search(p.question).group(1))
        if not p.lags:
            return 0
        dep = departures(p.series)
        fed = {v for _, v in p.edges or []}
        hit = sorted((i in fed, i) for i in range(len(p.series)) if dep.onset[i] == t)
        if not hit:
            return 0
        a = hit[0][1]  # a node without incoming links first: the shock starts there
        kids = sorted(((lag, v) for (u, v), lag in p.lags.items() if u == a))
        nodes = [int(o.split()[1]) for o in p.options]
        for _, v in kids:
            if v in nodes:
                return nodes.index(v)
        return 0
