"""Task families: the registry, oracle solvers on the prompt alone, and per-task facts."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from envs.detect import departures
from envs.domains import DOMAINS, MECHANISMS
from envs.prompt import parse_prompt
from envs.sample import TASKS
from envs.stream import TaskMix, generate
from envs.tasks import TASK_REGISTRY, EnvConfig, get_task, register_task
from envs.tasks.entity import Entity, role_facts
from envs.tasks.etiological import classify, read_story
from envs.tasks.graphq import ancestors_all, option_counts, reach

CHOICE = [t for t in TASKS if get_task(t).kind == "choice"]


def test_registry_holds_the_built_in_tasks() -> None:
    assert tuple(TASK_REGISTRY) == TASKS
    assert all(get_task(t).name == t for t in TASKS)
    with pytest.raises(ValueError, match="already registered"):
        register_task(Entity)
    with pytest.raises(ValueError, match="known tasks: etiological"):
        get_task("weather")


@pytest.mark.parametrize("task", CHOICE)
def test_oracle_reads_the_gold_from_the_prompt(task: str) -> None:
    samples = generate(6, range(50), TaskMix.of([task]))
    solver = get_task(task)
    hits = [solver.solve(parse_prompt(s.prompt())) == ord(s.answer) - 65 for s in samples]
    assert np.mean(hits) >= 0.9
    # the same solver on the placeholder form, given the array, reads the same answers
    rows = [s.to_streasoner() for s in samples[:10]]
    assert [solver.solve(parse_prompt(r["input"], r["timeseries"])) for r in rows] == [
        solver.solve(parse_prompt(s.prompt())) for s in samples[:10]]


@pytest.mark.parametrize("task", CHOICE)
def test_graph_free_solver_returns_a_valid_option(task: str) -> None:
    for s in generate(6, range(20), TaskMix.of([task])):
        assert 0 <= get_task(task).solve(parse_prompt(s.prompt_no_graph)) < len(s.options)


def test_role_facts() -> None:
    assert role_facts(0, 2, starts=True) == {
        "origin": True, "feeder": False, "junction": False, "relay": False, "terminal": False}
    assert role_facts(0, 1, starts=False)["feeder"]
    assert role_facts(2, 0, starts=False) == {
        "origin": False, "feeder": False, "junction": True, "relay": False, "terminal": True}
    assert role_facts(1, 1, starts=False)["relay"]


def test_classify_scenarios() -> None:
    flat = np.full((3, 60), 10.0)
    assert classify(departures(flat)) == ("calm", ())
    one = flat.copy()
    one[1, 30:] = 14.0
    one[2, 32:] = 14.0
    assert classify(departures(one)) == ("single", (1,))
    two = one.copy()
    two[0, 30:] = 14.0
    assert classify(departures(two)) == ("multi", (0, 1))
    every = flat.copy()
    every[:, 30:] = 14.0
    assert classify(departures(every)) == ("network_wide", ())


@pytest.mark.parametrize("domain", list(DOMAINS))
def test_every_story_reads_back(domain: str) -> None:
    tpl = DOMAINS[domain].mechanisms
    assert read_story(tpl["single"].format(src="Node 7")) == ("single", (7,))
    srcs = "Node 4, Node 1 and Node 9"
    assert read_story(tpl["multi"].format(srcs=srcs)) == ("multi", (1, 4, 9))
    assert read_story(tpl["multi"].format(srcs="Node 2 and Node 0")) == ("multi", (0, 2))
    assert read_story(tpl["network_wide"]) == ("network_wide", ())
    assert read_story(tpl["calm"]) == ("calm", ())
    assert read_story("Something else entirely.") is None
    assert set(tpl) == set(MECHANISMS)


def test_graph_helpers() -> None:
    edges = [(0, 2), (1, 2), (2, 3), (3, 4), (1, 5)]
    anc = ancestors_all(6, edges)
    assert anc[4] == {0, 1, 2, 3} and anc[5] == {1} and anc[0] == set()
    assert reach(edges, 1) == {2, 3, 4, 5}
    assert reach(edges, 4, forward=False) == {0, 1, 2, 3}
    rng = np.random.default_rng(0)
    # a graph decoy only next to two data decoys, and never with fewer than 4 options
    assert option_counts(rng, 3, 5, True) == (2, 0)
    assert option_counts(rng, 4, 1, True) == (1, 0)
    assert {option_counts(rng, 4, 3, True) for _ in range(50)} == {(3, 0), (2, 1)}


def test_path_description_reference_follows_the_graph() -> None:
    for s in generate(8, range(20), TaskMix.of(["path_description"])):
        path = s.meta["path"]
        edges = {(u, v) for u, v, _ in s.edges}
        assert len(path) >= 3
        assert all((a, b) in edges for a, b in zip(path, path[1:], strict=False))
        assert s.answer.index(f"Node {path[0]}") < s.answer.index(f"Node {path[-1]}")
        assert f"from Node {path[0]} to Node {path[-1]}" in s.question
        assert " -> ".join(f"Node {i}" for i in path) in s.rationale


def test_forecasting_target_and_answer() -> None:
    for s in generate(8, range(20), TaskMix.of(["forecasting"])):
        k, src = s.meta["target"], s.meta["source"]
        assert f"predict the value of node {k} " in s.question
        assert k == src or (src, k) in {(u, v) for u, v, _ in s.edges}
        expected = json.loads(re.search(r"Expected path: (\[.*\])", s.rationale).group(1))
        future = json.loads(s.answer)
        assert len(expected) == len(future) == s.horizon
        # the answer is the noisy future: close to the noise-free path
        assert np.max(np.abs(np.subtract(future, expected))) < 0.1 * s.scale
        assert s.scale == pytest.approx(np.mean(np.abs(s.series[k])), rel=1e-2)


def test_gold_is_not_stuck_on_one_letter() -> None:
    for task in CHOICE:
        answers = {s.answer for s in generate(9, range(40), TaskMix.of([task]),
                                              EnvConfig(n_options=3))}
        assert answers >= {"A", "B"}
