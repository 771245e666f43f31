"""`intervention`: which link should be closed now to protect node k over the next steps?

A decision question answered exactly by re-simulation. The series end at step t. One
link into node k may be closed (nothing crosses it) for steps t+1 to t+H; which closure
best achieves an objective at k over those steps: the smallest peak departure from k's
baseline, the fewest steps beyond a threshold, or the least total excess beyond it?

Every option closes a link from a candidate c into k. Every candidate fires the same
event before t (the series show each departure), and every link is in the graph with
its lag, so the series alone and the graph alone each leave every option standing. Only
their alignment decides: the disturbance of the gold candidate reaches k during the
window (its departure plus its link's lag falls in it); a decoy's would have arrived
before the window (closing it now is too late) or arrives after it (the link reopens
before it comes). The leads and lags are drawn by `graphq.aligned_design`, as for
`root_cause`, so neither half alone ranks the gold apart. The decoys' links carry nothing
while the series run (closed, as in `root_cause`): k shows no earlier arrival that
would tell an early decoy from a late one, and closing a decoy's link changes nothing.

The gold is not assumed: `finish` re-simulates the world once per option with the same
noise (common random numbers: the same initial values and the same Brownian increments),
scores each outcome at k with the stated objective, and keeps the question only when the
designed option is best by a clear margin. The outcomes travel in `meta["outcomes"]`
(`strl show --plot` overlays them).
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from envs.detect import departures
from envs.prompt import ParsedPrompt
from envs.sde import SDEArrays, simulate, split
from envs.tasks.common import (
    Draft,
    EnvConfig,
    Parts,
    Task,
    context,
    nd,
    pick_domain,
    pick_size,
    shuffle,
)
from envs.tasks.graphq import aligned_design
from envs.tasks.root_cause import star_graph, star_world
from envs.world import World

LEADS = (2, 12)
"""Range of candidate leads (steps from a departure to the window's first step) and link
lags; decoys miss the window's first step by `GAP` or more."""
GAP = 5
HORIZON = 5
"""Steps the closure lasts and the objective covers (t+1 .. t+H): a late decoy arrives
after it (GAP >= HORIZON)."""
OBJECTIVES: dict[str, str] = {"peak": "largest departure from the baseline",
                              "steps": "steps beyond the threshold",
                              "excess": "total excess beyond the threshold"}
"""The objectives a question can state (lower is better), and what each measures."""
THRESHOLD = 0.05
"""The threshold of the `steps` and `excess` objectives: 5% beyond k's baseline."""
MARGIN = 0.5
"""The best option's score must be at most this fraction of the next best's (and, for
`steps`, at least two steps fewer)."""

_Q = re.compile(r"closed \(nothing crosses it\) for steps (\d+) to (\d+)")
_OPT = re.compile(r"Node (\d+) -> Node (\d+)")


def close_link(arrays: SDEArrays, edge: int, first: int, last: int) -> SDEArrays:
    """A copy of `arrays` in which link `edge` carries nothing into steps first..last.

    Step s + 1 of the series is computed from the weights of row s (`envs.sde`), so the
    rows first - 1 .. last - 1 are zeroed. Everything else, the noise included, is shared
    with the original: the two worlds differ only by the closure.
    """
    weight = arrays.weight.copy()
    weight[max(first - 1, 0) : max(last, 0), edge] = 0.0
    return replace(arrays, weight=weight)


def objective_text(objective: str, w: World, target: int, threshold: str) -> str:
    """What the question asks for, `threshold` as the prompt writes numbers."""
    d = w.domain
    beyond = "above" if d.event_sign > 0 else "below"
    if objective == "peak":
        return (f"keeps the largest departure of {d.quantity} from its baseline smallest "
                f"at {nd(w, target)} over those steps")
    if objective == "steps":
        return (f"leaves {d.quantity} {beyond} {threshold} {d.unit} for the fewest steps "
                f"at {nd(w, target)} over those steps")
    return (f"keeps the total excess of {d.quantity} {beyond} {threshold} {d.unit} "
            f"smallest at {nd(w, target)} over those steps")


def score(objective: str, y: np.ndarray, base: float, threshold: float, sign: int) -> float:
    """The objective of one outcome at the target (lower is better)."""
    if objective == "peak":
        return float(np.max(np.abs(y - base)))
    beyond = np.maximum(sign * (y - threshold), 0.0)
    return float(np.count_nonzero(beyond)) if objective == "steps" else float(beyond.sum())


def clear_best(objective: str, scores: list[float]) -> bool:
    """Whether `scores[0]` (the designed option's) beats every other by the margin."""
    best, rest = scores[0], scores[1:]
    if objective == "steps":
        return all(best + 2 <= r for r in rest)
    return all(best <= MARGIN * r for r in rest)


class Intervention(Task):
    name = "intervention"
    needs = ("series", "graph")

    def nodes_needed(self, cfg: EnvConfig) -> int:
        return cfg.n_options + 1

    def plan(self, rng: np.random.Generator, cfg: EnvConfig,
             design: np.random.Generator) -> Draft:
        domain = pick_domain(rng, cfg)
        n, t_len = pick_size(rng, cfg, self.nodes_needed(cfg))
        k = cfg.n_options
        leads, lags = aligned_design(design, k, *LEADS, gap=GAP)
        objective = list(OBJECTIVES)[int(design.integers(len(OBJECTIVES)))]
        star = star_graph(rng, n, k)
        # The prompt shows t_len steps (a configured length, as forecasting's history) and
        # the world runs on through the window: its first step is t_len. Every departure
        # t_len - lead falls after the baseline window for t_len >= 36 (EnvConfig's minimum).
        first = t_len
        world = star_world(rng, cfg, domain, n, t_len + HORIZON, star, leads, lags, first,
                           (first - LEADS[1], first), LEADS)
        return Draft(world, {"target": star[1], "k": k, "first": first,
                             "objective": objective})

    def finish(self, rng, cfg, draft, noisy, clean) -> Parts | None:
        w, info = draft.world, draft.info
        target, k, first, objective = info["target"], info["k"], info["first"], info["objective"]
        last = first + HORIZON - 1
        shown = noisy[:, :first]
        dep, obs = departures(clean[:, :first]), departures(shown)
        cands = list(range(k))
        if any(dep.onset[c] < 0 or obs.onset[c] != dep.onset[c] for c in cands):
            return None
        if obs.onset[target] >= 0:  # nothing may reach k before the window
            return None
        arrival = [int(obs.onset[c]) + w.lags[(c, target)] for c in cands]
        if arrival[0] != first or any(abs(a - first) < GAP for a in arrival[1:]):
            return None
        outcomes = self._outcomes(w, target, k, first, last)  # do nothing, then candidates
        sign = w.domain.event_sign
        base = float(obs.baseline[target])
        threshold = float(np.round(base * (1 + sign * THRESHOLD), cfg.precision))
        scores = [score(objective, y, base, threshold, sign) for y in outcomes]
        if int(np.argmin(scores[1:])) != 0 or not clear_best(objective, scores[1:]):
            return None
        # The disturbance must matter: left alone, k leaves its baseline in the window.
        if score("peak", outcomes[0], base, threshold, sign) < 0.1 * abs(base):
            return None
        links = [f"Close the link {nd(w, c)} -> {nd(w, target)}" for c in cands]
        texts, gold = shuffle(rng, links, 0)
        letter = "ABCDEF"[gold]
        order = sorted(cands, key=w.label)
        why = [f"{nd(w, target)} receives links from {', '.join(nd(w, c) for c in order)}; "
               f"a closure lasts steps {first} to {last}."]
        for c, a in sorted(zip(cands, arrival, strict=True), key=lambda x: w.label(x[0])):
            lag, on = w.lags[(c, target)], int(obs.onset[c])
            verdict = ("inside the window" if c == 0 else
                       "before the window, too late" if a < first else
                       "after the window, too early")
            why.append(f"{nd(w, c)} departs at step {on}. {nd(w, c)}->{nd(w, target)} "
                       f"(lag {lag}), so {on} + {lag} = {a}: {verdict}.")
        why.append(f"So close {nd(w, 0)} -> {nd(w, target)}: option {letter}.")
        question = (f"{context(w)} The series end at step {first - 1}. One link into "
                    f"{nd(w, target)} can be closed (nothing crosses it) for steps {first} "
                    f"to {last}. Which closure "
                    f"{objective_text(objective, w, target, f'{threshold:.{cfg.precision}f}')}?")
        # every outcome under its key (left alone: "none", an option: its letter)
        keys = ["none"] + ["ABCDEF"[texts.index(t)] for t in links]
        listed = sorted(range(len(keys)), key=lambda i: (i > 0, keys[i]))
        digits = cfg.precision + 2
        return Parts(
            question=question, options=texts, gold=gold, rationale=" ".join(why),
            history=first,
            meta={"target": w.label(target), "window": [first, last], "objective": objective,
                  "threshold": threshold,
                  "arrivals": {w.label(c): a for c, a in zip(cands, arrival, strict=True)},
                  "scores": {keys[i]: round(scores[i], digits) for i in listed},
                  "outcomes": {keys[i]: np.round(outcomes[i], digits).tolist()
                               for i in listed}},
        )

    @staticmethod
    def _outcomes(w: World, target: int, k: int, first: int, last: int) -> list[np.ndarray]:
        """The target's noisy series over the window: left alone, then with the link of
        each of the k candidates closed, all with the same noise."""
        assert w.arrays is not None
        index = {e: i for i, e in enumerate(w.edges)}
        worlds = [w.arrays] + [close_link(w.arrays, index[(c, target)], first, last)
                               for c in range(k)]
        ys = split(simulate(worlds, with_noise_free=False), worlds)
        return [y[0, target, first : last + 1] * w.levels[target] for y in ys]

    def solve(self, p: ParsedPrompt) -> int:
        m = _Q.search(p.question)
        if not m or not p.lags:  # without the graph's lags nothing can be aligned
            return 0
        first, last = int(m.group(1)), int(m.group(2))
        dep = departures(p.series)
        miss = []
        for o in p.options:
            om = _OPT.search(o)
            c, k = (int(om.group(1)), int(om.group(2))) if om else (-1, -1)
            lag = p.lags.get((c, k))
            if lag is None or not 0 <= c < len(dep.onset) or dep.onset[c] < 0:
                miss.append(np.inf)
                continue
            a = dep.onset[c] + lag
            miss.append(0.0 if first <= a <= last else min(abs(a - first), abs(a - last)))
        return int(np.argmin(miss))
