"""Task families: the registry, oracle solvers on the prompt alone, and per-task facts."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from envs.detect import departures
from envs.domains import DOMAINS, MECHANISMS
from envs.prompt import parse_prompt
from envs.sample import PERCEPTION, TASKS
from envs.stream import TaskMix, generate
from envs.tasks import TASK_REGISTRY, EnvConfig, get_task, register_task
from envs.tasks.entity import Entity, role_of
from envs.tasks.etiological import classify, read_story
from envs.tasks.graphq import aligned_design, ancestors_all, min_lag_paths

CHOICE = [t for t in TASKS if get_task(t).kind == "choice"]


def test_registry_holds_the_built_in_tasks() -> None:
    assert tuple(TASK_REGISTRY) == TASKS + PERCEPTION
    assert all(get_task(t).name == t for t in TASKS + PERCEPTION)
    assert [t for t in TASK_REGISTRY if get_task(t).perception] == list(PERCEPTION)
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


def test_role_of() -> None:
    assert [role_of(b, True) for b in (0, 1, 2, 3)] == ["origin", "relay", "merge", "merge"]
    assert [role_of(b, False) for b in (0, 1, 2)] == ["local_start", "dead_end", "merge_end"]


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
    lags = {(0, 2): 3, (1, 2): 1, (2, 3): 2, (1, 3): 9, (3, 4): 1}
    assert min_lag_paths(5, lags, 4).tolist() == [6, 4, 3, 1, 0]
    assert min_lag_paths(5, lags, 2)[3] == np.inf  # no path from 3 back to 2


def test_aligned_design_hides_the_gold_in_either_half() -> None:
    design = np.random.default_rng(0)
    gold_leads, decoy_leads, decoy_lags = [], [], []
    for _ in range(20000):
        leads, lags = aligned_design(design, 3, 2, 9)
        assert leads[0] == lags[0]  # only the gold's timing lines up ...
        assert all(abs(a - b) >= 3 for a, b in zip(leads[1:], lags[1:], strict=True))
        gold_leads.append(leads[0])
        decoy_leads += leads[1:]
        decoy_lags += lags[1:]
    # ... yet leads and lags alone are distributed alike for gold and decoys (uniform)
    for values in (gold_leads, decoy_leads, decoy_lags):
        freq = np.bincount(values, minlength=10)[2:] / len(values)
        assert np.abs(freq - 1 / 8).max() < 0.01
    with pytest.raises(ValueError, match="hi - lo"):
        aligned_design(design, 3, 2, 5)


@pytest.mark.parametrize("task", ["root_cause", "propagation", "correlation"])
def test_alignment_tasks_rationales_state_the_aligned_timing(task: str) -> None:
    for s in generate(4, range(20), TaskMix.of([task])):
        lags = {(u, v): lag for u, v, lag in s.edges}
        if task == "root_cause":
            k, c = s.meta["target"], s.meta["culprit"]
            assert f"Node {c}" == s.options[ord(s.answer) - 65]
            assert f"Node {c}->Node {k} (lag {lags[(c, k)]}), so " in s.rationale
            assert "matches" in s.rationale
        elif task == "propagation":
            a, nxt = s.meta["shocked"], s.meta["next"]
            assert f"Node {nxt}" == s.options[ord(s.answer) - 65]
            assert min((lag, v) for (u, v), lag in lags.items() if u == a)[1] == nxt
        else:
            a, b = s.meta["pair"]
            assert f"Node {a}" in s.question and f"Node {b}" in s.question
            assert "matches" in s.rationale


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
