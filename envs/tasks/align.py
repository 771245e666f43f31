"""ST-Align: atomic, exactly checkable questions on the correspondence of series, graph
and text (the seeds' stage 1, STReasoner's Align), drawn from the same worlds as the
reasoning tasks.

Each question asks for one skill that the reasoning tasks' rationales use, with a short
exact answer (answer kind "value": a number, a word, or node names):

| skill | question | answer |
|---|---|---|
| departure | the step at which a node departs from its baseline | step (+-1), or "never" |
| baseline | its baseline level (the median of its baseline window) | number (+-1%) |
| direction | the direction of its largest move (one node alone only) | "up" / "down" |
| size | the size of its largest move, in percent of its baseline | percent (+-3) |
| peak | the step of its largest move | step (+-1) |
| lag | the lag written on link u->v | lag |
| links_in | which nodes link into a node | node names, or "none" |
| links_out | which nodes a node links to | node names, or "none" |
| arrival | when a node's disturbance reaches the head of one of its links | step (+-1) |
| first | which of two nodes departs first | a node name |
| delay | how many steps after one node another departs | steps (+-1) |

The series skills (`SERIES_SKILLS`) are asked on a prompt that shows the one node alone
(nothing to retrieve: Node 0, no graph) for `ONE_NODE_SHARE` of the questions, and on
the full world's prompt otherwise; the others need the full prompt. `align_node`
(`AlignNode`) asks the series skills on one node alone only: the first step of the
curriculum that `trainer.align.one_node_steps` runs before the full mix (the seeds'
"from one node, then the full prompts"). Every number is read
off the prompt's own numbers (`envs.detect` on the rounded series), and a question whose
answer the noise could move (the noisy and the noise-free series disagree) is redrawn.

The reference completion is a one- or two-sentence `<think>` in exactly the phrases the
reasoning tasks' rationales use and the rationale checker verifies ("Node 2 departs at
step 15", "Node 0->Node 2 (lag 3)", "15 + 3 = 18"), then the answer: the skill and its
written form are learned together.

These are perception questions: exempt from the both-inputs rule (`needs` is empty),
listed apart by `strl quality`, never part of the eval suite's reasoning score.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from envs.detect import Departures, baseline_len, baselines, departures
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
    node_list,
    pick_domain,
    pick_size,
)
from envs.world import World

SERIES_SKILLS = ("departure", "baseline", "direction", "size", "peak")
"""Skills that read one node's series."""
GRAPH_SKILLS = ("lag", "links_in", "links_out")
"""Skills that read the graph clause."""
JOINT_SKILLS = ("arrival", "first", "delay")
"""Skills that combine two readings: series and graph, or two series."""
SKILLS = SERIES_SKILLS + GRAPH_SKILLS + JOINT_SKILLS
ONE_NODE_SHARE = 0.5
"""Share of the series-skill questions asked on a prompt that shows the one node alone."""
ALONE_ONLY = ("direction",)
"""Series skills asked on one node alone only. Every domain's events move its series one
way (`Domain.event_sign`: PM2.5 up, traffic speed down, ...), so on the full world's
prompt, whose text names the domain, the direction is the domain's: a text shortcut.
Alone, the series is mirrored half the time (`MIRROR_SHARE`) and the text says nothing."""
MIRROR_SHARE = 0.5
"""Share of the one-node questions whose series is mirrored around its baseline
(2 * baseline - value: a rise becomes a fall of the same size), so that the domain named
in the text does not tell the direction of the move. A mirror that would turn a positive
series negative is skipped (the question keeps its series)."""
DEPARTING_SHARE = 0.75
"""Share of the departure questions asked of a node that departs (the rest: "never")."""
LINKED_SHARE = 0.75
"""Share of the links-in (links-out) questions asked of a node that has such links (the
rest: "none")."""
BASELINE_TOLERANCE = 0.01
"""A baseline answer may be off by this fraction of the baseline."""
SIZE_TOLERANCE = 3
"""A move's size in percent may be off by this many points."""
STEP_TOLERANCE = 1
"""A step read off a series may be off by this many steps (as in the rationale checker)."""
PEAK_MARGIN = 0.9
"""A peak step is asked only where every step more than 2 steps away is at most this
share of the peak's distance from the baseline."""


