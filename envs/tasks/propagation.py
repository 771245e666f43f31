"""`propagation`: a shock hits node a at step t; which node is affected next, and after
roughly how many steps?

All sources are shocked at the same step; nodes downstream of *other* sources that
respond after the same delay are offered as decoys (right timing, wrong place: only the
graph rules them out), and, next to two of those, the true next node with a wrong delay
(right place, wrong timing: only the series rule it out).
"""

from __future__ import annotations

import re

import numpy as np

from envs.detect import TAU, departures
from envs.prompt import ParsedPrompt
from envs.tasks.common import (
    Draft,
    EnvConfig,
    Parts,
    Task,
    agree,
    build,
    context,
    departure_text,
    n_sources,
    nd,
    node_list,
    pick_domain,
    pick_size,
    shuffle,
)
from envs.tasks.graphq import option_counts, responds

_Q = re.compile(r"shock hits Node (\d+) at step (\d+)")
_OPT = re.compile(r"Node (\d+), after about (\d+) steps?")


def _option(w, node: int, delay: int) -> str:
    return f"{nd(w, node)}, after about {delay} step{'s' if delay != 1 else ''}"


class Propagation(Task):
    name = "propagation"
    needs_graph = True
    min_nodes = 4

    def plan(self, rng: np.random.Generator, cfg: EnvConfig,
             design: np.random.Generator) -> Draft:
        domain = pick_domain(rng, cfg)
        n, t_len = pick_size(rng, cfg, self.nodes_needed(cfg))
        m = n_sources(rng, n, 0.35, 0.6)
        # Lags of 1-2 steps make equal delays (the data-consistent decoys) common.
        return Draft(build(rng, cfg, domain, n, t_len, m, list(range(m)), lag_range=(1, 2)))

    def finish(self, rng, cfg, draft, noisy, clean) -> Parts | None:
        w = draft.world
        dep = departures(clean)
        vis = responds(dep)
        fire = w.event_nodes
        for a in rng.permutation(sorted(fire)):
            a = int(a)
            kids = sorted((c for c in w.children[a] if vis[c]), key=lambda c: dep.onset[c])
            if not kids:
                continue
            c = kids[0]
            rivals_ok = all(dep.onset[o] >= dep.onset[c] + 2 if dep.onset[o] >= 0
                            else dep.peak[o] < 0.8 * TAU
                            for o in w.children[a] if o != c)
            if not rivals_ok:
                continue
            delay = int(dep.onset[c] - dep.onset[a])
            below = w.descendants(a)
            data_decoys = [int(x) for x in rng.permutation(w.n)
                           if vis[x] and x not in fire and x not in below
                           and dep.onset[x] - dep.onset[a] == delay]
            wrong = [d for d in (delay - 3, delay - 2, delay + 2, delay + 3) if d >= 1]
            d, g = option_counts(rng, cfg.n_options, len(data_decoys), True)
            if d < 1:
                continue
            opts = [_option(w, c, delay)] + [_option(w, x, delay) for x in data_decoys[:d]]
            opts += [_option(w, c, int(rng.choice(wrong)))] * g
            texts, gold = shuffle(rng, opts, 0)
            obs = departures(noisy)
            why = [f"The shock reaches {nd(w, a)} at step {dep.onset[a]}.",
                   f"In the graph, {nd(w, a)} links directly to {node_list(w, w.children[a])}.",
                   departure_text(w, obs, c) + f", {delay} steps after {nd(w, a)}"
                   + (", the first of its downstream nodes." if len(w.children[a]) > 1 else ".")]
            if d:
                decoys = data_decoys[:d]
                why.append(f"{node_list(w, decoys)} "
                           f"{agree(decoys, 'responds', 'respond')} after the same delay but "
                           f"{agree(decoys, 'is', 'are')} not downstream of {nd(w, a)}.")
            why.append(f"So {_option(w, c, delay)}: option {'ABCDEF'[gold]}.")
            return Parts(
                question=(f"{context(w)} A shock hits Node {w.label(a)} at step "
                          f"{dep.onset[a]}. Which node is affected next, and after roughly "
                          "how many steps?"),
                options=texts, gold=gold, rationale=" ".join(why),
                meta={"shocked": w.label(a), "next": w.label(c), "delay": delay},
            )
        return None

    def solve(self, p: ParsedPrompt) -> int:
        a, t_a = (int(x) for x in _Q.search(p.question).groups())
        dep = departures(p.series)
        kids = {v for u, v in p.edges if u == a} if p.edges is not None else None
        scored = []
        for i, o in enumerate(p.options):
            node, delay = (int(x) for x in _OPT.match(o).groups())
            if kids is not None and node not in kids:
                continue
            onset = dep.onset[node] if dep.onset[node] >= 0 else 10**9
            scored.append((onset, abs(delay - (onset - t_a)), i))
        return min(scored)[2] if scored else 0
