"""Short exact answers (answer kind "value"): what one says, and whether it says the gold.

A value answer is a number (``"15"``, ``"step 15"``, ``"41%"``), a set of nodes
(``"Node 3, Node 1"``; ``"none"`` and ``"never"`` say the empty set), or a word
(``"up"``). The task that asks the question (ST-Align, `envs.tasks.align`) and the
rewards that score it (`rewards.extract.value_matches`) share this one reading.
"""

from __future__ import annotations

import re

_NODE_RE = re.compile(r"\bnode\s*(\d+)\b")
_NUMBER_RE = re.compile(r"(?:step\s*)?([-+]?\d+(?:\.\d+)?)\s*%?")
_NONE_WORDS = frozenset({"none", "no node", "no nodes", "never"})

Key = float | frozenset[int] | str


def value_key(content: str) -> Key:
    """What a short value answer says: a number, a set of node numbers (``"none"`` is the
    empty set), or else the lower-cased words.

    >>> value_key("Step 15"), value_key("Node 3 and node 1"), value_key(" Up "), value_key("never")
    (15.0, frozenset({1, 3}), 'up', frozenset())
    """
    text = " ".join(content.strip().strip(".").lower().split())
    nodes = _NODE_RE.findall(text)
    if nodes:
        return frozenset(int(k) for k in nodes)
    if text in _NONE_WORDS:
        return frozenset()
    m = _NUMBER_RE.fullmatch(text)
    return float(m.group(1)) if m else text


def same_value(said: str, gold: str, tolerance: float = 0.0) -> bool:
    """Whether an answer's content says the gold value: numbers within ``tolerance``,
    node sets equal, words equal.

    >>> same_value("16", "15", 1), same_value("none", "never"), same_value("up", "down")
    (True, True, False)
    """
    got, want = value_key(said), value_key(gold)
    if isinstance(want, float):
        return isinstance(got, float) and abs(got - want) <= tolerance + 1e-9
    return got == want