ONE_NODE = " (one node)"
"""What a series skill's name carries in reports when its prompt shows the node alone."""


def skill_label(meta: dict) -> str:
    """A question's skill as reports group it: "departure", or "departure (one node)" when
    its prompt shows the one node alone."""
    return meta.get("skill", "") + (ONE_NODE if meta.get("alone") else "")


def label_order(labels: list[str]) -> list[str]:
    """Skill labels in `SKILLS` order, each one-node label right before its full-prompt
    one; unknown labels last."""
    rank = {f"{s}{suffix}": 2 * i + k for i, s in enumerate(SKILLS)
            for k, suffix in enumerate((ONE_NODE, ""))}
    return sorted(labels, key=lambda x: (rank.get(x, len(rank)), x))


LABELS = label_order([*(s for s in SKILLS if s not in ALONE_ONLY),
                      *(s + ONE_NODE for s in SERIES_SKILLS)])
"""Every skill label of the `align` task, in report order (15)."""


class Align(Task):
    name = "align"
    kind = "value"
    needs = ()
    perception = True
    skills: tuple[str, ...] = SKILLS
    """The skills asked, each equally often."""
    one_node_share: float = ONE_NODE_SHARE
    """Share of the series-skill questions asked on the one node alone."""

    def plan(self, rng: np.random.Generator, cfg: EnvConfig,
             design: np.random.Generator) -> Draft:
        skill = self.skills[int(design.integers(len(self.skills)))]
        alone = skill in ALONE_ONLY or (skill in SERIES_SKILLS
                                         and bool(design.random() < self.one_node_share))
        mirror = alone and bool(design.random() < MIRROR_SHARE)
        domain = pick_domain(rng, cfg)
        n, t_len = pick_size(rng, cfg, self.nodes_needed(cfg))
        m = n_sources(rng, n)
        fire = sorted(int(s) for s in rng.choice(m, size=int(rng.integers(1, m + 1)),
                                                 replace=False))
        return Draft(build(rng, cfg, domain, n, t_len, m, fire),
                     {"skill": skill, "alone": alone, "mirror": mirror})

    def finish(self, rng, cfg, draft, noisy, clean) -> Parts | None:
        skill, alone = draft.info["skill"], draft.info["alone"]
        mirrored = bool(draft.info.get("mirror")) and _mirror(noisy, clean)
        parts = _ASK[skill](rng, Reading.of(draft.world, noisy, clean, alone, cfg.precision))
        if parts is None:
            return None
        parts.meta["skill"] = skill
        parts.meta["alone"] = alone
        if mirrored:
            parts.meta["mirrored"] = True
        return parts

    def read(self, p: ParsedPrompt, meta: dict) -> str:
        return oracle(p, meta["skill"])


class AlignNode(Align):
    """ST-Align's series skills on one node alone (no graph, nothing to retrieve): the
    curriculum's first step."""

    name = "align_node"
    skills = SERIES_SKILLS
    one_node_share = 1.0



