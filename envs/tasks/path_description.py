"""`path_description` (open-ended): describe how the disturbance travelled from the source to
a target, with the nodes on the way and their timings. The reference answer is written from
the simulation; the AI judge scores answers against it (route, timing, logic)."""

from __future__ import annotations

import numpy as np

from envs.detect import TAU, departures
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
)
from envs.tasks.graphq import ancestors_all
from envs.world import random_dag


class PathDescription(Task):
    name = "path_description"
    kind = "text"
    min_nodes = 4

    def plan(self, rng: np.random.Generator, cfg: EnvConfig,
             design: np.random.Generator) -> Draft:
        domain = pick_domain(rng, cfg)
        n, t_len = pick_size(rng, cfg, self.nodes_needed(cfg))
        m = n_sources(rng, n)
        for _ in range(20):  # cheap structural check: a source two or more hops deep
            edges = random_dag(rng, n, m)
            anc = ancestors_all(n, edges)
            deep = [s for s in range(m) if any(s in anc[v] and (s, v) not in edges
                                               for v in range(m, n))]
            if deep:
                break
        s = int(rng.choice(deep)) if deep else int(rng.integers(m))
        return Draft(build(rng, cfg, domain, n, t_len, m, [s], edges=edges))

    def finish(self, rng, cfg, draft, noisy, clean) -> Parts | None:
        w = draft.world
        s = next(iter(w.event_nodes))
        dep = departures(clean)
        # The route is stated from the noise-free run and judged loosely ("roughly"), so a
        # clear departure (1.5x the threshold) is enough for a node to be on it.
        vis = (dep.onset >= 0) & (dep.peak >= 1.5 * TAU)
        for k in rng.permutation(sorted(w.descendants(s))):
            path = _arrival_path(w, dep.onset, vis, s, int(k))
            if path is None or len(path) < 3:
                continue
            on, d = dep.onset, w.domain
            def pct(i: int) -> str:
                return f"{'+' if dep.sign[i] >= 0 else '-'}{100 * dep.peak[i]:.0f}%"
            hops = [f"It reached {nd(w, b)} at step {on[b]} ({steps(on[b] - on[a])} after "
                    f"{nd(w, a)}, peak {pct(b)})" for a, b in zip(path, path[1:], strict=False)]
            total = on[path[-1]] - on[s]
            ref = (f"The {d.event_noun} started at {nd(w, s)} at step {on[s]} (peak {pct(s)}). "
                   + ". ".join(hops) + f". In total it took {steps(total)} "
                   f"({total} x {d.step_text}) to travel from {nd(w, s)} to {nd(w, path[-1])}.")
            why = (f"{nd(w, s)} departs first, at step {on[s]}. Following the graph's links "
                   "from it and checking when each downstream node departs gives the route "
                   + " -> ".join(nd(w, i) for i in path) + ".")
            return Parts(
                question=(f"{context(w)} Describe how the disturbance travelled from "
                          f"{nd(w, s)} to {nd(w, path[-1])}: the nodes it passed through and "
                          "when it reached each of them."),
                rationale=why, answer=ref,
                meta={"path": [w.label(i) for i in path]},
            )
        return None


def steps(k: int) -> str:
    return f"{k} step" if k == 1 else f"{k} steps"


def _arrival_path(w, onset, vis, s: int, k: int) -> list[int] | None:
    """Walk back from k through the parent that departed earliest, up to s."""
    path = [k]
    while path[-1] != s:
        cur = path[-1]
        prev = [p for p in w.parents[cur] if vis[p] and 0 <= onset[p] < onset[cur]]
        if not prev or not vis[cur]:
            return None
        path.append(min(prev, key=lambda p: onset[p]))
    return path[::-1]
