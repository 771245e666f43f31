"""`entity`: which (name, description) fits node k.

Roles are defined by checkable facts, so exactly one option fits:
origin (the disturbance starts there: seen in the series), feeder (no incoming link and
no disturbance), junction (two or more incoming links), relay (one incoming and at least
one outgoing link), terminal (no outgoing link). The role set is drawn first, then the
true role, then a node that has the true role and none of the others on offer.
"""

from __future__ import annotations

import numpy as np

from envs.detect import departures
from envs.domains import DOMAINS, ROLES
from envs.prompt import ParsedPrompt
from envs.tasks.common import (
    Draft,
    EnvConfig,
    Parts,
    Task,
    build,
    context,
    departure_text,
    n_sources,
    nd,
    pick_domain,
    pick_size,
    shuffle,
)


def role_facts(n_in: int, n_out: int, starts: bool) -> dict[str, bool]:
    """Which roles hold for a node with these degrees that does (not) start a disturbance."""
    return {
        "origin": starts,
        "feeder": n_in == 0 and not starts,
        "junction": n_in >= 2,
        "relay": n_in == 1 and n_out >= 1,
        "terminal": n_out == 0,
    }


_ROLE_OF_TEXT = {f"{nm}, {desc}": role for d in DOMAINS.values()
                 for role, (nm, desc) in d.roles.items()}


class Entity(Task):
    name = "entity"
    min_nodes = 4  # with 3 nodes no node can be a relay, and the sink is junction + terminal

    def plan(self, rng: np.random.Generator, cfg: EnvConfig,
             design: np.random.Generator) -> Draft:
        domain = pick_domain(rng, cfg)
        n, t_len = pick_size(rng, cfg, self.nodes_needed(cfg))
        k = min(cfg.n_options, len(ROLES))
        roles = [ROLES[i] for i in design.choice(len(ROLES), size=k, replace=False)]
        gold = int(design.integers(k))
        m = n_sources(rng, n)
        fire = sorted(int(x) for x in rng.choice(m, size=int(rng.integers(1, m)), replace=False))
        world = build(rng, cfg, domain, n, t_len, m, fire)
        return Draft(world, {"roles": roles, "gold": gold})

    def finish(self, rng, cfg, draft, noisy, clean) -> Parts | None:
        w, roles, gold = draft.world, draft.info["roles"], draft.info["gold"]
        dep = departures(clean)
        first = dep.onset[dep.onset >= 0].min() if (dep.onset >= 0).any() else -1
        fits = []
        for i in rng.permutation(w.n):
            starts = bool(first >= 0 and dep.onset[i] == first)
            facts = role_facts(len(w.parents[i]), len(w.children[i]), starts)
            if facts[roles[gold]] and not any(
                    facts[r] for j, r in enumerate(roles) if j != gold):
                fits.append(int(i))
        if not fits:
            return None
        k = fits[0]
        texts = [", ".join(w.domain.roles[r]) for r in roles]
        texts, g = shuffle(rng, texts, gold)
        obs = departures(noisy)
        facts = [f"{nd(w, k)} has {len(w.parents[k])} incoming and {len(w.children[k])} "
                 "outgoing links in the graph."]
        if obs.onset[k] >= 0:
            facts.append(departure_text(w, obs, k) + ".")
            first_obs = obs.onset[obs.onset >= 0].min()
            facts.append("That is among the earliest departures in the network."
                         if obs.onset[k] == first_obs else
                         f"The earliest departures happen at step {first_obs}, before it.")
        else:
            facts.append(f"{nd(w, k)} stays within 10% of its baseline throughout.")
        facts.append(f"So it is a {roles[gold]} node: option {'ABCDEF'[g]}.")
        return Parts(question=f"{context(w)} Which (name, description) pair should "
                     f"{nd(w, k)} correspond to?", options=texts, gold=g,
                     rationale=" ".join(facts), meta={"node": w.label(k), "role": roles[gold]})

    def solve(self, p: ParsedPrompt) -> int:
        k = int(p.question.rsplit("Node ", 1)[1].split()[0])
        dep = departures(p.series)
        moved = dep.onset >= 0
        starts = bool(moved[k] and dep.onset[k] == dep.onset[moved].min())
        roles = [_ROLE_OF_TEXT.get(o) for o in p.options]
        if p.edges is None:
            # Graph-free: only "starts a disturbance" is observable; a quiet node is guessed
            # to be a feeder; otherwise the first structural role on offer.
            guess = "origin" if starts else "feeder" if not moved[k] else None
            for i, r in enumerate(roles):
                if r == guess or (guess is None and r not in ("origin", "feeder")):
                    return i
            return 0
        n_in = sum(1 for _, v in p.edges if v == k)
        n_out = sum(1 for u, _ in p.edges if u == k)
        facts = role_facts(n_in, n_out, starts)
        for i, r in enumerate(roles):
            if r is not None and facts[r]:
                return i
        return 0
