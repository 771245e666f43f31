"""Questions from clients: both shapes build the exact training prompt; every bad field is
refused with its name; completions are read as training scored them."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from envs import evalsuite
from envs.prompt import build_prompt
from envs.sample import TASKS
from rlsys.config import RequestLimits
from rlsys.openai_api import BadRequest
from rlsys.reason import from_sample, parse_question, read

FIXTURES = Path(__file__).parents[1] / "rewards" / "data" / "streasoner_st_test_cases.jsonl"


def _rows() -> list[dict]:
    return [json.loads(x) for x in FIXTURES.read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def samples() -> list:
    return [it.sample for it in evalsuite.items(1)]


def _ours(s) -> dict:
    req = {"series": s.series.tolist(), "edges": [list(e) for e in s.edges],
           "question": s.question}
    if s.options:
        req["options"] = s.options
    if s.kind == "sequence":
        req["horizon"] = s.horizon
    return req


def test_both_shapes_build_the_training_prompt_of_every_task(samples: list) -> None:
    for s in samples:
        q = parse_question(_ours(s))
        assert q.prompt(s.precision) == s.prompt(), s.id
        assert q.prompt(s.precision, with_graph=False) == s.prompt_no_graph, s.id
        st = parse_question(s.to_streasoner())
        assert st.prompt(s.precision) == s.prompt(), s.id
        assert st.kind == s.kind and st.horizon == s.horizon and st.options == s.options


def _as_a_client_sends_it(s) -> dict:
    """A sample as the JSON a client sends: how `from_sample` built its question before it
    built it directly."""
    return {**_ours(s), "task": s.task,
            "answer": json.loads(s.answer) if s.kind == "sequence" else s.answer}


def test_from_sample_is_the_question_a_client_sending_the_sample_gets(samples: list) -> None:
    assert {s.task for s in samples} == set(TASKS)
    for s in samples:
        q = from_sample(s)
        sent = parse_question(_as_a_client_sends_it(s), RequestLimits(
            max_nodes=10_000, max_steps=100_000, max_horizon=100_000))
        sent.node_names = list(s.meta.get("node_names") or []) or None
        assert q.series.dtype == sent.series.dtype and np.array_equal(q.series, sent.series)
        for f in fields(q):
            if f.name != "series":
                assert getattr(q, f.name) == getattr(sent, f.name), (s.id, f.name)
        assert q.node_names and len(q.node_names) == s.series.shape[0], s.id
        assert q.prompt(s.precision) == s.prompt(), s.id
        assert q.prompt(s.precision, with_graph=False) == s.prompt_no_graph, s.id
        assert q.target() == sent.target(), s.id


def test_the_st_test_fixture_rows_are_read_with_their_gold_answers() -> None:
    kinds = []
    for row in _rows():
        q = parse_question(row)
        kinds.append((row["category"], q.kind, q.gold))
        assert q.series.shape == (len(row["timeseries"]), len(row["timeseries"][0]))
        assert np.allclose(q.series, np.asarray(row["timeseries"]))
        expect = build_prompt(np.round(q.series, 2), q.edges, q.full_question, precision=2)
        assert q.prompt(2) == expect
        assert "<ts><ts/>" not in q.prompt(2) and str(row["timeseries"][0][0]) in q.prompt(2)
    assert kinds == [("etiological", "choice", "D"), ("entity", "choice", "C"),
                     ("correlation", "choice", "D"),
                     ("forecasting", "sequence", "[19.86, 19.97, 20.05]")]
    assert parse_question(_rows()[3]).horizon == 3


def test_ours_accepts_lags_objects_and_a_graph_free_question() -> None:
    base = {"series": [[1.0, 2, 3], [2.0, 3, 4], [0, 0, 1]], "question": "Which?",
            "options": ["x", "y"]}
    q = parse_question({**base, "edges": [[0, 1, 2], {"from": 1, "to": 2}]})
    assert q.edges == [(0, 1, 2), (1, 2, None)] and q.kind == "choice"
    # training prompts show the lags they know, and read them back
    assert "Graph Structure: Node 0->Node 1 (lag 2); Node 1->Node 2," in q.prompt(2)
    again = parse_question({"input": q.prompt(2)})
    assert again.edges == [(0, 1, 2), (1, 2, None)]
    assert "Graph Structure" not in parse_question({**base, "edges": []}).prompt(2)
    assert "Graph Structure" not in parse_question(
        {**base, "edges": [[0, 1]], "with_graph": False}).prompt(2)
    f = parse_question({"series": base["series"], "question": "Next?", "horizon": 2,
                        "answer": [1, 2.5]})
    assert (f.kind, f.horizon, f.gold) == ("sequence", 2, "[1.0, 2.5]")


GOOD = {"series": [[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [3.0, 4.0, 5.0]],
        "edges": [[0, 1], [1, 2, 1]], "question": "Which node leads?",
        "options": ["Node 0", "Node 1", "Node 2"]}


def _set(path: str, value):
    def change(req: dict) -> dict:
        node, keys = req, path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = keys[-1]
        if value is KeyError:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
        return req
    return change


BAD = [
    (_set("series", []), "series: a non-empty list"),
    (_set("series", KeyError), "series: a non-empty list"),
    (_set("series.1", [2.0, 3.0]), "node 0 has 3, node 1 has 2"),
    (_set("series.2.1", float("nan")), "series[2][1]: not a finite number"),
    (_set("series.0.2", float("inf")), "series[0][2]: not a finite number"),
    (_set("series.0.0", "12"), "series[0][0]: a number"),
    (_set("series.0.0", True), "series[0][0]: a number"),
    (_set("series.0.0", 10**400), "series[0][0]: larger than 1e+12 in magnitude"),
    (_set("series.0.1", -3e15), "series[0][1]: larger than 1e+12 in magnitude"),
    (_set("series.1", "abc"), "series[1]: a non-empty list of numbers"),
    (_set("edges.0", [0, 7]), "edges[0].to: node 7 is not one of the 3 nodes (0-2)"),
    (_set("edges.0", [-1, 2]), "edges[0].from: node -1 is not one of the 3 nodes"),
    (_set("edges.0", [1, 1]), "edges[0]: an edge from node 1 to itself"),
    (_set("edges.1", [1, 2, 0]), "edges[1].lag: an integer number of steps from 1 to the "
                                 "series' length 3, got 0"),
    (_set("edges.1", [1, 2, 10**30]), "edges[1].lag: an integer number of steps from 1"),
    (_set("edges.1", [1, 2, 4]), "series' length 3, got 4"),
    (_set("edges.1", [0, 1]), "edges[1]: the same edge 0->1 as edges[0]"),
    (_set("edges.0", {"from": 0}), "edges[0]: an object with from, to"),
    (_set("edges.0", "0->1"), "edges[0]: [from, to]"),
    (_set("edges.0", [0.5, 1]), "edges[0].from: a node index (integer)"),
    (_set("edges", {"0": 1}), "edges: a list"),
    (_set("question", ""), "question: a non-empty string"),
    (_set("question", 5), "question: a non-empty string"),
    (_set("options", ["only one"]), "options: a list of 2 to 26"),
    (_set("options.1", ""), "options[1]: a non-empty string"),
    (_set("horizon", 3), "options, horizon: give options"),
    (_set("answer", "D"), "answer: one of the option letters A-C"),
    (_set("seriess", [[1.0]]), "unknown field 'seriess'"),
    (_set("with_graph", "no"), "with_graph: true or false"),
    (_set("node_names", ["a"]), "node_names: a list of 3 strings"),
]


@pytest.mark.parametrize("change,message", BAD, ids=[m for _, m in BAD])
def test_every_bad_field_is_refused_with_its_name(change, message: str) -> None:
    req = change(copy.deepcopy(GOOD))
    with pytest.raises(BadRequest) as e:
        parse_question(req)
    assert message in str(e.value), str(e.value)
    assert e.value.status == 400


def test_limits_and_forecast_horizons_are_enforced() -> None:
    forecast = {"series": GOOD["series"], "question": "Next?"}
    for h in (0, 300, 2.5, "3"):
        with pytest.raises(BadRequest, match=r"horizon: an integer number of steps in \[1, 256\]"):
            parse_question({**forecast, "horizon": h})
    small = RequestLimits(max_nodes=2, max_steps=2)
    with pytest.raises(BadRequest, match="3 nodes, more than the limit of 2"):
        parse_question(GOOD, small)
    with pytest.raises(BadRequest, match="series\\[0\\]: 3 steps, more than the limit of 2"):
        parse_question({**GOOD, "series": GOOD["series"][:2]}, small)
    with pytest.raises(BadRequest, match="answer: 1 values for a horizon of 2"):
        parse_question({**forecast, "horizon": 2, "answer": [1.0]})


def test_bad_st_test_rows_name_the_field() -> None:
    row = _rows()[0]
    with pytest.raises(BadRequest, match="timeseries: 4 series for 5 <ts><ts/> placeholders"):
        parse_question({**row, "timeseries": row["timeseries"][:4]})
    with pytest.raises(BadRequest, match="timeseries: required"):
        parse_question({"input": row["input"]})
    with pytest.raises(BadRequest, match="input: not an ST prompt"):
        parse_question({"input": "hello", "timeseries": None})
    nan = copy.deepcopy(row)
    nan["timeseries"][1][3] = float("nan")
    with pytest.raises(BadRequest, match=r"timeseries\[1\]\[3\]: not a finite number"):
        parse_question(nan)
    big = {"input": row["input"].replace("<ts><ts/>", "[1, 2]").replace(
        "[1, 2]", "[1, " + "9" * 400 + "]", 1)}
    with pytest.raises(BadRequest, match="input: "):
        parse_question(big)
    with pytest.raises(BadRequest, match="output: one of the option letters A-D"):
        parse_question({**row, "output": "<answer>Q</answer>"})


def test_st_test_rows_that_would_give_a_wrong_prompt_are_refused() -> None:
    head = "You are a spatial temporal analysis expert. "
    ask = (", please analyze the spatial temporal data and answer the following question: "
           "Which? Options: A. up B. down")

    def row(body: str) -> dict:
        return {"input": head + body + ask}

    ok = parse_question(row("Node 0 time series with length of 2: [1, 2]; Node 1 time series "
                            "with length of 2: [5, 6]; Graph Structure: Node 1->Node 0"))
    assert ok.edges == [(1, 0, None)] and ok.series.tolist() == [[1, 2], [5, 6]]
    cases = [  # (body, message)
        ("Node 1 time series with length of 2: [1, 2]; Node 0 time series with length of 2: "
         "[5, 6]; Graph Structure: Node 1->Node 0", "clause 0 is Node 1"),
        ("Node 0 time series with length of 3: [1, 2]", "said to have length 3 but has 2"),
        ('Node 0 time series with length of 2: ["1", 2]', "must be a list of numbers"),
        ("Node 0 time series with length of 2: [true, 2]", "must be a list of numbers"),
        ('Node 0 time series with length of 2: [{"a": 1}, 2]', "input: "),
    ]
    for body, message in cases:
        with pytest.raises(BadRequest, match=re.escape(message)):
            parse_question(row(body))
    forecast = _rows()[3]
    with pytest.raises(BadRequest, match="output: 2 values for a horizon of 3"):
        parse_question({**forecast, "output": "[1, 2]"})
    with pytest.raises(BadRequest, match="series: an ST-Test row .* or our fields"):
        parse_question({**forecast, "series": [[1.0]]})
    free = parse_question({**forecast, "with_graph": False, "sample_id": "x"})
    assert "Graph Structure" not in free.prompt(2) and free.id == "x"


def test_completions_are_read_as_training_scored_them(samples: list) -> None:
    for s in samples:
        q = from_sample(s)
        r = read(s.completion, q)
        assert r.valid and r.invalid_reason is None and r.reasoning == s.rationale
        if s.kind == "choice":
            assert r.answer == s.answer and r.correct is True
            wrong = "A" if s.answer != "A" else "B"
            assert read(f"<think>x</think><answer>{wrong}</answer>", q).correct is False
        elif s.kind == "sequence":
            assert r.mae == 0.0 and len(r.answer) == s.horizon
            short = read("<answer>[1.0]</answer>", q)
            assert not short.valid and short.invalid_reason == "wrong_length"
    q = from_sample(next(s for s in samples if s.kind == "choice"))
    bad = read("<think>so it is</think> no tags here", q)
    assert (bad.valid, bad.invalid_reason, bad.correct, bad.reasoning) == (
        False, "no_answer_tag", False, "so it is")
