"""The STReasoner prompt shape: writing prompts, and reading them back.

    You are a spatial temporal analysis expert. Node 0 time series with length of 48: <ts>;
    ...; Graph Structure: Node 0->Node 2 (lag 3); Node 1->Node 2 (lag 1), please analyze the
    spatial temporal data and answer the following question: <question>

The series body is either the numbers inline (`[20.29, 19.07, ...]` at a chosen precision,
for text-only models) or the `<ts><ts/>` placeholder with the numbers in a separate array
(the STReasoner / ST-Test format). The graph-free prompt for S-GRPO is the same text with
the `; Graph Structure: ...` clause removed.

An edge may carry its propagation delay in steps, `Node 0->Node 2 (lag 3)`: the graph
is the network *and* its delays, which the questions that align timing need (ST-Test's
own rows write edges without lags; both forms are read back).

`parse_prompt` reads a prompt back into series, edges, question and options. The oracle
solvers use only it, which is what makes them honest: they see what a model sees.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np

PREAMBLE = "You are a spatial temporal analysis expert. "
ASK = ", please analyze the spatial temporal data and answer the following question: "
PLACEHOLDER = "<ts><ts/>"
GRAPH_CLAUSE = "; Graph Structure: "
FORMAT_INSTRUCTION = (
    "Think step by step inside <think></think>, then give only the final answer inside "
    "<answer></answer>: a single option letter for multiple choice, a list [v1, v2, ...] "
    "for a forecast, or a short description when asked to describe."
)
"""System instruction used with every prompt (training and serving)."""

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def format_series(row: np.ndarray, precision: int) -> str:
    """Numbers of one series as `[v1, v2, ...]`, rounded to `precision` decimals and
    written as ST-Test writes them (shortest form: `20.4`, not `20.40`)."""
    if precision <= 0:
        return str(np.round(row).astype(np.int64).tolist())
    return str(np.round(row, precision).tolist())


def format_edge(edge: tuple[int, ...]) -> str:
    """`Node u->Node v`, or `Node u->Node v (lag L)` for an edge (u, v, L) with a lag."""
    u, v = edge[0], edge[1]
    lag = edge[2] if len(edge) > 2 else None
    return f"Node {u}->Node {v}" if lag is None else f"Node {u}->Node {v} (lag {lag})"


def build_prompt(
    series: np.ndarray,
    edges: list[tuple[int, ...]],
    question: str,
    *,
    inline: bool = True,
    precision: int = 2,
    with_graph: bool = True,
    bodies: list[str] | None = None,
) -> str:
    """The STReasoner-shaped prompt for series (N, T) in shown-label order.

    `edges` are (from, to) or (from, to, lag) tuples; a lag of None is not written.
    `bodies` may pass the already formatted series texts (they are the costly part)."""
    n, t_len = series.shape
    if bodies is None:
        bodies = ([format_series(r, precision) for r in series] if inline
                  else [PLACEHOLDER] * n)
    parts = [f"Node {i} time series with length of {t_len}: {b}" for i, b in enumerate(bodies)]
    text = PREAMBLE + "; ".join(parts)
    if with_graph:
        text += GRAPH_CLAUSE + "; ".join(format_edge(e) for e in edges)
    return text + ASK + question


def format_options(options: list[str]) -> str:
    """`Options: A. first B. second ...` as in ST-Bench."""
    return "Options: " + " ".join(f"{_LETTERS[i]}. {o}" for i, o in enumerate(options))


def letter(i: int) -> str:
    return _LETTERS[i]


@dataclass(frozen=True)
class ParsedPrompt:
    series: np.ndarray  # (N, T)
    edges: list[tuple[int, int]] | None  # None when the prompt has no graph clause
    question: str  # the question without its options
    options: list[str]
    lags: dict[tuple[int, int], int] = field(default_factory=dict)
    """Edge -> lag in steps, for the edges the prompt writes with a lag."""


_NODE_RE = re.compile(r"Node (\d+) time series with length of (\d+): (\[[^\]]*\]|<ts><ts/>)")
_EDGE_RE = re.compile(r"Node (\d+)->Node (\d+)(?: \(lag (\d+)\))?")


def with_placeholders(text: str) -> str:
    """The prompt with every node's inline numbers replaced by `<ts><ts/>` (the ST-Test
    form a time-series encoder reads; prompts already in that form are unchanged)."""
    return _NODE_RE.sub(lambda m: m.group(0)[: m.start(3) - m.start(0)] + PLACEHOLDER, text)


def fill_placeholders(texts: list[str], fills: list[str]) -> list[str]:
    """`texts` with their `<ts><ts/>` placeholders, in order across the texts, replaced by
    `fills` (one per placeholder: inline numbers, or an encoder's layout)."""
    pieces = [t.split(PLACEHOLDER) for t in texts]
    found = sum(len(p) - 1 for p in pieces)
    if found != len(fills):
        raise ValueError(f"{found} {PLACEHOLDER} placeholders but {len(fills)} series")
    it = iter(fills)
    return [p[0] + "".join(next(it) + rest for rest in p[1:]) for p in pieces]


def parse_prompt(text: str, timeseries: list[list[float]] | None = None) -> ParsedPrompt:
    """Read series, graph, question and options back out of a prompt.

    `timeseries` supplies the numbers when the prompt uses `<ts><ts/>` placeholders.
    """
    head, sep, question = text.partition(ASK)
    if not sep:
        raise ValueError("not an ST prompt: missing 'please analyze the spatial temporal data'")
    body, gsep, graph = head.partition(GRAPH_CLAUSE)
    rows = []
    for k, m in enumerate(_NODE_RE.finditer(body)):
        if int(m.group(1)) != k:  # the edges name nodes by label: the order must be theirs
            raise ValueError(f"node clauses must come in label order (Node 0, Node 1, ...); "
                             f"clause {k} is Node {m.group(1)}")
        if m.group(3) == PLACEHOLDER:
            if timeseries is None or k >= len(timeseries):
                raise ValueError("prompt uses <ts><ts/> placeholders but no timeseries array")
            values = timeseries[k]
        else:
            values = json.loads(m.group(3))
        if not isinstance(values, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise ValueError(f"Node {k}'s series must be a list of numbers")
        if len(values) != int(m.group(2)):
            raise ValueError(f"Node {k} is said to have length {m.group(2)} but has "
                             f"{len(values)} values")
        rows.append(np.asarray(values, dtype=float))
    if not rows:
        raise ValueError("no 'Node k time series' clauses found in prompt")
    lengths = [len(r) for r in rows]
    if len(set(lengths)) > 1:
        k = next(i for i, n in enumerate(lengths) if n != lengths[0])
        raise ValueError(f"every node needs the same number of steps; node 0 has "
                         f"{lengths[0]}, node {k} has {lengths[k]}")
    found = _EDGE_RE.findall(graph) if gsep else []
    edges = [(int(u), int(v)) for u, v, _ in found] if gsep else None
    lags = {(int(u), int(v)): int(lag) for u, v, lag in found if lag}
    q, options = split_options(question)
    return ParsedPrompt(np.vstack(rows), edges, q, options, lags)


def split_options(question: str) -> tuple[str, list[str]]:
    """Split `... Options: A. x B. y` into the question and its option texts."""
    q, sep, rest = question.partition(" Options: ")
    if not sep:
        return question, []
    options: list[str] = []
    pos = 0
    for i in range(len(_LETTERS)):
        tag = f"{_LETTERS[i]}. "
        if not rest.startswith(tag, pos):
            break
        nxt = rest.find(f" {_LETTERS[i + 1]}. ", pos) if i + 1 < len(_LETTERS) else -1
        end = nxt if nxt >= 0 else len(rest)
        options.append(rest[pos + len(tag) : end].strip())
        pos = end + 1
        if nxt < 0:
            break
    return q, options
