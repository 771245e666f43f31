"""Shortcut solvers: can a generated question be answered with one of its inputs removed?

A multiple-choice question over a network of time series is meant to need *both* the
series and the graph. This module attacks questions with solvers that see only part of
what a prompt shows, one *view* at a time:

- ``"graph"``: question, options, the edges with their lags and the node count; no series.
- ``"series"``: question, options and the series; no edges.
- ``"text"``: question and options only.

A question that needs both inputs must leave every graph-view and series-view solver
near chance (and every text-view solver too, or the options give the answer away). Two
kinds of solvers are run on each view:

- *rule baselines*: one fixed heuristic each (the option naming an ancestor of the
  question's node, the earliest departure, the longest option, ...);
- *learned baselines*: a per-option gradient-boosted classifier ("is this option the gold
  one?") trained on samples of the same generator, over generic features of the view,
  answering with the option it rates highest. It finds shortcuts nobody wrote a rule for.

Everything reads the question text generically, never one task's wording: the question's
nodes are its "Node k" mentions, its steps are the other integers in it (the context
sentence "The network measures ... at N sites; 1 time step = ..." is left out), and an
option is read as its node mentions and its other integers. The solvers never see a
`Sample` itself, only a `View` that holds nothing but what the view allows, so a view
cannot leak by accident.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from envs.detect import Departures, baseline_len, departures
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
    "max_in_degree", "max_out_degree", "min_in_degree", "min_out_degree", "source")
SERIES_RULES: tuple[str, ...] = (
    "earliest", "latest_before", "closest_before", "xcorr", "xcorr_lag_match", "granger",
    "waveform")
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
        return View(kind, q, opts, n_nodes=int(sample.series.shape[0]), edges=edges)
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


# ---- graph view --------------------------------------------------------------------

@dataclass(frozen=True)
class _Graph:
    n: int
    lag: np.ndarray  # (n, n) lag of edge u->v, inf when none
    dist: np.ndarray  # (n, n) min total lag of a path u->v, inf when none
    hops: np.ndarray  # (n, n) fewest edges on a path u->v, inf when none
    n_in: np.ndarray
    n_out: np.ndarray
    n_edges: int


def _graph(v: View) -> _Graph:
    assert v.edges is not None and v.n_nodes is not None, "not a graph view"
    n = max([v.n_nodes] + [max(u, w) + 1 for u, w, _ in v.edges])
    lag = np.full((n, n), np.inf)
    for u, w, lg in v.edges:
        lag[u, w] = min(lag[u, w], lg)
    adj = np.isfinite(lag)
    dist, hops = lag.copy(), np.where(adj, 1.0, np.inf)
    for k in range(n):  # Floyd-Warshall
        dist = np.minimum(dist, dist[:, k:k + 1] + dist[k:k + 1, :])
        hops = np.minimum(hops, hops[:, k:k + 1] + hops[k:k + 1, :])
    return _Graph(n, lag, dist, hops, adj.sum(0).astype(float), adj.sum(1).astype(float),
                  int(adj.sum()))


def _graph_rules(v: View, p: _Parsed, g: _Graph) -> dict[str, int]:
    xs = [_valid(x, g.n) for x in p.firsts()]
    q = _valid(p.q, g.n)
    qs = [q] * len(xs)
    to_q, from_q = _pair_values(g.dist, xs, qs), _pair_values(g.dist, qs, xs)
    either = np.fmin(to_q, from_q)
    n_in, n_out = _node_values(g.n_in, xs), _node_values(g.n_out, xs)
    return {
        "ancestor": _argbest(to_q, "min"),
        "parent": _argbest(_pair_values(g.lag, xs, qs), "min"),
        "child": _argbest(_pair_values(g.lag, qs, xs), "min"),
        "descendant": _argbest(from_q, "min"),
        "shortest_lag": _argbest(either, "min"),
        "longest_lag": _argbest(either, "max"),
        "max_in_degree": _argbest(n_in, "max"),
        "max_out_degree": _argbest(n_out, "max"),
        "min_in_degree": _argbest(n_in, "min"),
        "min_out_degree": _argbest(n_out, "min"),
        "source": _argbest(np.where(n_in == 0, 1.0, np.nan), "max"),
    }


# ---- series view -------------------------------------------------------------------

@dataclass(frozen=True)
class _Series:
    n: int
    dep: Departures
    onset: np.ndarray  # float, NaN where the node never departs
    xc_lead: np.ndarray  # (N,) best corr of diffs, node leading q, over lags 1..m
    xc_lead_lag: np.ndarray
    xc_follow: np.ndarray  # q leading the node
    xc_follow_lag: np.ndarray
    granger: np.ndarray  # relative drop of diff(q)'s residual variance, best lag
    granger_lag: np.ndarray
    wave: np.ndarray  # best corr of levels after the baseline window, node leading q
    wave_lag: np.ndarray


def _best(c: np.ndarray, first_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Max over the last axis (NaN-safe) and the lag it is found at."""
    ok = np.isfinite(c).any(axis=-1)
    filled = np.where(np.isfinite(c), c, -np.inf)
    k = filled.argmax(axis=-1)
    best = np.take_along_axis(filled, k[..., None], axis=-1)[..., 0]
    return np.where(ok, best, np.nan), np.where(ok, k + first_lag, np.nan)


