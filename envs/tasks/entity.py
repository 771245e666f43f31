"""`entity`: which (name, description) fits node k?

A role is a checkable fact about node k that needs both inputs: how many of the nodes
linking into k (the graph) depart before k does (the series), and whether a node k links
to departs after it:

- origin: a disturbance starts at k (none of its upstream nodes has departed before it)
  and a node it links to departs after it;
- local_start: a disturbance starts at k, and no node it links to departs after it;
- relay: k departs after exactly one of its upstream nodes, and passes it on;
- dead_end: k departs after exactly one of its upstream nodes; nothing it links to follows;
- merge: k departs after two or more of its upstream nodes, and passes it on;
- merge_end: k departs after two or more upstream nodes; nothing it links to follows.

Every world has the same skeleton whatever the role, so neither input alone can tell:
k always has two upstream nodes (p1, p2, sources) and links to one node (c), which also
receives links from two sources (z, e); two more sources (d1, d2) feed nothing k can
reach; k always departs; exactly two sources depart before k (both upstream nodes for
merge roles, one upstream node and one outside source for relay roles, both outside
sources for start roles); and one node departs a few steps after k: c when k passes the
disturbance on, otherwise e. Every one of these rises is the node's own event (same shape
for all), and the links into k and into c are closed while the series run (the graph
shows them, with their lags; nothing crosses them): a rise copied over a link would carry
its cause's waveform, and a series-only solver that finds which node leads k or follows
it (measured: 0.83 with active links, chance 0.25) would know the role without the graph.
Other nodes hang off anything but k. The graph alone sees the same degrees, sources and
reachability for every role, the series alone the same departures before and after k:
only which departing nodes are k's neighbours tells the role. The role set and the gold
role come from `design`; `finish` checks the role on the noise-free series and on the
shown (rounded, noisy) one.
"""

from __future__ import annotations

import re

import numpy as np

from envs.detect import baseline_len, departures
from envs.domains import DOMAINS, ROLES
from envs.prompt import ParsedPrompt
from envs.tasks.common import (
    Draft,
    EnvConfig,
    Parts,
    Task,
    context,
    departure_text,
    event_amp,
    nd,
    node_list,
    pick_domain,
    pick_size,
    shuffle,
)
from envs.tasks.graphq import hang
from envs.world import Event, draw_world

_Q = re.compile(r"should Node (\d+) correspond to")
LAGS = (2, 5)
"""Lags of k's links (in and out)."""
P1, P2, D1, D2, Z, E, K, C = range(8)
"""Internal skeleton: k's upstream sources, outside sources, c's anchor, the stand-in
for c's departure, k itself, and the node k links to."""
CORE = 8


def role_of(before: int, follows: bool) -> str:
    """The role of a departing node: `before` of its upstream nodes departed before it,
    and (`follows`) a node it links to departs after it."""
    base = ("origin", "relay", "merge")[min(before, 2)]
    if follows:
        return base
    return {"origin": "local_start", "relay": "dead_end", "merge": "merge_end"}[base]


_ROLE_OF_TEXT = {f"{nm}, {desc}": role for d in DOMAINS.values()
                 for role, (nm, desc) in d.roles.items()}


def realised(on: np.ndarray, fired: list[int], role: str) -> bool:
    """Whether onsets `on` realise `role` at K in the skeleton, with both `fired` sources
    departing before K and exactly one departure right after it (c, or e in its place)."""
    t = on[K]
    if t < 0 or any(not 0 <= on[f] < t for f in fired):
        return False
    follows = on[C] > t
    if 0 <= on[C] <= t or role_of(sum(0 <= on[p] < t for p in (P1, P2)), follows) != role:
        return False
    return on[E] < 0 if follows else on[E] > t


