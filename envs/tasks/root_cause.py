"""`root_cause`: an anomaly is seen at node k from step t; which node started it?

Several sources are disturbed at the same step with the same event, so from the series
alone every disturbed source is an equally good culprit; only the graph tells which one
has a path to k. A quiet upstream node of k (a culprit by the graph, ruled out by its flat
series) is added when two data-consistent decoys are present.
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
from envs.tasks.graphq import ancestors_all, option_counts, reach, responds, stays_quiet
from envs.world import random_dag

_Q = re.compile(r"observed at Node (\d+) from step (\d+)")


class RootCause(Task):
    name = "root_cause"
    needs_graph = True
    min_nodes = 4

    def plan(self, rng: np.random.Generator, cfg: EnvConfig,
             design: np.random.Generator) -> Draft:
        domain = pick_domain(rng, cfg)
        n, t_len = pick_size(rng, cfg, self.nodes_needed(cfg))
        m = n_sources(rng, n, 0.35, 0.6)
        fire = list(range(m))
        if m >= 3 and rng.random() < 0.5:
            fire.remove(int(rng.integers(m)))  # a quiet source: a graph-only suspect
        for _ in range(20):  # cheap structural check before drawing dynamics and noise
            edges = random_dag(rng, n, m)
            anc = ancestors_all(n, edges)
            if any(len(anc[k] & set(fire)) == 1 and set(fire) - anc[k] for k in range(m, n)):
                break
        return Draft(build(rng, cfg, domain, n, t_len, m, fire, edges=edges))

    def finish(self, rng, cfg, draft, noisy, clean) -> Parts | None:
        w = draft.world
        dep = departures(clean)
        vis, quiet = responds(dep), stays_quiet(dep)
        fire = w.event_nodes
        for k in rng.permutation(w.n):
            k = int(k)
            anc = w.ancestors(k)
            culprits = anc & fire
            if k in w.sources or not vis[k] or len(culprits) != 1:
                continue
            s = culprits.pop()
            if dep.onset[k] < dep.onset[s] + 2:
                continue
            data_decoys = [int(x) for x in rng.permutation(sorted(fire - anc))]
            graph_decoys = [q for q in w.sources if q in anc and q not in fire and quiet[q]]
            d, g = option_counts(rng, cfg.n_options, len(data_decoys), bool(graph_decoys))
            if d < 1:
                continue
            nodes = [s] + data_decoys[:d] + graph_decoys[:g]
            texts, gold = shuffle(rng, [nd(w, i) for i in nodes], 0)
            return Parts(
                question=(f"{context(w)} An anomaly is observed at {nd(w, k)} from step "
                          f"{dep.onset[k]}. Which node did it start from?"),
                options=texts, gold=gold,
                rationale=_rationale(w, departures(noisy), k, s, data_decoys[:d],
                                     graph_decoys[:g], gold),
                meta={"target": w.label(k), "culprit": w.label(s)},
            )
        return None

    def solve(self, p: ParsedPrompt) -> int:
        k, t_k = (int(x) for x in _Q.search(p.question).groups())
        dep = departures(p.series)
        nodes = [int(o.split()[1]) for o in p.options]
        upstream = reach(p.edges, k, forward=False) if p.edges is not None else None
        best, best_i = None, 0
        for i, x in enumerate(nodes):
            if upstream is not None and x not in upstream:
                continue
            if 0 <= dep.onset[x] < t_k and (best is None or dep.onset[x] < best):
                best, best_i = dep.onset[x], i
        return best_i


def _rationale(w, dep, k, s, data_decoys, graph_decoys, gold) -> str:
    up = sorted(w.ancestors(k), key=w.label)
    steps = [f"{nd(w, k)} departs from its baseline at step {dep.onset[k]}.",
             f"In the graph, the nodes upstream of {nd(w, k)} are {node_list(w, up)}.",
             departure_text(w, dep, s) + f", before {nd(w, k)}, and a path leads from it to "
             f"{nd(w, k)}."]
    if graph_decoys:
        be, stay = agree(graph_decoys, "is", "are"), agree(graph_decoys, "stays", "stay")
        steps.append(f"{node_list(w, graph_decoys)} {be} upstream too but {stay} at baseline.")
    if data_decoys:
        go, it = agree(data_decoys, "departs", "depart"), agree(data_decoys, "it", "them")
        steps.append(f"{node_list(w, data_decoys)} also {go} early, but no path leads from "
                     f"{it} to {nd(w, k)}.")
    steps.append(f"So the anomaly started at {nd(w, s)}: option {'ABCDEF'[gold]}.")
    return " ".join(steps)
