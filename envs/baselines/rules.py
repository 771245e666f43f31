"""Rule baselines: one fixed heuristic per solver, on the graph, series or text view."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from envs.baselines.views import (
    _WORD,
    MAX_LAG,
    VIEWS,
    BaselineResult,
    View,
    _argbest,
    _node_values,
    _pair_values,
    _parse,
    _Parsed,
    _valid,
    gold_index,
    view_of,
)
from envs.detect import Departures, baseline_len, departures
from envs.sample import Sample

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
    fz = _feasibility(v, p, g)
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
        "feasible_longest": _argbest(fz.possible_routes(), "max"),
        "feasible_shortest": _argbest(fz.possible_routes(), "min"),
    }


def _route_lags(p: _Parsed, g: _Graph) -> np.ndarray:
    """Per option, the total lag of the route it names: the lags of the links between its
    consecutive node mentions ("Node a->Node i->Node b"); for an option that names no link,
    the least total lag from its first node to the question's node; NaN when neither is."""
    q = _valid(p.q, g.n)
    out = []
    for named in p.nodes:
        ns = [x for x in named if 0 <= x < g.n]
        links = [g.lag[u, w] for u, w in zip(ns, ns[1:], strict=False)
                 if u != w and np.isfinite(g.lag[u, w])]
        if links:
            out.append(float(sum(links)))
        elif ns and q is not None and np.isfinite(g.dist[ns[0], q]):
            out.append(float(g.dist[ns[0], q]))
        else:
            out.append(np.nan)
    return np.array(out)


@dataclass(frozen=True)
class _Feasibility:
    """What the stated window, the series' length and each option's route lag allow.

    A disturbance that arrives in the question's window over a route of total lag L left
    its source at about (window middle - L); events never start inside the baseline
    window, so a negative `slack` makes the option impossible, and `room` is what is left
    of the series after the window."""

    route: np.ndarray  # per option: total lag of its route (NaN: none)
    implied: np.ndarray  # per option: the departure the route implies
    slack: np.ndarray  # implied - the first step after the baseline window
    room: float  # steps after the question's last step

    @property
    def feasible(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return self.slack >= 0

    def possible_routes(self) -> np.ndarray:
        """The route lags of the feasible options (all of them when none is)."""
        ok = self.feasible
        return np.where(ok, self.route, np.nan) if ok.any() else self.route


def _feasibility(v: View, p: _Parsed, g: _Graph) -> _Feasibility:
    assert v.length is not None, "not a graph view"
    route = _route_lags(p, g)
    mid = (p.steps[0] + p.steps[-1]) / 2 if p.steps else np.nan
    implied = mid - route
    room = v.length - 1 - p.steps[-1] if p.steps else np.nan
    return _Feasibility(route, implied, implied - baseline_len(v.length), float(room))


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


@dataclass(frozen=True)
class _Magnitude:
    """Sizes and shapes of the departures the options point at: a disturbance shrinks at
    every link it crosses and rounds off, so sizes and rise times may tell a route's
    number of links without the graph."""

    peak: np.ndarray  # per option: peak relative departure of its first node
    last_hop: np.ndarray  # per option: peak of its last node / peak of the node before
    rise: np.ndarray  # per option: steps from its first node's onset to its peak
    last_rise: np.ndarray  # the same for its last node


def _magnitude(p: _Parsed, s: _Series) -> _Magnitude:
    peak, rise = s.dep.peak, np.where(np.isfinite(s.onset), s.dep.peak_at - s.onset, np.nan)
    firsts = [_valid(x, s.n) for x in p.firsts()]
    lasts, befores = [], []
    for named in p.nodes:
        ns = [x for x in named if 0 <= x < s.n]
        lasts.append(ns[-1] if ns else None)
        befores.append(next((x for x in reversed(ns) if x != ns[-1]), None) if ns else None)
    with np.errstate(invalid="ignore", divide="ignore"):
        hop = _node_values(peak, lasts) / _node_values(peak, befores)
    return _Magnitude(_node_values(peak, firsts), hop, _node_values(rise, firsts),
                      _node_values(rise, lasts))


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
    mg = _magnitude(p, s)
    return {
        "earliest": _argbest(on, "min"),
        "latest_before": _argbest(before, "max"),
        "closest_before": _argbest(closest, "min"),
        "xcorr": _argbest(_node_values(s.xc_lead, xs), "max"),
        "xcorr_lag_match": _argbest(np.abs(arrival - ref), "min"),
        "granger": _argbest(_node_values(s.granger, xs), "max"),
        "waveform": _argbest(_node_values(s.wave, xs), "max"),
        "largest_peak": _argbest(mg.peak, "max"),
        "smallest_peak": _argbest(mg.peak, "min"),
        "last_hop_strongest": _argbest(mg.last_hop, "max"),
        "last_hop_weakest": _argbest(mg.last_hop, "min"),
        "fastest_rise": _argbest(mg.rise, "min"),
        "slowest_rise": _argbest(mg.rise, "max"),
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


