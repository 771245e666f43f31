"""`etiological`: which scenario produced the data.

Options are scenario stories of the world's domain that differ in checkable facts: where
the disturbance starts (one named node, several named nodes, every node at once) or that
nothing happened. Hard option sets use the same mechanism with other start nodes. The
story is read off the series alone: the nodes that leave their baseline first.
"""

from __future__ import annotations

import re

import numpy as np

from envs.detect import Departures, departures
from envs.domains import DOMAINS
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
    node_list,
    pick_domain,
    pick_size,
    shuffle,
)

Scenario = tuple[str, tuple[int, ...]]  # (mechanism, start nodes in internal indices)


def classify(dep: Departures) -> Scenario:
    """The scenario the departures show: which nodes leave baseline first, and how many.

    Event nodes jump past the threshold in one step; a neighbour needs at least one more
    step (lag >= 1), so "first" is exact.
    """
    moved = np.flatnonzero(dep.onset >= 0)
    if len(moved) == 0:
        return ("calm", ())
    first = dep.onset[moved].min()
    starts = tuple(int(i) for i in moved if dep.onset[i] == first)
    if len(starts) == len(dep.onset):
        return ("network_wide", ())
    return ("single" if len(starts) == 1 else "multi", starts)


class Etiological(Task):
    name = "etiological"

    def nodes_needed(self, cfg: EnvConfig) -> int:
        return 4 if cfg.n_options >= 6 else self.min_nodes

    def plan(self, rng: np.random.Generator, cfg: EnvConfig,
             design: np.random.Generator) -> Draft:
        domain = pick_domain(design, cfg)
        n, t_len = pick_size(design, cfg, self.nodes_needed(cfg))
        k = cfg.n_options
        # Six options need three or more sources (two give 2 singles + 1 multi + 2 more).
        m = max(n_sources(design, n), 3 if k >= 6 else 2)
        singles: list[Scenario] = [("single", (s,)) for s in design.permutation(m)]
        multis: list[Scenario] = []
        for _ in range(8):
            size = int(design.integers(2, m + 1))
            pick = tuple(sorted(int(x) for x in design.choice(m, size=size, replace=False)))
            if ("multi", pick) not in multis:
                multis.append(("multi", pick))
        if design.random() < cfg.hardness and len(singles) + len(multis) >= k:
            half = min(k // 2, len(multis))
            pool = multis[:half] + singles[: k - half]
        else:
            pool = [singles[0], multis[0], ("network_wide", ()), ("calm", ())]
            pool += singles[1:] + multis[1:]
        options = pool[:k]
        gold = int(design.integers(len(options)))
        mech, starts = options[gold]
        fire = "all" if mech == "network_wide" else "none" if mech == "calm" else list(starts)
        world = build(rng, cfg, domain, n, t_len, m, fire)
        return Draft(world, {"options": options, "gold": gold})

    def finish(self, rng, cfg, draft, noisy, clean) -> Parts | None:
        w, options, gold = draft.world, draft.info["options"], draft.info["gold"]
        dep = departures(noisy)
        # Both the noise-free truth and the series the prompt shows must tell the story:
        # at high noise a calm world can show a spurious departure.
        if classify(departures(clean)) != options[gold] or classify(dep) != options[gold]:
            return None
        texts = [story(w, o) for o in options]
        texts, gold = shuffle(rng, texts, gold)
        mech, starts = options[draft.info["gold"]]
        moved = [int(i) for i in np.argsort(dep.onset) if dep.onset[i] >= 0]
        steps = ["Compare each node with its own baseline (the first steps of its series)."]
        if not moved:
            steps.append("No node moves more than 10% away from its baseline: "
                         "there is no disturbance, only small fluctuations.")
        else:
            steps += [departure_text(w, dep, i) + "." for i in moved[:6]]
            if mech == "network_wide":
                steps.append("All nodes leave their baselines at the same step, "
                             "with no lag along the links: a common driver hit every node.")
            else:
                steps.append(f"The first departures are at {node_list(w, starts)}; the other "
                             "nodes follow later, so the disturbance starts there.")
        steps.append(f"This matches option {'ABCDEF'[gold]}.")
        return Parts(question=f"{context(w)} Which etiological scenario can be inferred from "
                     "the spatio-temporal data?", options=texts, gold=gold,
                     rationale=" ".join(steps),
                     meta={"scenario": [mech, [w.label(i) for i in starts]]})

    def solve(self, p: ParsedPrompt) -> int:
        mech, starts = classify(departures(p.series))
        want = (mech, tuple(sorted(starts)))
        for i, text in enumerate(p.options):
            if read_story(text) == want:
                return i
        return 0


def story(w, scenario: Scenario) -> str:
    mech, starts = scenario
    tpl = w.domain.mechanisms[mech]
    if not starts:
        return tpl
    return tpl.format(src=nd(w, starts[0]), srcs=node_list(w, starts))


_TEMPLATES = {  # (domain, mechanism) -> regex that reads a story back
    (d.name, mech): re.compile(
        "^" + re.escape(tpl).replace(r"\{src\}", r"(Node \d+)").replace(
            r"\{srcs\}", r"((?:Node \d+)(?:, Node \d+)*(?: and Node \d+)?)") + "$")
    for d in DOMAINS.values() for mech, tpl in d.mechanisms.items()
}


def read_story(text: str) -> tuple[str, tuple[int, ...]] | None:
    """What a story claims, in shown labels: (mechanism, start nodes)."""
    for (_, mech), rx in _TEMPLATES.items():
        m = rx.match(text)
        if m:
            nodes = tuple(sorted(int(x) for x in re.findall(r"Node (\d+)", text)))
            return (mech, nodes if mech in ("single", "multi") else ())
    return None
