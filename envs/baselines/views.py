"""Views (what a solver of one input may read), parsing of question and option texts,
and the small helpers every solver uses to pick an option."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from envs.sample import Sample

VIEWS: tuple[str, ...] = ("graph", "series", "text")
"""The views of a sample: what one input-limited solver may read."""

MAX_LAG = 12
"""Largest lag in steps tried by the cross-correlation, Granger and waveform solvers."""
HASH_BUCKETS = 32
"""Buckets of the hashed bag of option words (a learned-baseline feature)."""
RANDOM_STATE = 0

GRAPH_RULES: tuple[str, ...] = (
    "ancestor", "parent", "child", "descendant", "shortest_lag", "longest_lag",
    "max_in_degree", "max_out_degree", "min_in_degree", "min_out_degree", "source",
    "feasible_longest", "feasible_shortest")
SERIES_RULES: tuple[str, ...] = (
    "earliest", "latest_before", "closest_before", "xcorr", "xcorr_lag_match", "granger",
    "waveform", "largest_peak", "smallest_peak", "last_hop_strongest", "last_hop_weakest",
    "fastest_rise", "slowest_rise")
TEXT_RULES: tuple[str, ...] = ("same_letter", "longest", "most_similar")


@dataclass(frozen=True)
class BaselineResult:
    """Accuracy of one baseline of one view on the test samples."""

    view: str
    name: str
    accuracy: float

    @property
    def key(self) -> str:
        """`view:name`, as in `attack`'s result."""
        return f"{self.view}:{self.name}"


@dataclass(frozen=True, eq=False)
class View:
    """What a solver of one view may read from a sample (the rest is None)."""

    kind: str
    question: str
    options: tuple[str, ...]
    n_nodes: int | None = None  # graph view
    edges: tuple[tuple[int, int, int], ...] | None = None  # graph view: (from, to, lag)
    length: int | None = None  # graph view: steps per series (their shape, not values)
    series: np.ndarray | None = None  # series view: (N, T)


def view_of(sample: Sample, kind: str) -> View:
    """The `kind` view ("graph", "series" or "text") of a multiple-choice sample."""
    if kind not in VIEWS:
        raise ValueError(f"unknown view '{kind}'; views: {', '.join(VIEWS)}")
    if not sample.options:
        raise ValueError(f"sample {sample.id} has no options: baselines need multiple choice")
    q, opts = sample.question, tuple(sample.options)
    if kind == "graph":
        edges = tuple((int(e[0]), int(e[1]), int(e[2]) if len(e) > 2 else 1)
                      for e in sample.edges)
        n, t_len = sample.series.shape
        return View(kind, q, opts, n_nodes=int(n), edges=edges, length=int(t_len))
    if kind == "series":
        return View(kind, q, opts, series=np.asarray(sample.series, dtype=float))
    return View(kind, q, opts)


def gold_index(sample: Sample) -> int:
    """The gold option's index (answer letter 'A' -> 0)."""
    g = ord(sample.answer.strip()[:1] or "?") - 65
    if not 0 <= g < len(sample.options):
        raise ValueError(f"sample {sample.id}: answer {sample.answer!r} is not an option letter")
    return g


# ---- parsing -----------------------------------------------------------------------

_NODE = re.compile(r"\bNode (\d+)\b")
_NUM = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?!\w)")
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")
_CONTEXT = re.compile(r"\btime\s+steps?\s*=", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z0-9]+")
_TOKEN = re.compile(r"<node>|<num>|[a-z]+")


def strip_context(text: str) -> str:
    """`text` without the sentence(s) that define the time step ("... 1 time step = ...")."""
    return " ".join(s for s in _SENTENCE_END.split(text.strip()) if not _CONTEXT.search(s))


def _integers(text: str) -> list[int]:
    """Integers written in `text` outside "Node k" mentions (decimals are skipped)."""
    return [int(m) for m in _NUM.findall(_NODE.sub(" ", text)) if "." not in m]


def question_nodes(question: str) -> list[int]:
    """Every "Node k" of the question, in order (the first one is the question's node)."""
    return [int(k) for k in _NODE.findall(strip_context(question))]


def question_steps(question: str) -> list[int]:
    """Integers of the question that are neither node labels nor in the context sentence."""
    return _integers(strip_context(question))


def option_nodes(option: str) -> list[int]:
    """Every "Node k" of an option, in order."""
    return [int(k) for k in _NODE.findall(option)]


def option_numbers(option: str) -> list[int]:
    """The integers of an option other than its node labels, in order."""
    return _integers(option)


def _template(option: str) -> str:
    """The option with node labels and integers replaced by tokens, lower case."""
    return _NUM.sub(" <num> ", _NODE.sub(" <node> ", option)).lower()


@lru_cache(maxsize=65536)
def _bucket(token: str) -> int:
    return zlib.crc32(token.encode()) % HASH_BUCKETS  # stable across runs, unlike hash()


@dataclass(frozen=True)
class _Parsed:
    q_nodes: list[int]
    steps: list[int]
    nodes: list[list[int]]  # per option
    numbers: list[list[int]]  # per option

    @property
    def q(self) -> int | None:
        return self.q_nodes[0] if self.q_nodes else None

    def firsts(self) -> list[int | None]:
        return [ns[0] if ns else None for ns in self.nodes]


def _parse(v: View) -> _Parsed:
    return _Parsed(question_nodes(v.question), question_steps(v.question),
                   [option_nodes(o) for o in v.options], [option_numbers(o) for o in v.options])


# ---- choosing ----------------------------------------------------------------------

def _argbest(scores: Sequence[float], best: str = "max") -> int:
    """Index of the best finite score (ties: lowest index); 0 when none is finite."""
    a = np.asarray(scores, dtype=float)
    ok = np.isfinite(a)
    if not ok.any():
        return 0
    a = np.where(ok, a if best == "max" else -a, -np.inf)
    return int(np.argmax(a))


def _node_values(table: np.ndarray, nodes: Sequence[int | None]) -> np.ndarray:
    """table[x] for each node x; NaN where x is None or outside the table."""
    n = len(table)
    return np.array([float(table[x]) if x is not None and 0 <= x < n else np.nan
                     for x in nodes])


def _pair_values(table: np.ndarray, rows: Sequence[int | None],
                 cols: Sequence[int | None]) -> np.ndarray:
    n = len(table)
    return np.array([float(table[r, c]) if r is not None and c is not None
                     and 0 <= r < n and 0 <= c < n else np.nan
                     for r, c in zip(rows, cols, strict=True)])


def _valid(x: int | None, n: int) -> int | None:
    return x if x is not None and 0 <= x < n else None


