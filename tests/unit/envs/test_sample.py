"""Generated samples: required fields, shapes, export formats, and the difficulty knobs."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from envs.prompt import GRAPH_CLAUSE, PLACEHOLDER, parse_prompt
from envs.sample import TASKS, Sample
from envs.stream import TaskMix, generate
from envs.tasks import EnvConfig, get_task

CFG = EnvConfig()
CHOICE = [t for t in TASKS if get_task(t).kind == "choice"]
_NUMBER = re.compile(r"-?\d+\.?\d*")


@pytest.fixture(scope="module", params=TASKS)
def batch(request: pytest.FixtureRequest) -> list[Sample]:
    return generate(2, range(60), TaskMix.of([request.param]), CFG)


def test_required_fields(batch: list[Sample]) -> None:
    task = get_task(batch[0].task)
    for s in batch:
        assert s.id and s.task == task.name and s.kind == task.kind and s.rationale
        assert GRAPH_CLAUSE in s.prompt() and "Graph Structure" not in s.prompt_no_graph
        if s.kind == "choice":
            assert 2 <= len(s.options) <= CFG.n_options
            assert len(set(s.options)) == len(s.options)
            assert s.answer in "ABCDEF"[: len(s.options)] and len(s.answer) == 1
            assert re.search(rf"option {s.answer}\b", s.rationale, re.IGNORECASE)
            assert re.findall(r"[Oo]ption ([A-F])", s.rationale)[-1] == s.answer
            assert s.horizon == 0
        elif s.kind == "sequence":
            values = json.loads(s.answer)
            assert s.horizon in CFG.horizons and len(values) == s.horizon
            assert all(isinstance(v, float) for v in values)
            assert s.options == [] and s.scale > 0
        else:
            assert s.kind == "text" and s.options == [] and len(s.answer.split()) > 10


def test_series_shape_and_edges(batch: list[Sample]) -> None:
    task = get_task(batch[0].task)
    sizes = {max(n, task.nodes_needed(CFG)) for n in CFG.nodes}
    for s in batch:
        n, t_len = s.series.shape
        assert n in sizes and t_len in CFG.lengths
        assert np.array_equal(s.series, np.round(s.series, CFG.precision))
        assert all(0 <= u < n and 0 <= v < n and u != v and lag >= 1 for u, v, lag in s.edges)
        assert s.edges == sorted(s.edges)
        assert len(s.meta["node_names"]) == n
        p = parse_prompt(s.prompt())
        assert np.array_equal(p.series, s.series)
        assert p.edges == [(u, v) for u, v, _ in s.edges]
        assert p.lags == {(u, v): lag for u, v, lag in s.edges}  # the graph shows its lags
        assert p.question == s.question and p.options == s.options


def test_export_formats(batch: list[Sample]) -> None:
    for s in batch:
        row = s.to_streasoner()
        assert set(row) == {"id", "input", "timeseries", "output", "category"}
        assert row["category"] == s.task
        assert row["input"].count(PLACEHOLDER) == len(row["timeseries"]) == s.series.shape[0]
        assert PLACEHOLDER in row["input"] and PLACEHOLDER not in s.prompt()
        assert np.array_equal(parse_prompt(row["input"], row["timeseries"]).series, s.series)
        if s.kind == "sequence":
            assert row["output"] == s.answer and json.loads(row["output"])
        else:
            assert row["output"] == f"<answer>{s.answer}</answer>"
        rec = s.to_record()
        assert json.loads(json.dumps(rec)) == rec  # JSON-friendly
        assert rec["completion"] == f"<think>{s.rationale}</think><answer>{s.answer}</answer>"
        assert rec["reference"] == (s.answer if s.kind == "text" else s.rationale)


def test_forecasting_shows_only_the_history() -> None:
    for s in generate(4, range(30), TaskMix.of(["forecasting"])):
        t_len = s.series.shape[1]
        assert f"Historical observation window: 0-{t_len - 1}." in s.question
        assert f"for the next {s.horizon} steps" in s.question


def knob_samples(cfg: EnvConfig, tasks=TASKS, per_task: int = 6) -> list[Sample]:
    return [s for t in tasks for s in generate(3, range(per_task), TaskMix.of([t]), cfg)]


def test_three_options() -> None:
    samples = knob_samples(EnvConfig(n_options=3), CHOICE, 10)
    assert all(2 <= len(s.options) <= 3 for s in samples)
    assert max(len(s.options) for s in samples) == 3


def test_six_options_reach_six() -> None:
    samples = knob_samples(EnvConfig(n_options=6), ["etiological", "correlation"], 5)
    assert {len(s.options) for s in samples} >= {6}


def test_ten_nodes_and_fixed_length() -> None:
    for s in knob_samples(EnvConfig(nodes=(10,), lengths=(96,))):
        assert s.series.shape == (10, 96)


def test_noise_free_config_generates() -> None:
    samples = knob_samples(EnvConfig(noise=0.0), per_task=3)
    assert {s.task for s in samples} == set(TASKS)


def test_placeholder_config() -> None:
    for s in knob_samples(EnvConfig(inline=False), per_task=2):
        assert s.prompt().count(PLACEHOLDER) == s.series.shape[0]
        assert "[" not in s.prompt().partition(" please analyze")[0]
        assert s.prompt(inline=True).count(PLACEHOLDER) == 0


def test_precision_one() -> None:
    for s in knob_samples(EnvConfig(precision=1), per_task=2):
        body = s.prompt().partition(GRAPH_CLAUSE)[0]
        numbers = _NUMBER.findall(",".join(re.findall(r"\[[^\]]*\]", body)))
        assert numbers and all(re.fullmatch(r"-?\d+\.\d", x) for x in numbers)
        assert np.array_equal(s.series, np.round(s.series, 1))
        if s.kind == "sequence":
            assert all(v == round(v, 1) for v in json.loads(s.answer))


def test_graph_uses_shown_labels_with_lags_and_names() -> None:
    (s,) = generate(3, [0], TaskMix.of(["correlation"]), EnvConfig(nodes=(7,)))
    g = s.graph()
    assert sorted(g.nodes) == list(range(7))
    assert sorted(g.edges) == sorted((u, v) for u, v, _ in s.edges)
    for u, v, lag in s.edges:
        assert g.edges[u, v]["lag"] == lag and g.edges[u, v]["weight"] == 0.1
    assert [g.nodes[i]["name"] for i in range(7)] == s.meta["node_names"]
