"""Learned baselines: a per-option gradient-boosted ranker per view, over generic
features of what the view shows; and `attack`, every baseline at once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from envs.baselines.rules import (
    _feasibility,
    _Graph,
    _graph,
    _graph_rules,
    _magnitude,
    _Series,
    _series,
    _series_rules,
    _text_rules,
    _words,
    rule_baselines,
)
from envs.baselines.views import (
    _TOKEN,
    HASH_BUCKETS,
    MAX_LAG,
    RANDOM_STATE,
    VIEWS,
    BaselineResult,
    View,
    _bucket,
    _node_values,
    _pair_values,
    _parse,
    _Parsed,
    _template,
    _valid,
    gold_index,
    view_of,
)
from envs.sample import Sample

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
    # feasibility: what the window, the series' length and each route's lag allow
    fz = _feasibility(v, p, g)
    with np.errstate(invalid="ignore"):
        feasible = np.where(np.isfinite(fz.slack), _flag(fz.feasible), np.nan)
    f.update({
        "g_length": scalar(float(v.length)), "g_room": scalar(fz.room),
        "g_route": fz.route, "g_route_rank": _rank(fz.route),
        "g_route_minus_min": fz.route - np.nanmin(fz.route) if np.isfinite(fz.route).any()
        else fz.route,
        "g_implied": fz.implied, "g_slack": fz.slack, "g_feasible": feasible,
        "g_n_feasible": scalar(float(np.nansum(feasible))),
        "g_route_rank_feasible": _rank(fz.possible_routes()),
        "g_route_over_room": fz.route / max(fz.room, 1.0),
    })
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
    # magnitude: sizes, ratios and rise times of the departures along each option
    mg = _magnitude(p, s)
    q2 = _valid(p.q_nodes[1], s.n) if len(p.q_nodes) > 1 else None
    peak_q, peak_q2 = one(s.dep.peak, [q])[0], one(s.dep.peak, [q2])[0]
    rise = np.where(np.isfinite(on), s.dep.peak_at - on, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        f.update({
            "s_q2_peak": scalar(peak_q2), "s_q_ratio": scalar(np.log(peak_q2 / peak_q)),
            "s_q_rise": scalar(one(rise, [q])[0]), "s_q2_rise": scalar(one(rise, [q2])[0]),
            "s_x_peak_over_q": np.log(mg.peak / peak_q),
            "s_q2_over_x_peak": np.log(peak_q2 / mg.peak),
            "s_peak_rank": _rank(mg.peak),
            "s_last_hop": np.log(mg.last_hop), "s_last_hop_rank": _rank(mg.last_hop),
            "s_x_rise": mg.rise, "s_last_rise": mg.last_rise, "s_rise_rank": _rank(mg.rise),
        })
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
    out = np.column_stack(list(_feature_dict(v).values())).astype(float)
    out[np.isinf(out)] = np.nan  # a ratio or log of a zero peak: undefined, not infinite
    return out


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