@dataclass(frozen=True)
class Reading:
    """What the questions read: the world, the departures of the prompt's numbers (`obs`)
    and of the noise-free series (`dep`), and the nodes whose reading the noise cannot
    move (`steady`: the two agree on whether it departs and, within a step, when;
    `moving`: the steady nodes that depart, in the same direction in both)."""

    w: World
    noisy: np.ndarray
    obs: Departures
    dep: Departures
    steady: list[int]
    moving: list[int]
    alone: bool  # the prompt shows the asked node alone, named Node 0
    precision: int

    @classmethod
    def of(cls, w: World, noisy: np.ndarray, clean: np.ndarray, alone: bool,
           precision: int) -> Reading:
        obs, dep = departures(noisy), departures(clean)
        steady = [i for i in range(w.n) if (obs.onset[i] < 0) == (dep.onset[i] < 0) and (
            obs.onset[i] < 0 or abs(int(obs.onset[i]) - int(dep.onset[i])) <= 1)]
        moving = [i for i in steady if obs.onset[i] >= 0 and obs.sign[i] == dep.sign[i]]
        return cls(w, noisy, obs, dep, steady, moving, alone, precision)

    def name(self, i: int) -> str:
        return "Node 0" if self.alone else nd(self.w, i)

    def where(self) -> str:
        if self.alone:
            d = self.w.domain
            return f"A sensor measures {d.quantity} ({d.unit}); 1 time step = {d.step_text}."
        return context(self.w)

    def only(self, i: int) -> int | None:
        return i if self.alone else None

    def onset(self, i: int) -> int:
        return int(self.obs.onset[i])

    def signed(self, i: int) -> str:
        """Node i's largest move, e.g. '+41%'."""
        return f"{'+' if self.obs.sign[i] > 0 else '-'}{100 * float(self.obs.peak[i]):.0f}%"

    def clear_peak(self, i: int) -> bool:
        """Whether node i's largest move stands out: every step more than 2 steps from
        it is at most `PEAK_MARGIN` as far from the baseline (a plateau has no step to
        name), and the noise-free series peaks within a step of it."""
        p, base = int(self.obs.peak_at[i]), abs(float(self.obs.baseline[i])) or 1e-9
        d = np.abs(self.noisy[i] - self.obs.baseline[i]) / base
        d[max(0, p - 2):p + 3] = 0
        return (abs(p - int(self.dep.peak_at[i])) <= 1
                and float(d.max()) <= PEAK_MARGIN * float(self.obs.peak[i]))


# ---- the questions ------------------------------------------------------------------
# Each returns Parts (question, rationale, answer, tolerance) or None (redraw).





def _pick(rng: np.random.Generator, nodes: list[int]) -> int | None:
    """One of `nodes` at random; None (redraw) when there is none."""
    return int(nodes[int(rng.integers(len(nodes)))]) if nodes else None


def _departure(rng: np.random.Generator, r: Reading) -> Parts | None:
    departs = bool(rng.random() < DEPARTING_SHARE)
    i = _pick(rng, r.moving if departs else [j for j in r.steady if r.obs.onset[j] < 0])
    if i is None:
        return None
    name = r.name(i)
    question = (f"{r.where()} At which step does {name} depart from its baseline (move more "
                "than 10% away from it, and stay so the next step)? Answer with the step "
                "number, or never.")
    if not departs:
        return Parts(question, f"{name} never departs.", answer="never", only=r.only(i))
    s = r.onset(i)
    return Parts(question, f"{name} departs at step {s}.", answer=str(s),
                 tolerance=STEP_TOLERANCE, only=r.only(i))


def _baseline(rng: np.random.Generator, r: Reading) -> Parts | None:
    i = _pick(rng, r.steady)
    if i is None:
        return None
    name, b = r.name(i), float(r.obs.baseline[i])
    text, k = _number(b, r.precision), baseline_len(r.w.length)
    question = (f"{r.where()} What is the baseline level of {name}, the median of its first "
                f"{k} steps? Answer with the number.")
    return Parts(question, f"The median of the first {k} steps of {name} is {text}.",
                 answer=text, tolerance=max(BASELINE_TOLERANCE * abs(b),
                                            10.0 ** -r.precision / 2), only=r.only(i))


def _direction(rng: np.random.Generator, r: Reading) -> Parts | None:
    i = _pick(rng, r.moving)
    if i is None:
        return None
    name, way = r.name(i), "up" if r.obs.sign[i] > 0 else "down"
    question = (f"{r.where()} In which direction does {name} make its largest move away from "
                "its baseline? Answer up or down.")
    return Parts(question, f"{name} departs at step {r.onset(i)} and moves {way}, "
                 f"{r.signed(i)} at most.", answer=way, only=r.only(i))


