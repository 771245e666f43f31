"""Prompt writing and reading: round trips, the graph-free variant, and the ST-Test shape."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from envs.prompt import (
    ASK,
    GRAPH_CLAUSE,
    PLACEHOLDER,
    PREAMBLE,
    build_prompt,
    format_options,
    format_series,
    letter,
    parse_prompt,
    split_options,
    with_placeholders,
)

ST_TEST_ROWS = Path(__file__).parents[1] / "rewards" / "data" / "streasoner_st_test_cases.jsonl"

SERIES = np.random.default_rng(0).normal(50, 20, (4, 40))
EDGES = [(0, 2), (1, 2), (2, 3)]
OPTIONS = ["Node 0, after about 2 steps", "Node 3 only.", "There is no link; none", "Node 1"]
QUESTION = "Which node is affected next? " + format_options(OPTIONS)


@pytest.fixture(scope="module")
def st_rows() -> list[dict]:
    with ST_TEST_ROWS.open() as f:
        rows = [json.loads(line) for line in f if line.strip()]
    assert len(rows) == 4
    return rows


def decimals(text: str) -> list[int]:
    return [len(tok.partition(".")[2]) for tok in text.strip("[]").split(", ")]


@pytest.mark.parametrize("precision", [0, 1, 2, 3])
def test_format_series_precision(precision: int) -> None:
    row = np.array([1.0, -2.345, 1234.5678, 0.004, 20.4])
    text = format_series(row, precision)
    assert text.startswith("[") and text.endswith("]")
    assert np.array_equal(json.loads(text), np.round(row, precision))
    assert max(decimals(text)) <= max(precision, 1)
    assert format_series(np.array([]), precision) == "[]"


def test_format_series_rounds_not_truncates() -> None:
    assert json.loads(format_series(np.array([2.346, -0.996]), 2)) == [2.35, -1.0]


@pytest.mark.parametrize("precision", [0, 1, 2, 4])
def test_inline_round_trip(precision: int) -> None:
    text = build_prompt(SERIES, EDGES, QUESTION, precision=precision)
    assert text.startswith(PREAMBLE) and PLACEHOLDER not in text
    p = parse_prompt(text)
    assert p.series.shape == SERIES.shape
    np.testing.assert_allclose(p.series, SERIES, rtol=0, atol=0.5 * 10**-precision + 1e-9)
    assert p.edges == EDGES
    assert p.question == "Which node is affected next?"
    assert p.options == OPTIONS


def test_placeholder_round_trip_needs_the_array() -> None:
    text = build_prompt(SERIES, EDGES, QUESTION, inline=False)
    assert text.count(PLACEHOLDER) == 4 and "[" not in text.partition(ASK)[0]
    p = parse_prompt(text, SERIES.tolist())
    assert np.array_equal(p.series, SERIES)
    assert p.edges == EDGES and p.options == OPTIONS
    with pytest.raises(ValueError, match="placeholders"):
        parse_prompt(text)
    with pytest.raises(ValueError, match="placeholders"):
        parse_prompt(text, SERIES[:3].tolist())  # one row short


@pytest.mark.parametrize("with_graph", [True, False])
def test_with_placeholders_turns_an_inline_prompt_into_the_st_test_form(with_graph) -> None:
    inline = build_prompt(SERIES, EDGES, QUESTION, inline=True, with_graph=with_graph)
    placed = build_prompt(SERIES, EDGES, QUESTION, inline=False, with_graph=with_graph)
    assert with_placeholders(inline) == placed
    assert with_placeholders(placed) == placed  # already in that form: unchanged


def test_without_graph_drops_exactly_the_graph_clause() -> None:
    full = build_prompt(SERIES, EDGES, QUESTION)
    free = build_prompt(SERIES, EDGES, QUESTION, with_graph=False)
    clause = GRAPH_CLAUSE + "Node 0->Node 2; Node 1->Node 2; Node 2->Node 3"
    assert clause in full and GRAPH_CLAUSE not in free
    assert full.replace(clause, "") == free
    p = parse_prompt(free)
    assert p.edges is None
    np.testing.assert_allclose(p.series, SERIES, atol=0.005 + 1e-9)
    assert p.options == OPTIONS


def test_empty_graph_parses_to_no_edges() -> None:
    p = parse_prompt(build_prompt(SERIES, [], "Q?"))
    assert p.edges == [] and p.question == "Q?" and p.options == []


def test_parse_rejects_non_st_text() -> None:
    with pytest.raises(ValueError, match="not an ST prompt"):
        parse_prompt("What is 2 + 2?")
    with pytest.raises(ValueError, match="no 'Node k time series'"):
        parse_prompt(PREAMBLE + "nothing here" + ASK + "Q?")


def test_split_options() -> None:
    assert split_options("Q? Options: A. x B. y z C. w.") == ("Q?", ["x", "y z", "w."])
    assert split_options("No options here") == ("No options here", [])
    opts = [f"option {i}" for i in range(6)]
    assert split_options("Q " + format_options(opts)) == ("Q", opts)
    assert format_options(["a", "b"]) == "Options: A. a B. b"
    assert letter(3) == "D"


def test_fixture_rows_parse(st_rows: list[dict]) -> None:
    for row in st_rows:
        p = parse_prompt(row["input"], row["timeseries"])
        n = row["input"].count("time series with length of")
        assert p.series.shape == (n, len(row["timeseries"][0])) == np.shape(row["timeseries"])
        assert np.array_equal(p.series, np.array(row["timeseries"]))
        graph = row["input"].partition(GRAPH_CLAUSE)[2].partition(ASK)[0]
        assert p.edges == [(int(e.split("->")[0][5:]), int(e.split("->")[1][5:]))
                           for e in graph.split("; ")]
        if row["output"].startswith("<answer>"):
            assert len(p.options) == 4 and p.question.endswith("?")
        else:
            assert p.options == []


def test_fixture_details(st_rows: list[dict]) -> None:
    shapes = [parse_prompt(r["input"], r["timeseries"]).series.shape for r in st_rows]
    assert shapes == [(5, 48), (10, 48), (10, 240), (3, 36)]
    entity = parse_prompt(st_rows[1]["input"], st_rows[1]["timeseries"])
    assert entity.edges[0] == (0, 1) and len(entity.edges) == 9
    assert entity.options[2] == "Final Point, Final monitoring point"
    forecast = parse_prompt(st_rows[3]["input"], st_rows[3]["timeseries"])
    assert forecast.edges == [(0, 2), (1, 2), (2, 1)]
    assert forecast.question.endswith("Historical observation window: 30-35.")


def test_our_prompt_has_the_fixture_shape(st_rows: list[dict]) -> None:
    ours = build_prompt(SERIES, EDGES, QUESTION, inline=False)
    theirs = st_rows[0]["input"]
    for text in (ours, theirs):
        assert text.startswith(PREAMBLE + "Node 0 time series with length of ")
        assert GRAPH_CLAUSE in text and ASK in text
        assert text.index(GRAPH_CLAUSE) < text.index(ASK)
    assert ours.partition(" time series with length of ")[2].startswith("40: <ts><ts/>; Node 1")