def skeleton(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
    """Edges of the fixed core plus extra nodes, each hanging off one or two earlier nodes
    other than K (so k's degrees and reachability never change, and k's upstream sources
    and the outside ones are equally likely to feed them)."""
    edges = {(P1, K), (P2, K), (K, C), (Z, C), (E, C)}
    hang(rng, edges, CORE, n, avoid=K)
    return sorted(edges)


class Entity(Task):
    name = "entity"
    needs = ("series", "graph")
    min_nodes = CORE

    def plan(self, rng: np.random.Generator, cfg: EnvConfig,
             design: np.random.Generator) -> Draft:
        domain = pick_domain(rng, cfg)
        n, t_len = pick_size(rng, cfg, self.nodes_needed(cfg))
        k = min(cfg.n_options, len(ROLES))
        roles = [ROLES[i] for i in design.choice(len(ROLES), size=k, replace=False)]
        gold = int(design.integers(k))
        role = roles[gold]
        before = {"origin": 0, "local_start": 0, "relay": 1, "dead_end": 1,
                  "merge": 2, "merge_end": 2}[role]
        follows = role in ("origin", "relay", "merge")
        edges = skeleton(rng, n)
        u = rng.random(8)
        # Which two sources depart before k: `before` of k's upstream nodes, the rest outside.
        ups = [P1, P2] if u[0] < 0.5 else [P2, P1]
        outs = [D1, D2] if u[1] < 0.5 else [D2, D1]
        fired = ups[:before] + outs[:2 - before]
        if u[2] < 0.5:
            fired = fired[::-1]
        lags = {(P1, K): int(rng.integers(LAGS[0], LAGS[1] + 1)),
                (P2, K): int(rng.integers(LAGS[0], LAGS[1] + 1)),
                (K, C): int(rng.integers(LAGS[0], LAGS[1] + 1))}
        # k departs at its earliest upstream arrival: with two upstream departures that is
        # the least of two lags, so a lone upstream departure (and a start role's own
        # event) comes over the least of two lags too, and the delays look alike.
        short = min(int(x) for x in rng.integers(LAGS[0], LAGS[1] + 1, size=2))
        if before == 1:
            lags[(ups[0], K)] = short
        lo = baseline_len(t_len) + 2
        t0 = int(rng.integers(lo, max(lo + 1, t_len - 22)))
        gap = int(rng.integers(0, 3))
        times = [t0, t0 + gap]
        amp = event_amp(rng, domain)
        dur = int(rng.integers(8, 13))
        events = [Event((f,), t, dur, amp) for f, t in zip(fired, times, strict=True)]
        # k's onset: its earliest upstream arrival, or (start roles) as if one of the two
        # departures had reached it over a link. k's rise is always its own event and its
        # links are closed (the graph shows them; nothing crosses them while the series
        # run): a relayed rise would copy its cause's waveform, and a series-only solver
        # that finds which node leads k (or follows it) would know the role without the
        # graph. For the same reason the node departing after k (c when k passes it on,
        # else e) rises by its own event, timed as if it came over k's link to c.
        lead = int(u[3] < 0.5)
        if before:
            t_k = min(t + lags[(f, K)] for f, t in zip(fired, times, strict=True) if f in ups)
        else:
            t_k = times[lead] + short
        kamp = amp * float(rng.uniform(0.95, 1.35))
        after = C if follows else E
        events += [Event((K,), t_k, dur, kamp), Event((after,), t_k + lags[(K, C)], dur, kamp)]
        closed = {(P1, K), (P2, K), (K, C), (E, C), (Z, C)}
        world = draw_world(rng, domain, n, t_len, edges, 6, events, cfg.noise, lag_range=(1, 3),
                           lags=lags, closed_edges=frozenset(closed),
                           alike=tuple(fired) + (K, after))
        return Draft(world, {"roles": roles, "gold": gold, "fired": fired})

    def finish(self, rng, cfg, draft, noisy, clean) -> Parts | None:
        w, roles, gold = draft.world, draft.info["roles"], draft.info["gold"]
        # The prompt shows the series rounded to `cfg.precision` decimals: read it so.
        dep, obs = departures(clean), departures(noisy)
        fired = draft.info["fired"]
        # The facts must hold on the noise-free series and read the same off the shown one.
        for d in (dep, obs):
            if not realised(d.onset, fired, roles[gold]):
                return None
        t = int(obs.onset[K])
        before = [p for p in (P1, P2) if 0 <= obs.onset[p] < t]
        follows = bool(obs.onset[C] > t)
        texts = [", ".join(w.domain.roles[r]) for r in roles]
        texts, g = shuffle(rng, texts, gold)
        ups = sorted((P1, P2), key=w.label)
        why = [f"In the graph, {nd(w, K)} receives links from {node_list(w, ups)} and links "
               f"to {nd(w, C)}.", departure_text(w, obs, K) + "."]
        for p in ups:
            on = int(obs.onset[p])
            why.append(f"{nd(w, p)} never departs from its baseline." if on < 0 else
                       f"{nd(w, p)} departs at step {on}, "
                       f"{'before' if p in before else 'after'} it.")
        why.append(f"{nd(w, C)} departs at step {int(obs.onset[C])}, after it." if follows else
                   f"{nd(w, C)} never departs from its baseline.")
        count = ("none", "one", "two")[len(before)]
        why.append(f"So {count} of its upstream nodes departed before it and "
                   f"{'a' if follows else 'no'} node it links to departs after it: it is the "
                   f"{w.domain.roles[roles[gold]][0]}, option {'ABCDEF'[g]}.")
        return Parts(question=f"{context(w)} Which (name, description) pair should "
                     f"{nd(w, K)} correspond to?", options=texts, gold=g,
                     rationale=" ".join(why), meta={"node": w.label(K), "role": roles[gold]})

    def solve(self, p: ParsedPrompt) -> int:
        m = _Q.search(p.question)
        if m is None or p.edges is None:
            return 0  # graph-free: every option fits the node's own series alike
        k = int(m.group(1))
        on = departures(p.series).onset
        if on[k] < 0:
            return 0
        before = sum(1 for u, v in p.edges if v == k and 0 <= on[u] < on[k])
        follows = any(u == k and on[v] > on[k] for u, v in p.edges)
        role = role_of(before, follows)
        roles = [_ROLE_OF_TEXT.get(o) for o in p.options]
        return roles.index(role) if role in roles else 0