def _size(rng: np.random.Generator, r: Reading) -> Parts | None:
    i = _pick(rng, r.moving)
    if i is None:
        return None
    name, pct = r.name(i), int(round(100 * float(r.obs.peak[i])))
    question = (f"{r.where()} How far does {name} move from its baseline at most, in percent "
                "of the baseline? Answer with the number of percent.")
    return Parts(question, f"{name} departs at step {r.onset(i)} and moves {r.signed(i)} at "
                 "most.", answer=str(pct), tolerance=SIZE_TOLERANCE, only=r.only(i))


def _peak(rng: np.random.Generator, r: Reading) -> Parts | None:
    i = _pick(rng, [j for j in r.moving if r.clear_peak(j)])
    if i is None:
        return None
    name, p = r.name(i), int(r.obs.peak_at[i])
    question = (f"{r.where()} At which step is {name} farthest from its baseline? Answer "
                "with the step number.")
    return Parts(question, f"{name} departs at step {r.onset(i)} and is farthest from its "
                 f"baseline at step {p}.", answer=str(p), tolerance=STEP_TOLERANCE,
                 only=r.only(i))


def _lag(rng: np.random.Generator, r: Reading) -> Parts | None:
    w = r.w
    u, v = w.edges[int(rng.integers(len(w.edges)))]
    lag = w.lags[(u, v)]
    question = (f"{context(w)} What is the lag of the link {nd(w, u)}->{nd(w, v)}? Answer "
                "with the number of steps.")
    return Parts(question, f"{nd(w, u)}->{nd(w, v)} (lag {lag}).", answer=str(lag))


def _links_in(rng: np.random.Generator, r: Reading) -> Parts | None:
    w = r.w
    return _links(rng, w, w.parents, lambda v: f"Which nodes link into {nd(w, v)}?",
                  lambda v: f"No link points into {nd(w, v)}.",
                  lambda v, ends: f"{nd(w, v)} receives links from {node_list(w, ends)}.")


def _links_out(rng: np.random.Generator, r: Reading) -> Parts | None:
    w = r.w
    return _links(rng, w, w.children, lambda u: f"Which nodes does {nd(w, u)} link to?",
                  lambda u: f"No link leaves {nd(w, u)}.",
                  lambda u, ends: f"{nd(w, u)} links to {node_list(w, ends)}.")


def _links(rng: np.random.Generator, w: World, ends: list[list[int]], ask, none,
           some) -> Parts | None:
    """Which nodes are at the other end of a node's links (`ends`: the world's parents or
    children): a node that has such links for `LINKED_SHARE` of the questions."""
    linked = [k for k in range(w.n) if ends[k]]
    k = _pick(rng, linked if rng.random() < LINKED_SHARE else [j for j in range(w.n)
                                                               if not ends[j]])
    if k is None:
        return None
    found = sorted(ends[k], key=w.label)
    question = f"{context(w)} {ask(k)} Answer with the node names, or none."
    if not found:
        return Parts(question, none(k), answer="none")
    return Parts(question, some(k, found), answer=", ".join(nd(w, j) for j in found))


def _arrival(rng: np.random.Generator, r: Reading) -> Parts | None:
    w = r.w
    links = [(u, v) for u in r.moving for v in w.children[u]]
    if not links:
        return None
    u, v = links[int(rng.integers(len(links)))]
    s, lag = r.onset(u), w.lags[(u, v)]
    question = (f"{context(w)} A disturbance leaves {nd(w, u)} when it departs and crosses "
                f"the link {nd(w, u)}->{nd(w, v)}. At which step does it reach {nd(w, v)}? "
                "Answer with the step number.")
    return Parts(question, f"{nd(w, u)} departs at step {s}. {nd(w, u)}->{nd(w, v)} "
                 f"(lag {lag}), so {s} + {lag} = {s + lag}.", answer=str(s + lag),
                 tolerance=STEP_TOLERANCE)


