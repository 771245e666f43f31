"""The rationale checker: the claims a `<think>` makes that the simulator can verify.

A completion's reasoning is free text, but much of what it asserts about the world is
checkable against the question's own data:

- **departure**, e.g. `Node 3 departs at step 27`, `Node 3 leaves its baseline of 20.4 at
  step 27`, `At step 27, Node 3 leaves its baseline`, `Node 3 from step 27`, `reached
  Node 3 at step 27`: true when Node 3's departure (`envs.detect`, on the prompt's
  numbers) is within `tolerance` steps of 27;
- **no departure**, `Node 4 never departs`: true when Node 4 has none; `No node moves
  more than 10% away from its baseline`: true when no node departs;
- **delay**, `Node 7 departs at step 51, 3 steps after Node 1`, `Node 7 at step 51 (3
  steps after Node 1`: Node 7's departure minus Node 1's is within `tolerance` of 3;
- **link / path**, `Node 2->Node 1`, `Node 4 -> Node 2 -> Node 1`, `Node 5 receives links
  from Node 2 and Node 4`, `Node 1 links to Node 7`: every link is in the graph;
- **lag**, `Node 2->Node 1 (lag 3)`, `links to Node 7 (lag 3)`: the link's lag is 3;
- **arithmetic**, `lags 1 + 4 = 5`, `departs at step 24; with the lag of 6, its
  disturbance would arrive at step 30`: the sum is right.

The reference rationales the simulator writes are made of exactly these claims (a test
checks that they all verify), so a policy trained on them writes checkable reasoning.
`check` lists the claims of one text; the `rationale` reward is the share of a
completion's distinct claims that are true, and 0 when it makes none or makes no claim
about the series (copying the graph clause alone earns nothing).

`concluded` reads which option a rationale's conclusion names apart from its letter: the
option whose name (its text up to the first comma) comes last in its last sentence that
names a letter ("So the disturbance at step 23 started at Node 2: option C." names "Node
2"). Where the reference's conclusion names the gold that way (root_cause, propagation,
entity), a completion whose conclusion names it too reasoned its way to the gold, whatever
letter it then wrote: the `conclusion` reward and the `conclusion_accuracy` metric
(`rewards.metrics`) tell the reasoning from the lookup of the letter, which the prompt
writes before the option's text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rewards.facts import Facts
from rewards.registry import reward
from rewards.types import CHOICE, Target

DEPARTURE, NEVER, DELAY, LINK, LAG, SUM = "departure", "never", "delay", "link", "lag", "sum"
SERIES_CLAIMS = (DEPARTURE, NEVER, DELAY)
"""Claims about what the series show (the rest can be read off the graph or the text)."""
TOLERANCE = 1
"""Steps a departure or a delay may be off and still count as right."""

_N = r"Node (\d+)"
_DEPART = [  # (pattern, group of the node, group of the step)
    (re.compile(_N + r" (?:departs|leaves its baseline(?: of [-+\d.eE]+)?)(?: first)?,?"
                r" at step (\d+)"), 1, 2),
    (re.compile(r"[Aa]t step (\d+), " + _N + r" (?:leaves its baseline|departs)"), 2, 1),
    (re.compile(_N + r" from step (\d+)"), 1, 2),
    (re.compile(r"(?:reached|started at) " + _N + r" at step (\d+)"), 1, 2),
]
_NEVER = re.compile(_N + r" never departs")
_CALM = re.compile(r"No node (?:moves more than \d+% away from its baseline|departs)")
_DELAY = re.compile(_N + r"(?: departs)? at step \d+(?:, | \()(\d+) steps? after " + _N)
_CHAIN = re.compile(r"Node \d+(?:\s*->\s*Node \d+)+(?: \(lag (\d+)\))?")
_RECEIVES = re.compile(_N + r" receives links? from ((?:Node \d+(?:,? and |, )?)+)")
_LINKS_TO = re.compile(_N + r" links to ((?:Node \d+(?: \(lag \d+\))?(?:,? and |, )?)+)")
_TARGET = re.compile(r"Node (\d+)(?: \(lag (\d+)\))?")
_SUM = re.compile(r"(\d+) \+ (\d+) = (\d+)")
_ARRIVE = re.compile(r"step (\d+); with the lag of (\d+), its disturbance would arrive at "
                     r"step (\d+)")
_THINK = re.compile(r"<think>(.*?)</think>", re.S)
OPTION_LETTER = re.compile(r"\boption ([A-Z])\b")
"""An option named by its letter ("option C"): how a rationale concludes."""
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Claim:
    kind: str
    """One of DEPARTURE, NEVER, DELAY, LINK, LAG, SUM."""
    what: tuple[int, ...]
    """The claim's numbers: (node, step), (node,) (no node: ()), (node, delay, after),
    (u, v), (u, v, lag) or (a, b, sum)."""
    ok: bool


def reasoning(completion: str) -> str:
    """The text whose claims count: the `<think>` block (all of them, if several)."""
    return " ".join(_THINK.findall(completion))


def check(text: str, facts: Facts, tolerance: int = TOLERANCE) -> list[Claim]:
    """The distinct verifiable claims of `text`, each marked true or false, grouped by
    kind (departures, no departures, delays, links and lags, sums).

    >>> facts = Facts.of([[1.0] * 10 + [2.0] * 10, [1.0] * 20], [[0, 1, 2]])
    >>> [(c.kind, c.what, c.ok) for c in check(
    ...     "Node 0 departs at step 10. Node 1 never departs. Node 1->Node 0.", facts)]
    [('departure', (0, 10), True), ('never', (1,), True), ('link', (1, 0), False)]
    """
    n = len(facts.onsets)
    onset = facts.onsets

    def node(k: str) -> int | None:
        return int(k) if int(k) < n else None

    out: dict[tuple[str, tuple[int, ...]], bool] = {}

    def add(kind: str, what: tuple[int, ...], ok: bool) -> None:
        out.setdefault((kind, what), ok)

    for pattern, gk, gs in _DEPART:
        for m in pattern.finditer(text):
            k, s = node(m.group(gk)), int(m.group(gs))
            add(DEPARTURE, (int(m.group(gk)), s),
                k is not None and onset[k] >= 0 and abs(onset[k] - s) <= tolerance)
    for m in _NEVER.finditer(text):
        k = node(m.group(1))
        add(NEVER, (int(m.group(1)),), k is not None and onset[k] < 0)
    if _CALM.search(text):
        add(NEVER, (), all(o < 0 for o in onset))
    for m in _DELAY.finditer(text):
        v, d, u = node(m.group(1)), int(m.group(2)), node(m.group(3))
        ok = (v is not None and u is not None and onset[v] >= 0 and onset[u] >= 0
              and abs(onset[v] - onset[u] - d) <= tolerance)
        add(DELAY, (int(m.group(1)), d, int(m.group(3))), ok)
    for m in _CHAIN.finditer(text):
        nodes = [int(x) for x in re.findall(r"\d+", m.group(0).split(" (lag")[0])]
        for u, v in zip(nodes, nodes[1:], strict=False):
            add(LINK, (u, v), (u, v) in facts.links)
        if m.group(1) is not None and len(nodes) == 2:
            add(LAG, (*nodes, int(m.group(1))), facts.links.get(tuple(nodes)) == int(m.group(1)))
    for m in _RECEIVES.finditer(text):
        v = int(m.group(1))
        for u in re.findall(r"Node (\d+)", m.group(2)):
            add(LINK, (int(u), v), (int(u), v) in facts.links)
    for m in _LINKS_TO.finditer(text):
        u = int(m.group(1))
        for t in _TARGET.finditer(m.group(2)):
            v = int(t.group(1))
            add(LINK, (u, v), (u, v) in facts.links)
            if t.group(2) is not None:
                add(LAG, (u, v, int(t.group(2))), facts.links.get((u, v)) == int(t.group(2)))
    for pattern in (_SUM, _ARRIVE):
        for m in pattern.finditer(text):
            a, b, c = (int(x) for x in m.groups())
            add(SUM, (a, b, c), a + b == c)
    return [Claim(kind, what, ok) for (kind, what), ok in out.items()]


def verified_share(claims: Sequence[Claim]) -> float:
    """The rationale reward of a list of claims: the share that are true, 0 without any
    claim about the series."""
    if not any(c.kind in SERIES_CLAIMS for c in claims):
        return 0.0
    return sum(c.ok for c in claims) / len(claims)


def concluded(text: str, options: Sequence[str]) -> int | None:
    """The option that `text` (a rationale) concludes with, read from its words rather
    than its letter: in its last sentence that names a letter ("option X"), the option
    whose name (its text up to the first comma, whole words) comes last; None when no
    sentence names a letter or that sentence names no option.

    >>> opts = ["Node 3", "Node 1", "Node 2"]
    >>> concluded("Node 1 is too late. So it started at Node 2: option A.", opts)
    2
    >>> concluded("Via Node 0: 26 + 4 = 30: matches. So option B.", opts) is None
    True
    """
    named = [s for s in _SENTENCE.split(text.strip()) if OPTION_LETTER.search(s)]
    if not named or not options:
        return None
    last: dict[int, int] = {}
    for i, o in enumerate(options):
        name = o.split(",")[0].strip()
        hits = [m.start() for m in re.finditer(rf"(?<!\w){re.escape(name)}(?!\w)", named[-1])]
        if name and hits:
            last[i] = hits[-1]
    return max(last, key=last.get) if last else None


def reasoned_gold(target: Target) -> int | None:
    """The gold's index when the target's reference rationale concludes with it by name
    (`concluded`), else None: only then can a completion's conclusion be read against it."""
    if target.kind != CHOICE or not target.options:
        return None
    gold = ord(target.gold_letter) - ord("A")
    return gold if concluded(target.reference, target.options) == gold else None


@reward("conclusion", kinds=(CHOICE,))
def conclusion(completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
    """1.0 where the `<think>` concludes with the gold option by name (`concluded`: "...
    started at Node 2: option C." names Node 2), whatever its letter; 0 otherwise, and
    for targets whose reference does not conclude by name (correlation and etiological
    end on the letter alone). The answer's letter is not read: this pays the reasoning
    that reaches the gold, apart from the lookup of its letter."""
    out = []
    for c, t in zip(completions, targets, strict=True):
        gold = reasoned_gold(t)
        out.append(float(gold is not None and concluded(reasoning(c), t.options) == gold))
    return out


@reward("rationale")
def rationale(completions: Sequence[str], targets: Sequence[Target],
              tolerance: int = TOLERANCE) -> list[float]:
    """The share of the `<think>`'s verifiable claims that the question's data confirm
    (departures, delays, links, lags, sums; `check`); 0 without a claim about the series
    and for targets that carry no data to check against (`Target.facts` is None: e.g.
    ST-Test rows without series)."""
    out = []
    for c, t in zip(completions, targets, strict=True):
        facts = t.facts
        out.append(0.0 if facts is None else
                   verified_share(check(reasoning(c), facts, tolerance)))
    return out
