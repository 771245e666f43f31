"""`correlation`: relationship of nodes a and b during steps w0-w1: direct, through a named
intermediate, or no link; "reversed" when b is the one that leads.

All options state the direction the series show and intermediates that move between the
two nodes, so the series alone cannot choose between them; the graph decides.
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
    build,
    context,
    n_sources,
    nd,
    pick_domain,
    pick_size,
    shuffle,
)
from envs.tasks.graphq import reach, responds

_DIRECT = re.compile(r"^The signal travels directly from Node (\d+) to Node (\d+) without")
_VIA = re.compile(r"^The signal travels from Node (\d+) to Node (\d+) through Node (\d+)\.")
_NONE = re.compile(r"^There is no link between Node (\d+) and Node (\d+);")


def _text(w, kind: str, u: int, v: int, x: int = -1) -> str:
    if kind == "direct":
        return (f"The signal travels directly from {nd(w, u)} to {nd(w, v)} without "
                "intermediate nodes.")
    if kind == "none":
        return f"There is no link between {nd(w, u)} and {nd(w, v)}; separate drivers move them."
    return f"The signal travels from {nd(w, u)} to {nd(w, v)} through {nd(w, x)}."


class Correlation(Task):
    name = "correlation"
    needs_graph = True
    min_nodes = 5

    def nodes_needed(self, cfg: EnvConfig) -> int:
        # Options name n_options - 2 intermediates that must all move between the two nodes.
        return self.min_nodes if cfg.n_options <= 4 else cfg.n_options + 3

    def plan(self, rng: np.random.Generator, cfg: EnvConfig,
             design: np.random.Generator) -> Draft:
        domain = pick_domain(rng, cfg)
        n, t_len = pick_size(rng, cfg, self.nodes_needed(cfg))
        m = n_sources(rng, n, 0.35, 0.55)
        kinds = ["direct", "none"] + [f"via{i}" for i in range(max(2, cfg.n_options - 2))]
        chosen = [kinds[i] for i in design.choice(len(kinds), size=cfg.n_options, replace=False)]
        gold = int(design.integers(len(chosen)))
        world = build(rng, cfg, domain, n, t_len, m, list(range(m)))
        return Draft(world, {"kinds": chosen, "gold": gold})

    def finish(self, rng, cfg, draft, noisy, clean) -> Parts | None:
        w, kinds, gold = draft.world, draft.info["kinds"], draft.info["gold"]
        dep = departures(clean)
        vis = responds(dep)
        on = dep.onset
        edges = set(w.edges)
        want = "via" if kinds[gold].startswith("via") else kinds[gold]
        n_via = sum(k.startswith("via") for k in kinds)
        pairs = [(int(u), int(v)) for u in rng.permutation(w.n) for v in range(w.n)
                 if vis[u] and vis[v] and on[u] + 2 <= on[v]]
        for u, v in pairs:
            linked = v in w.descendants(u) or u in w.descendants(v)
            true_via = [x for x in w.children[u] if (x, v) in edges]
            if want == "direct" and (u, v) not in edges:
                continue
            if want == "none" and linked:
                continue
            if want == "via" and ((u, v) in edges or not true_via):
                continue
            between = [int(x) for x in rng.permutation(w.n) if vis[x] and on[u] < on[x] < on[v]
                       and x not in true_via]
            need = n_via - (want == "via")
            if len(between) < need:
                continue
            vias = ([true_via[0]] if want == "via" else []) + between[:need]
            texts, it = [], iter(vias)
            for k in kinds:
                texts.append(_text(w, "via", u, v, next(it)) if k.startswith("via")
                             else _text(w, k, u, v))
            if want == "via":  # the true intermediate belongs in the gold slot
                vi = [i for i, k in enumerate(kinds) if k.startswith("via")]
                texts[vi[0]], texts[gold] = texts[gold], texts[vi[0]]
            texts, g = shuffle(rng, texts, gold)
            a, b = (u, v) if rng.random() < 0.5 else (v, u)
            w0, w1 = max(0, int(on[u]) - 2), min(w.length - 1, int(on[v]) + 3)
            why = [f"Within steps {w0}-{w1}, {nd(w, u)} departs first (step {on[u]}) and "
                   f"{nd(w, v)} later (step {on[v]}), so any signal runs from {nd(w, u)} to "
                   f"{nd(w, v)}" + (" (the reverse of the order asked about)." if a == v else ".")]
            if want == "direct":
                why.append(f"The graph has the link {nd(w, u)}->{nd(w, v)}.")
            elif want == "via":
                x = true_via[0]
                why.append(f"The graph has no direct link, but {nd(w, u)}->{nd(w, x)} and "
                           f"{nd(w, x)}->{nd(w, v)}; {nd(w, x)} departs at step {on[x]}, in "
                           "between.")
            else:
                why.append(f"The graph has no path between {nd(w, u)} and {nd(w, v)} in either "
                           "direction: they are moved by separate sources.")
            why.append(f"Option {'ABCDEF'[g]}.")
            return Parts(
                question=(f"{context(w)} Which statement best describes the relationship "
                          f"between {nd(w, a)} and {nd(w, b)} during time steps {w0}-{w1}?"),
                options=texts, gold=g, rationale=" ".join(why),
                meta={"pair": [w.label(u), w.label(v)], "relation": want},
            )
        return None

    def solve(self, p: ParsedPrompt) -> int:
        dep = departures(p.series)
        on = dep.onset
        edges = set(p.edges) if p.edges is not None else None
        for i, o in enumerate(p.options):
            if m := _DIRECT.match(o):
                u, v = map(int, m.groups())
                ok = (u, v) in edges if edges is not None else 0 <= on[u] < on[v]
            elif m := _VIA.match(o):
                u, v, x = map(int, m.groups())
                ok = ((u, x) in edges and (x, v) in edges and (u, v) not in edges
                      if edges is not None else 0 <= on[u] < on[x] < on[v])
            elif m := _NONE.match(o):
                u, v = map(int, m.groups())
                ok = (v not in reach(p.edges, u) and u not in reach(p.edges, v)
                      if edges is not None else True)
            else:
                ok = False
            if ok:
                return i
        return 0