def _first(rng: np.random.Generator, r: Reading) -> Parts | None:
    w = r.w
    pairs = [(a, b) for a in r.moving for b in r.moving
             if w.label(a) < w.label(b) and abs(r.onset(a) - r.onset(b)) >= 2]
    if not pairs:
        return None
    a, b = pairs[int(rng.integers(len(pairs)))]
    if rng.random() < 0.5:
        a, b = b, a
    early = min((a, b), key=r.onset)
    question = (f"{context(w)} Which node departs from its baseline first, {nd(w, a)} or "
                f"{nd(w, b)}? Answer with the node name.")
    return Parts(question, f"{nd(w, a)} departs at step {r.onset(a)}. {nd(w, b)} departs at "
                 f"step {r.onset(b)}. {nd(w, early)} departs first.", answer=nd(w, early))


def _delay(rng: np.random.Generator, r: Reading) -> Parts | None:
    w = r.w
    pairs = [(a, b) for a in r.moving for b in r.moving if r.onset(b) - r.onset(a) >= 1]
    if not pairs:
        return None
    a, b = pairs[int(rng.integers(len(pairs)))]
    sa, sb = r.onset(a), r.onset(b)
    question = (f"{context(w)} How many steps after {nd(w, a)} does {nd(w, b)} depart from "
                "its baseline? Answer with the number of steps.")
    return Parts(question, f"{nd(w, a)} departs at step {sa}. {nd(w, b)} departs at step "
                 f"{sb}, {sb - sa} step{'s' if sb - sa > 1 else ''} after {nd(w, a)}.",
                 answer=str(sb - sa),
                 tolerance=STEP_TOLERANCE)


_ASK = {"departure": _departure, "baseline": _baseline, "direction": _direction,
        "size": _size, "peak": _peak, "lag": _lag, "links_in": _links_in,
        "links_out": _links_out, "arrival": _arrival, "first": _first, "delay": _delay}


# ---- small helpers ------------------------------------------------------------------



def _mirror(noisy: np.ndarray, clean: np.ndarray) -> bool:
    """Both series arrays mirrored in place around each node's baseline (the median of its
    baseline window in `noisy`, the numbers the prompt shows): a rise becomes a fall of the
    same size. Nothing changes (False) when a positive series would go negative. Every
    reading (`Reading.of`) is taken after it, so each answer is what the shown series say."""
    base = baselines(noisy)[:, None]
    flipped = 2 * base - noisy
    if float(flipped.min()) < 0 <= float(noisy.min()):
        return False
    noisy[...] = flipped
    clean[...] = 2 * base - clean
    return True


def _number(x: float, precision: int) -> str:
    """A number as the prompt writes numbers at `precision` (shortest form)."""
    return str(int(round(x))) if precision <= 0 else str(round(x, precision))



# ---- the oracle -----------------------------------------------------------------------

_NODE_RE = re.compile(r"Node (\d+)")


def oracle(p: ParsedPrompt, skill: str) -> str:
    """The answer read off a parsed prompt alone (its numbers, its graph, the nodes its
    question names, in order): what `strl quality` checks the gold against."""
    named: list[int] = []
    for k in (int(x) for x in _NODE_RE.findall(p.question)):
        if k not in named:
            named.append(k)
    d, edges = departures(p.series), p.edges or []
    onset = [int(x) for x in d.onset]
    if skill == "departure":
        return "never" if onset[named[0]] < 0 else str(onset[named[0]])
    if skill == "baseline":
        return str(float(d.baseline[named[0]]))
    if skill == "direction":
        return "up" if d.sign[named[0]] > 0 else "down"
    if skill == "size":
        return str(int(round(100 * float(d.peak[named[0]]))))
    if skill == "peak":
        return str(int(d.peak_at[named[0]]))
    if skill == "lag":
        return str(p.lags[(named[0], named[1])])
    if skill in ("links_in", "links_out"):
        k = named[0]
        ends = sorted(u for u, v in edges if v == k) if skill == "links_in" else sorted(
            v for u, v in edges if u == k)
        return ", ".join(f"Node {x}" for x in ends) or "none"
    if skill == "arrival":
        return str(onset[named[0]] + p.lags[(named[0], named[1])])
    if skill == "first":
        return f"Node {min(named[:2], key=lambda k: onset[k])}"
    if skill == "delay":
        return str(onset[named[1]] - onset[named[0]])
    raise ValueError(f"unknown align skill {skill!r}; known: {', '.join(SKILLS)}")
