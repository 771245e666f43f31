"""Shortcut baselines: generic parsing, each rule on a hand-built question, learned
baselines that find a planted shortcut (and nothing when there is none), and views that
really hide the input they leave out."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

from envs.baselines import (
    GRAPH_RULES,
    SERIES_RULES,
    TEXT_RULES,
    VIEWS,
    BaselineResult,
    attack,
    chance,
    feature_names,
    features,
    learned_baselines,
    option_nodes,
    option_numbers,
    question_nodes,
    question_steps,
    rule_baselines,
    rule_choices,
    strip_context,
    view_of,
)
from envs.detect import departures
from envs.sample import Sample
from envs.stream import TaskMix, generate

CONTEXT = ("The network measures PM2.5 concentration (ug/m3) at 10 sites; "
           "1 time step = 15 minutes.")


def make(question: str, options: list[str], answer: str = "A",
         edges: list[tuple[int, int, int]] | None = None, series: np.ndarray | None = None,
         n: int = 6, index: int = 0) -> Sample:
    """A hand-built multiple-choice sample (flat noisy series unless given)."""
    if series is None:
        series = 100 + np.random.default_rng(index).normal(0, 0.3, (n, 60))
    return Sample(id=f"t-{index}", task="toy", kind="choice", seed=0, index=index,
                  series=series, edges=list(edges or []), question=question,
                  options=list(options), answer=answer, rationale="")


# ---- parsing -----------------------------------------------------------------------

def test_strip_context_drops_only_the_time_step_sentence() -> None:
    q = f"{CONTEXT} A shock hits Node 3 at step 61. Which node is next?"
    assert strip_context(q) == "A shock hits Node 3 at step 61. Which node is next?"
    assert strip_context("Which node is next?") == "Which node is next?"
    assert strip_context("The network has 4 sites; 1 time step = 1.5 hours. Go.") == "Go."


def test_question_nodes_and_steps() -> None:
    q = (f"{CONTEXT} Which statement best describes the relationship between Node 4 and "
         "Node 12 during time steps 40-52?")
    assert question_nodes(q) == [4, 12]
    assert question_steps(q) == [40, 52]  # not 10 sites, 15 minutes, 2.5 or m3
    assert question_nodes(f"{CONTEXT} Which scenario fits?") == []
    assert question_steps(f"{CONTEXT} Which scenario fits?") == []
    assert question_steps("An anomaly at Node 3 from step 7 (peak 1.5 above) lasts 9 steps.") \
        == [7, 9]


def test_option_nodes_and_numbers() -> None:
    o = "The signal travels from Node 4 to Node 1 through Node 10."
    assert option_nodes(o) == [4, 1, 10] and option_numbers(o) == []
    assert option_nodes("Node 2, after about 3 steps") == [2]
    assert option_numbers("Node 2, after about 3 steps") == [3]
    assert option_numbers("Node 5 rises 12% within 0.5 hours, 4 steps later") == [12, 4]
    assert option_nodes("Base flow with no flood wave.") == []


# ---- rule baselines ----------------------------------------------------------------

# q = Node 3. Option A = Node 2, B = Node 0, C = Node 4, D = Node 5.
# 0 -> 3 (lag 4): B is q's only ancestor and parent; 3 -> 4 (lag 2), 4 -> 5 (lag 1):
# C is q's child, C and D descendants; 2 -> 5 (lag 1).
GRAPH = [(0, 3, 4), (3, 4, 2), (4, 5, 1), (2, 5, 1)]
GRAPH_EXPECT = {
    "ancestor": 1, "parent": 1, "child": 2, "descendant": 2, "shortest_lag": 2,
    "longest_lag": 1, "max_in_degree": 3, "min_in_degree": 0, "max_out_degree": 0,
    "min_out_degree": 3, "source": 0,
    # the window's step 30 less Node 0's route lag 4 is after the baseline window (18 of
    # 60 steps); no other option has a route to Node 3
    "feasible_longest": 1, "feasible_shortest": 1,
}


def test_graph_rules_on_a_hand_built_graph() -> None:
    s = make(f"{CONTEXT} An anomaly is seen at Node 3 from step 30. Where did it start?",
             ["Node 2", "Node 0", "Node 4", "Node 5"], edges=GRAPH)
    picks = rule_choices(view_of(s, "graph"))
    assert set(picks) == set(GRAPH_RULES)
    assert picks == GRAPH_EXPECT


def test_graph_rules_skip_nodeless_options_and_default_to_the_first() -> None:
    s = make("Which node feeds Node 3?", ["none of them", "Node 0"], edges=GRAPH)
    assert rule_choices(view_of(s, "graph"))["ancestor"] == 1
    s = make("Which node feeds Node 3?", ["Node 4", "Node 5"], edges=GRAPH)
    assert rule_choices(view_of(s, "graph"))["ancestor"] == 0  # none qualifies
    s = make("Which node is a hub?", ["Node 0", "Node 4"], edges=GRAPH)  # no question node
    picks = rule_choices(view_of(s, "graph"))
    assert picks["child"] == 0 and picks["descendant"] == 0
    assert picks["max_in_degree"] == 1  # degree rules need no question node


def _driven_series() -> np.ndarray:
    """Node 0 departs at 25, node 1 at 30, node 2 at 40; node 3 copies node 1, 3 steps later."""
    rng = np.random.default_rng(0)
    t_len = 60
    x = 100 + rng.normal(0, 0.3, (4, t_len))
    x[0, 25:36] += 30
    x[2, 40:51] += 30
    x[1, 30:] += 25 + np.cumsum(rng.normal(0, 4, t_len - 30))
    x[3, 3:] = 100 + (x[1, :-3] - 100) + rng.normal(0, 0.3, t_len - 3)
    return x


def test_series_rules_on_hand_built_series() -> None:
    x = _driven_series()
    assert departures(x).onset.tolist() == [25, 30, 40, 33]
    expect = {"earliest": 2, "latest_before": 1, "closest_before": 1, "xcorr": 1,
              "xcorr_lag_match": 1, "granger": 1, "waveform": 1}
    for question in (f"{CONTEXT} An anomaly is seen at Node 3 from step 33. Which node "
                     "started it?", "Which node drives Node 3?"):  # step, or q's onset
        s = make(question, ["Node 2", "Node 1", "Node 0"], series=x, n=4)
        picks = rule_choices(view_of(s, "series"))
        assert set(picks) == set(SERIES_RULES)
        assert {k: picks[k] for k in expect} == expect, question  # magnitude: below


def test_series_rules_closest_before_falls_back_to_after() -> None:
    x = _driven_series()
    s = make("A shock hits Node 0 at step 25. Which node is next?", ["Node 2", "Node 1"],
             series=x, n=4)
    picks = rule_choices(view_of(s, "series"))
    assert picks["latest_before"] == 0  # nothing before the step: default
    assert picks["closest_before"] == 1  # Node 1 at 30 is the closest after


ROUTES = ["Directly, over the link Node 0->Node 3.", "Through Node 1 (Node 0->Node 1->Node 3).",
          "Through Node 2 (Node 0->Node 2->Node 3)."]
ROUTE_QUESTION = (f"{CONTEXT} Which route explains the relationship between Node 0 and "
                  "Node 3 during time steps 31-35? Node 0's disturbance reaches Node 3:")


def test_feasibility_rules_rule_out_what_the_window_makes_impossible() -> None:
    # Route totals 5, 2 + 10 = 12 and 2 + 20 = 22. Arriving around step 33, they imply
    # departures at 28, 21 and 11; the baseline window is steps 0-17 of 60, so the third
    # route is impossible: the longest possible route is B, the shortest A.
    edges = [(0, 3, 5), (0, 1, 2), (1, 3, 10), (0, 2, 2), (2, 3, 20)]
    s = make(ROUTE_QUESTION, ROUTES, edges=edges, n=4)
    picks = rule_choices(view_of(s, "graph"))
    assert (picks["feasible_longest"], picks["feasible_shortest"]) == (1, 0)
    names = feature_names(view_of(s, "graph"))
    row = dict(zip(names, features(view_of(s, "graph")).T, strict=True))
    assert row["g_route"].tolist() == [5, 12, 22]
    assert row["g_slack"].tolist() == [10, 3, -7]
    assert row["g_feasible"].tolist() == [1, 1, 0]


def test_magnitude_rules_read_sizes_ratios_and_rise_times() -> None:
    x = 100 + np.random.default_rng(0).normal(0, 0.05, (4, 60))
    x[0, 25:35] += [15, 25, 35, 45, 50, 40, 30, 20, 15, 5]  # peak 0.5 at 29: rises 4 steps
    x[1, 27:35] += [40, 30, 25, 20, 15, 12, 5, 2]  # peak 0.4 at its onset
    x[2, 27:40] += [12, 13, 14, 15, 16, 17, 18, 19, 20, 15, 12, 5, 2]  # 0.2, rises 8 steps
    x[3, 33:42] += [15, 25, 30, 25, 15, 12, 5, 2, 1]  # peak 0.3
    s = make(ROUTE_QUESTION, ROUTES, series=x, n=4)
    picks = rule_choices(view_of(s, "series"))
    # first nodes 0, 1, 2 peak at 0.5, 0.4, 0.2; Node 3's peak over the node before it on
    # each route: 0.3 / 0.5, 0.3 / 0.4, 0.3 / 0.2
    assert {k: picks[k] for k in ("largest_peak", "smallest_peak", "last_hop_strongest",
                                  "last_hop_weakest", "fastest_rise", "slowest_rise")} == {
        "largest_peak": 0, "smallest_peak": 2, "last_hop_strongest": 2,
        "last_hop_weakest": 0, "fastest_rise": 1, "slowest_rise": 2}
    row = dict(zip(feature_names(view_of(s, "series")), features(view_of(s, "series")).T,
                   strict=True))
    assert np.exp(row["s_last_hop"]) == pytest.approx([0.6, 0.75, 1.5], rel=0.01)
    assert row["s_x_rise"].tolist() == [4, 0, 8]
    assert np.exp(row["s_q_ratio"][0]) == pytest.approx(0.6, rel=0.01)  # Node 3 over Node 0


def test_text_rules_and_same_letter() -> None:
    s = make("Which pipe carries the flood wave downstream?",
             ["a short one", "the longest option of all here", "flood wave pipe"])
    assert rule_choices(view_of(s, "text")) == {"longest": 1, "most_similar": 2}
    samples = [make("Q?", ["x", "y", "z"], answer=a, index=i)
               for i, a in enumerate("ABBBC")]
    res = {r.key: r.accuracy for r in rule_baselines(samples)}
    assert res["text:same_letter"] == pytest.approx(0.6)
    assert set(res) == ({f"graph:{r}" for r in GRAPH_RULES} | {f"series:{r}" for r in
                        SERIES_RULES} | {f"text:{r}" for r in TEXT_RULES})
    assert chance(samples) == pytest.approx(1 / 3)


# ---- learned baselines -------------------------------------------------------------

def _toy(n: int, seed: int, plant: str | None) -> list[Sample]:
    """Random 4-option questions about Node q; the gold is planted in one view or random.

    plant: "text" (gold is the longest option), "graph" (gold is q's only parent),
    "series" (gold departs first), or None (gold independent of everything)."""
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma"]
    out = []
    for i in range(n):
        nodes = [int(x) for x in rng.permutation(8)]
        q, opts = nodes[0], nodes[1:5]
        gold = int(rng.integers(4))
        edges = {(int(u), int(v)) for u, v in rng.integers(0, 8, (8, 2)) if u < v}
        edges = {(u, v) for u, v in edges if v != q}  # q's parents are set below
        parents = [opts[gold]] if plant == "graph" else [int(rng.choice(opts))]
        edges |= {(p, q) for p in parents}
        x = 100 + rng.normal(0, 0.3, (8, 60))
        early = opts[gold] if plant == "series" else int(rng.choice(opts))
        for k in opts:
            t0 = 22 if k == early else int(rng.integers(26, 40))
            x[k, t0:t0 + 10] += 30
        lengths = rng.permutation([1, 2, 3, 4])
        if plant == "text":
            lengths = np.where(np.arange(4) == gold, 5, lengths)
        texts = [f"Node {k} " + " ".join(rng.choice(words, int(m))) for k, m in
                 zip(opts, lengths, strict=True)]
        out.append(make(f"{CONTEXT} Which node explains Node {q} at step "
                        f"{int(rng.integers(30, 50))}?", texts, "ABCD"[gold],
                        sorted((u, v, int(rng.integers(1, 4))) for u, v in edges),
                        x, n=8, index=i))
    return out


@pytest.fixture(scope="module")
def learned() -> dict[str | None, dict[str, float]]:
    res = {}
    for plant in ("text", "graph", "series", None):
        rows = learned_baselines(_toy(300, 1, plant), _toy(200, 2, plant))
        res[plant] = {r.view: r.accuracy for r in rows}
    return res


def test_learned_baselines_find_a_planted_shortcut(learned) -> None:
    # text features are shared by every view, so a text shortcut shows in all three
    assert min(learned["text"].values()) >= 0.9
    assert learned["graph"]["graph"] >= 0.9
    assert learned["series"]["series"] >= 0.9


def test_learned_baselines_cannot_see_what_a_view_hides(learned) -> None:
    assert learned["graph"]["series"] < 0.4 and learned["graph"]["text"] < 0.4
    assert learned["series"]["graph"] < 0.4 and learned["series"]["text"] < 0.4


def test_learned_baselines_stay_near_chance_without_a_shortcut(learned) -> None:
    assert max(learned[None].values()) < 0.4  # chance is 0.25


def test_learned_baselines_explain_a_missing_scikit_learn(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.ensemble", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[dev\]'"):
        learned_baselines(_toy(4, 1, None), _toy(4, 2, None))


# ---- views -------------------------------------------------------------------------

def test_views_hold_only_their_inputs() -> None:
    s = _toy(1, 3, None)[0]
    g, se, t = (view_of(s, k) for k in VIEWS)
    assert g.series is None and g.edges and g.n_nodes == 8
    assert se.edges is None and se.n_nodes is None and se.series is not None
    assert t.series is None and t.edges is None and t.n_nodes is None
    with pytest.raises(ValueError, match="unknown view"):
        view_of(s, "prompt")


def test_features_ignore_the_hidden_input() -> None:
    a = _toy(1, 4, None)[0]
    other = _toy(1, 5, None)[0]
    edges_only = dataclasses.replace(a, edges=other.edges)
    series_only = dataclasses.replace(a, series=other.series)
    f = {k: features(view_of(a, k)) for k in VIEWS}

    def same(x: np.ndarray, y: np.ndarray) -> bool:
        return np.array_equal(x, y, equal_nan=True)

    assert same(features(view_of(edges_only, "series")), f["series"])
    assert same(features(view_of(series_only, "graph")), f["graph"])
    for b in (edges_only, series_only):
        assert same(features(view_of(b, "text")), f["text"])
    # ... while the input a view does read changes its features
    assert not same(features(view_of(edges_only, "graph")), f["graph"])
    assert not same(features(view_of(series_only, "series")), f["series"])
    for k in VIEWS:
        names = feature_names(view_of(a, k))
        assert len(names) == f[k].shape[1] == len(set(names))
        assert f[k].shape[0] == len(a.options)


# ---- on generated samples ----------------------------------------------------------

def test_attack_on_generated_samples() -> None:
    mix = TaskMix.of(["root_cause"])
    res = attack(generate(1, range(80), mix), generate(2, range(60), mix))
    for k in VIEWS:
        rows = [v for key, v in res.items() if key.startswith(f"{k}:")]
        assert f"{k}:learned" in res and res[k] == max(rows)
    assert all(0.0 <= v <= 1.0 for v in res.values())
    assert isinstance(rule_baselines(generate(3, range(5), mix))[0], BaselineResult)