def _corr_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of every row of x (..., W) with y (W,) or rows of y (..., W)."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    num = (xc * yc).sum(axis=-1)
    den = np.sqrt((xc * xc).sum(axis=-1) * (yc * yc).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12, num / np.where(den > 0, den, 1.0), np.nan)


def _leading(d: np.ndarray, m: int) -> np.ndarray:
    """(N, m, L - m): [:, j - 1] is d[:, m - j : L - j], each row leading by j = 1..m."""
    return sliding_window_view(d, d.shape[1] - m, axis=-1)[:, m - 1::-1, :]


def _series(v: View, q: int | None) -> _Series:
    assert v.series is not None, "not a series view"
    x = v.series
    n, t_len = x.shape
    dep = departures(x)
    onset = np.where(dep.onset >= 0, dep.onset, np.nan).astype(float)
    nan = np.full(n, np.nan)
    q = _valid(q, n)
    d = np.diff(x, axis=1)
    m = min(MAX_LAG, (t_len - 1) // 3)
    if q is None or m < 2:
        return _Series(n, dep, onset, *([nan] * 8))
    lead = _leading(d, m)  # (N, m, W)
    yq = d[q, m:]
    xc_lead, xc_lead_lag = _best(_corr_rows(lead, yq), 1)
    xc_follow, xc_follow_lag = _best(_corr_rows(lead[q][None, :, :], d[:, None, m:]), 1)
    # Granger: diff(q)[t] on a constant and its own 2 lags, then adding diff(x)[t - L].
    z = np.column_stack([np.ones_like(yq), lead[q, 0], lead[q, 1]])
    basis, _ = np.linalg.qr(z)
    ry = yq - basis @ (basis.T @ yq)
    rx = lead - (lead @ basis) @ basis.T
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = (rx @ ry) ** 2 / ((rx * rx).sum(axis=-1) * (ry @ ry))
    gain[~np.isfinite(gain)] = np.nan
    granger, granger_lag = _best(gain, 1)
    # Waveform: q's levels after the baseline window against each node's, shifted 0..s.
    w = baseline_len(t_len)
    s = max(0, min(MAX_LAG, w, t_len - w - 3))
    win = sliding_window_view(x[:, w - s:], t_len - w, axis=-1)[:, ::-1, :]  # lags 0..s
    wave, wave_lag = _best(_corr_rows(win, x[q, w:]), 0)
    return _Series(n, dep, onset, xc_lead, xc_lead_lag, xc_follow, xc_follow_lag,
                   granger, granger_lag, wave, wave_lag)


def _reference(p: _Parsed, s: _Series) -> float:
    """The question's time reference: its first step, else the onset of its node."""
    if p.steps:
        return float(p.steps[0])
    q = _valid(p.q, s.n)
    return float(s.onset[q]) if q is not None else np.nan


def _series_rules(v: View, p: _Parsed, s: _Series) -> dict[str, int]:
    xs = [_valid(x, s.n) for x in p.firsts()]
    on = _node_values(s.onset, xs)
    ref = _reference(p, s)
    before = np.where(on < ref, on, np.nan)
    gap = ref - on
    # closest at or before the reference; failing that, closest after it
    closest = np.where(gap >= 0, gap, np.nan) if np.any(gap >= 0) else np.abs(gap)
    arrival = on + _node_values(s.xc_lead_lag, xs)
    return {
        "earliest": _argbest(on, "min"),
        "latest_before": _argbest(before, "max"),
        "closest_before": _argbest(closest, "min"),
        "xcorr": _argbest(_node_values(s.xc_lead, xs), "max"),
        "xcorr_lag_match": _argbest(np.abs(arrival - ref), "min"),
        "granger": _argbest(_node_values(s.granger, xs), "max"),
        "waveform": _argbest(_node_values(s.wave, xs), "max"),
    }


# ---- text view ---------------------------------------------------------------------

def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _similarity(question: str, options: Sequence[str]) -> np.ndarray:
    """Share of each option's words that also occur in the question (as in envs.quality)."""
    q = _words(question)
    return np.array([len(q & w) / max(1, len(w)) for w in map(_words, options)])


def _text_rules(v: View) -> dict[str, int]:
    return {"longest": _argbest([len(o) for o in v.options], "max"),
            "most_similar": _argbest(_similarity(v.question, v.options), "max")}


def rule_choices(v: View) -> dict[str, int]:
    """The option index each rule baseline of `v`'s view picks (not `same_letter`, which
    is one letter for all samples)."""
    p = _parse(v)
    if v.kind == "graph":
        return _graph_rules(v, p, _graph(v))
    if v.kind == "series":
        return _series_rules(v, p, _series(v, p.q))
    return _text_rules(v)


def rule_baselines(samples: Sequence[Sample]) -> list[BaselineResult]:
    """Accuracy of every rule baseline of every view on `samples`."""
    if not samples:
        raise ValueError("rule_baselines needs at least one sample")
    gold = np.array([gold_index(s) for s in samples])
    out = []
    for kind in VIEWS:
        picks = [rule_choices(view_of(s, kind)) for s in samples]
        for name in picks[0]:
            hits = np.array([pk[name] for pk in picks]) == gold
            out.append(BaselineResult(kind, name, float(hits.mean())))
        if kind == "text":
            n_max = max(len(s.options) for s in samples)
            same = max(float(np.mean(gold == k)) for k in range(n_max))
            out.append(BaselineResult(kind, "same_letter", same))
    return out


# ---- learned baselines: features ----------------------------------------------------

def _rank(a: np.ndarray) -> np.ndarray:
    """Rank of each finite value among the finite ones (0 = smallest); NaN stays NaN."""
    r = (a[None, :] < a[:, None]).sum(axis=1).astype(float)
    return np.where(np.isfinite(a), r, np.nan)


def _flag(b: np.ndarray | bool) -> np.ndarray:
    return np.asarray(b, dtype=float)


def _first(values: Sequence[int]) -> float:
    return float(values[0]) if values else np.nan


def _text_features(v: View, p: _Parsed) -> dict[str, np.ndarray]:
    k = len(v.options)
    opts = v.options
    chars = np.array([len(o) for o in opts], dtype=float)
    words = np.array([len(o.split()) for o in opts], dtype=float)
    firsts = p.firsts()
    nums = np.array([_first(ns) for ns in p.numbers])
    node_count = Counter(x for x in firsts if x is not None)
    num_count = Counter(x for x in nums if np.isfinite(x))
    mode = min(num_count, key=lambda x: (-num_count[x], x)) if num_count else np.nan
    templates = [_template(o) for o in opts]
    tpl_count = Counter(templates)
    qset = set(p.q_nodes)
    bag = np.zeros((k, HASH_BUCKETS))
    for i, t in enumerate(templates):
        for tok in _TOKEN.findall(t):
            bag[i, _bucket(tok)] += 1
    qw = _words(v.question)
    ow = [_words(o) for o in opts]
    steps = p.steps
    f: dict[str, np.ndarray] = {
        "t_chars": chars, "t_words": words,
        "t_chars_rank": _rank(chars), "t_chars_minus_max": chars - chars.max(),
        "t_node_mentions": np.array([len(ns) for ns in p.nodes], dtype=float),
        "t_number_mentions": np.array([len(ns) for ns in p.numbers], dtype=float),
        "t_share_first_node": np.array([node_count[x] - 1 if x is not None else np.nan
                                        for x in firsts], dtype=float),
        "t_share_first_number": np.array([num_count[x] - 1 if np.isfinite(x) else np.nan
                                          for x in nums], dtype=float),
        "t_share_template": np.array([tpl_count[t] - 1 for t in templates], dtype=float),
        "t_first_number": nums,
        "t_first_number_is_mode": np.where(np.isfinite(nums), _flag(nums == mode), np.nan),
        "t_first_number_rank": _rank(nums),
        "t_overlap": np.array([len(qw & w) for w in ow], dtype=float),
        "t_overlap_share": np.array([len(qw & w) / max(1, len(w)) for w in ow]),
        "t_names_question_nodes": np.array([len(qset & set(ns)) for ns in p.nodes],
                                           dtype=float),
        "t_first_node_question_index": np.array(
            [float(p.q_nodes.index(x)) if x in qset else np.nan for x in firsts]),
        "t_question_numbers": np.full(k, float(len(steps))),
        "t_question_first": np.full(k, _first(steps)),
        "t_question_last": np.full(k, float(steps[-1]) if steps else np.nan),
        "t_question_width": np.full(k, float(steps[-1] - steps[0]) if steps else np.nan),
        "t_question_nodes": np.full(k, float(len(p.q_nodes))),
        "t_options": np.full(k, float(k)),
    }
    for b in range(HASH_BUCKETS):
        f[f"t_bag{b}"] = bag[:, b]
    return f


def _nth(p: _Parsed, j: int, n: int) -> list[int | None]:
    return [_valid(ns[j], n) if len(ns) > j else None for ns in p.nodes]


def _graph_features(v: View, p: _Parsed, g: _Graph) -> dict[str, np.ndarray]:
    k = len(v.options)
    n1, n2, n3 = _nth(p, 0, g.n), _nth(p, 1, g.n), _nth(p, 2, g.n)
    q = _valid(p.q, g.n)
    q2 = _valid(p.q_nodes[1], g.n) if len(p.q_nodes) > 1 else None
    qs = [q] * k
    edge = np.isfinite(g.lag).astype(float)
    reach = np.isfinite(g.dist).astype(float)
    lag, dist, hops = (np.where(np.isfinite(t), t, np.nan) for t in (g.lag, g.dist, g.hops))

    def pair(t: np.ndarray, a: list[int | None], b: list[int | None]) -> np.ndarray:
        return _pair_values(t, a, b)

    def one(t: np.ndarray, a: list[int | None]) -> np.ndarray:
        return _node_values(t, a)

    def scalar(value: float) -> np.ndarray:
        return np.full(k, value)

    num = np.array([_first(ns) for ns in p.numbers])
    src = (g.n_in == 0).astype(float)
    sink = (g.n_out == 0).astype(float)
    n_anc, n_desc = reach.sum(axis=0), reach.sum(axis=1)
    qq = ([q], [q2])
    plag_xq, plag_qx = pair(dist, n1, qs), pair(dist, qs, n1)
    lag_xq, lag_qx = pair(lag, n1, qs), pair(lag, qs, n1)
    sources_named = [np.mean([src[x] for x in ns if 0 <= x < g.n]) if any(
        0 <= x < g.n for x in ns) else np.nan for ns in p.nodes]
    f = {
        "g_nodes": scalar(g.n), "g_edges": scalar(g.n_edges),
        "g_q_in": scalar(one(g.n_in, [q])[0]), "g_q_out": scalar(one(g.n_out, [q])[0]),
        "g_q_source": scalar(one(src, [q])[0]), "g_q_sink": scalar(one(sink, [q])[0]),
        "g_q_ancestors": scalar(one(n_anc, [q])[0]),
        "g_q_descendants": scalar(one(n_desc, [q])[0]),
        "g_edge_q1q2": scalar(pair(edge, *qq)[0]), "g_edge_q2q1": scalar(pair(edge, *qq[::-1])[0]),
        "g_reach_q1q2": scalar(pair(reach, *qq)[0]),
        "g_reach_q2q1": scalar(pair(reach, *qq[::-1])[0]),
        "g_hops_q1q2": scalar(pair(hops, *qq)[0]), "g_hops_q2q1": scalar(pair(hops, *qq[::-1])[0]),
        "g_x_in": one(g.n_in, n1), "g_x_out": one(g.n_out, n1),
        "g_x_source": one(src, n1), "g_x_sink": one(sink, n1),
        "g_x_ancestors": one(n_anc, n1), "g_x_descendants": one(n_desc, n1),
        "g_edge_xq": pair(edge, n1, qs), "g_edge_qx": pair(edge, qs, n1),
        "g_lag_xq": lag_xq, "g_lag_qx": lag_qx,
        "g_reach_xq": pair(reach, n1, qs), "g_reach_qx": pair(reach, qs, n1),
        "g_hops_xq": pair(hops, n1, qs), "g_hops_qx": pair(hops, qs, n1),
        "g_plag_xq": plag_xq, "g_plag_qx": plag_qx,
        "g_plag_xq_rank": _rank(plag_xq), "g_plag_qx_rank": _rank(plag_qx),
        "g_x_in_rank": _rank(one(g.n_in, n1)), "g_x_out_rank": _rank(one(g.n_out, n1)),
        "g_edge_12": pair(edge, n1, n2), "g_edge_21": pair(edge, n2, n1),
        "g_edge_13": pair(edge, n1, n3), "g_edge_32": pair(edge, n3, n2),
        "g_edge_23": pair(edge, n2, n3),
        "g_reach_12": pair(reach, n1, n2), "g_reach_21": pair(reach, n2, n1),
        "g_reach_13": pair(reach, n1, n3), "g_reach_32": pair(reach, n3, n2),
        "g_plag_12": pair(dist, n1, n2), "g_hops_12": pair(hops, n1, n2),
        "g_n2_in": one(g.n_in, n2), "g_n2_out": one(g.n_out, n2),
        "g_n3_in": one(g.n_in, n3), "g_n3_out": one(g.n_out, n3),
        "g_named_sources": np.array(sources_named, dtype=float),
        "g_num_minus_lag_xq": num - lag_xq, "g_num_minus_lag_qx": num - lag_qx,
        "g_num_minus_plag_xq": num - plag_xq, "g_num_minus_plag_qx": num - plag_qx,
    }
    for name, pick in _graph_rules(v, p, g).items():
        f[f"g_rule_{name}"] = _flag(np.arange(k) == pick)
    return f


def _series_features(v: View, p: _Parsed, s: _Series) -> dict[str, np.ndarray]:
    k = len(v.options)
    n1, n2, n3 = _nth(p, 0, s.n), _nth(p, 1, s.n), _nth(p, 2, s.n)
    q = _valid(p.q, s.n)
    on = s.onset
    moved = np.isfinite(on)
    first = float(np.nanmin(on)) if moved.any() else np.nan
    earliest = on == first  # False for NaN
    step0 = _first(p.steps)
    q_on = float(on[q]) if q is not None else np.nan
    num = np.array([_first(ns) for ns in p.numbers])

    def one(t: np.ndarray, a: list[int | None]) -> np.ndarray:
        return _node_values(t, a)

    def scalar(value: float) -> np.ndarray:
        return np.full(k, value)

    on1, on2, on3 = one(on, n1), one(on, n2), one(on, n3)
    named = [[x for x in ns if 0 <= x < s.n] for ns in p.nodes]
    n_early = np.array([sum(bool(earliest[x]) for x in ns) if ns else np.nan for ns in named])
    n_moved = np.array([sum(bool(moved[x]) for x in ns) if ns else np.nan for ns in named])
    n_named = np.array([len(ns) if ns else np.nan for ns in named])
    with np.errstate(invalid="ignore"):
        monotone = np.where(np.isfinite(on3), (on1 < on3) & (on3 < on2), on1 < on2)
        monotone = np.where(np.isfinite(on1) & np.isfinite(on2), monotone, np.nan)
    xc, gr, wv = one(s.xc_lead, n1), one(s.granger, n1), one(s.wave, n1)
    f = {
        "s_length": scalar(v.series.shape[1] if v.series is not None else np.nan),
        "s_nodes": scalar(s.n), "s_departing": scalar(moved.sum()),
        "s_first_onset": scalar(first), "s_n_earliest": scalar(earliest.sum()),
        "s_q_onset": scalar(q_on), "s_q_departs": scalar(one(moved, [q])[0]),
        "s_q_peak": scalar(one(s.dep.peak, [q])[0]),
        "s_q_earliest": scalar(one(earliest, [q])[0]),
        "s_q_onset_minus_step": scalar(q_on - step0),
        "s_x_onset": on1, "s_n2_onset": on2, "s_n3_onset": on3,
        "s_x_departs": one(moved, n1), "s_x_peak": one(s.dep.peak, n1),
        "s_x_sign": one(s.dep.sign, n1), "s_x_earliest": one(earliest, n1),
        "s_x_onset_minus_step": on1 - step0, "s_x_onset_minus_q": on1 - q_on,
        "s_x_onset_rank": _rank(on1),
        "s_xcorr_lead": xc, "s_xcorr_lead_lag": one(s.xc_lead_lag, n1),
        "s_xcorr_follow": one(s.xc_follow, n1),
        "s_xcorr_follow_lag": one(s.xc_follow_lag, n1),
        "s_granger": gr, "s_granger_lag": one(s.granger_lag, n1),
        "s_waveform": wv, "s_waveform_lag": one(s.wave_lag, n1),
        "s_xcorr_rank": _rank(xc), "s_granger_rank": _rank(gr), "s_waveform_rank": _rank(wv),
        "s_num_minus_q_delay": num - (q_on - on1), "s_num_minus_x_delay": num - (on1 - q_on),
        "s_num_minus_step_delay": num - (on1 - step0),
        "s_order_21": np.sign(on2 - on1), "s_order_31": np.sign(on3 - on1),
        "s_order_23": np.sign(on2 - on3), "s_order_monotone": monotone.astype(float),
        "s_named_earliest": n_early, "s_named_departing": n_moved,
        "s_earliest_not_named": earliest.sum() - n_early,
        "s_named_all_earliest": np.where(np.isfinite(n_early), _flag(n_early == n_named),
                                         np.nan),
    }
    # The question node among all the others, not only those the options name (an
    # option may name none, as entity's role texts do): does some node lead it, follow
    # it, move its waveform; how many nodes depart shortly before and after it.
    others = [j for j in range(s.n) if j != q] if q is not None else []
    for name, arr in (("lead", s.xc_lead), ("follow", s.xc_follow), ("granger", s.granger),
                      ("wave", s.wave)):
        vals = np.sort(arr[others][np.isfinite(arr[others])])[::-1] if others else []
        for r in range(3):
            f[f"s_q_top{r + 1}_{name}"] = scalar(vals[r] if len(vals) > r else np.nan)
    near = on[others] - q_on if others else np.array([])
    with np.errstate(invalid="ignore"):
        f["s_q_departed_before"] = scalar(np.sum((near < 0) & (near >= -MAX_LAG)))
        f["s_q_departing_after"] = scalar(np.sum((near > 0) & (near <= MAX_LAG)))
        # per option: departures that could have moved its node (1..MAX_LAG steps before)
        gap = on1[:, None] - on[None, :]
        f["s_x_explainers"] = np.where(np.isfinite(on1),
                                       np.sum((gap >= 1) & (gap <= MAX_LAG), axis=1), np.nan)
    for name, pick in _series_rules(v, p, s).items():
        f[f"s_rule_{name}"] = _flag(np.arange(k) == pick)
    return f


def _feature_dict(v: View) -> dict[str, np.ndarray]:
    p = _parse(v)
    f = _text_features(v, p)
    f.update({f"t_rule_{name}": _flag(np.arange(len(v.options)) == pick)
              for name, pick in _text_rules(v).items()})
    if v.kind == "graph":
        f.update(_graph_features(v, p, _graph(v)))
    elif v.kind == "series":
        f.update(_series_features(v, p, _series(v, p.q)))
    return f


def features(v: View) -> np.ndarray:
    """Per-option features of a view, (n_options, n_features); NaN where not defined.

    The shared text features come first, then the view's own; the option's position is
    not a feature. Column names: `feature_names`."""
    return np.column_stack(list(_feature_dict(v).values())).astype(float)


def feature_names(v: View) -> list[str]:
    """Names of `features(v)`'s columns."""
    return list(_feature_dict(v))


def learned_baselines(train: Sequence[Sample], test: Sequence[Sample]) -> list[BaselineResult]:
    """Accuracy on `test` of one per-option classifier per view, trained on `train`.

    Each view's model (scikit-learn's HistGradientBoostingClassifier, fixed seed) rates
    every option "gold or not" from the view's features; a question is answered with the
    option rated highest. The models run on one thread: on a few thousand rows that is
    fastest, and OpenMP threads competing for shared cores slow fitting down 10-100x."""
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from threadpoolctl import threadpool_limits  # a dependency of scikit-learn
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("scikit-learn is needed for the learned baselines: "
                          "pip install -e '.[dev]'") from e
    if not train or not test:
        raise ValueError("learned_baselines needs train and test samples")
    y_train = np.concatenate([_flag(np.arange(len(s.options)) == gold_index(s)) for s in train])
    gold = np.array([gold_index(s) for s in test])
    out = []
    for kind in VIEWS:
        x_train = np.vstack([features(view_of(s, kind)) for s in train])
        blocks = [features(view_of(s, kind)) for s in test]
        model = HistGradientBoostingClassifier(
            max_iter=200, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=20,
            l2_regularization=1.0, random_state=RANDOM_STATE)
        # Columns never defined in training carry nothing (and trip sklearn's binning).
        keep = ~np.isnan(x_train).all(axis=0)
        with threadpool_limits(limits=1, user_api="openmp"):
            model.fit(x_train[:, keep], y_train)
            score = model.predict_proba(np.vstack(blocks)[:, keep])[:, 1]
        bounds = np.cumsum([0] + [len(b) for b in blocks])
        picks = np.array([int(np.argmax(score[a:b])) for a, b in zip(bounds[:-1], bounds[1:],
                                                                      strict=True)])
        out.append(BaselineResult(kind, "learned", float(np.mean(picks == gold))))
    return out


def attack(train: Sequence[Sample], test: Sequence[Sample]) -> dict[str, float]:
    """Every baseline's test accuracy as {"view:name": acc}, plus {view: best of the view}.

    Rules run on `test` only; the learned baselines train on `train`."""
    results = rule_baselines(test) + learned_baselines(train, test)
    out: dict[str, float] = {}
    for kind in VIEWS:
        out[kind] = max(r.accuracy for r in results if r.view == kind)
    out.update({r.key: r.accuracy for r in results})
    return out


def chance(samples: Sequence[Sample]) -> float:
    """Expected accuracy of a uniform guess: the mean of 1 / len(options)."""
    return float(np.mean([1 / len(s.options) for s in samples]))


__all__ = ["VIEWS", "BaselineResult", "View", "attack", "chance", "feature_names", "features",
           "gold_index", "learned_baselines", "option_nodes", "option_numbers",
           "question_nodes", "question_steps", "rule_baselines", "rule_choices",
           "strip_context", "view_of"]
