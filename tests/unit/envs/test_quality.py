"""The quality guarantees of generated questions, per task and difficulty setting, over
2000 test samples (learned baselines trained on 2000 more): an oracle that reads only the
prompt answers >= 95%; every solver deprived of an input the task needs (graph-only
rules and classifiers, series-only lead-lag rules and classifiers, the graph-free oracle)
and every text-only solver stays within 10 points of chance; gold letters are uniform;
the option count is the configured one."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor

import pytest

from envs.quality import SETTINGS, TaskQuality, audit, format_table
from envs.sample import TASKS
from envs.stream import TaskMix, generate
from envs.tasks import EnvConfig, get_task

CHOICE_TASKS = [t for t in TASKS if get_task(t).kind == "choice"]
BOUNDS_TEST = "test_quality_bounds_hold_over_2000_samples"


def _audit(task: str, setting: str) -> TaskQuality:
    (row,) = audit([task], 2000, seed=7, cfg=SETTINGS[setting], setting=setting)
    return row


@pytest.fixture(scope="module")
def audits(request: pytest.FixtureRequest) -> Iterator[dict[tuple[str, str], Future]]:
    """The audits of every selected (task, setting), started at once on every core (each is
    single-threaded Python: 10-30 s; one after the other they were 7 minutes of the suite).
    Fresh interpreters (spawn): this process may hold torch's thread pools."""
    wanted = [(it.callspec.params["task"], it.callspec.params["setting"])
              for it in request.session.items
              if getattr(it, "originalname", "") == BOUNDS_TEST and hasattr(it, "callspec")]
    jobs = max(1, min(len(wanted), len(os.sched_getaffinity(0))))
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield {key: pool.submit(_audit, *key) for key in wanted}
    finally:  # a stopped session (-x, Ctrl-C) does not wait for the audits not started
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.slow
@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("task", CHOICE_TASKS)
def test_quality_bounds_hold_over_2000_samples(task: str, setting: str, audits: dict) -> None:
    row = audits[(task, setting)].result()
    assert row.problems() == [], format_table([row])
    assert row.oracle >= 0.95 and row.letter_skew < 0.05
    if "graph" in row.needs:  # the graph is what makes these answerable
        assert row.oracle - row.graph_free > 0.4


def test_tasks_declare_what_they_need() -> None:
    needs = {t: get_task(t).needs for t in CHOICE_TASKS}
    assert needs["etiological"] == ("series",)
    for t in ("correlation", "root_cause", "propagation", "entity", "intervention"):
        assert set(needs[t]) == {"series", "graph"}, t


@pytest.mark.parametrize("n_options", [2, 3, 4, 5, 6])
def test_every_question_has_exactly_the_configured_number_of_options(n_options: int) -> None:
    cfg = EnvConfig(nodes=(3, 5, 10), lengths=(48, 96), n_options=n_options)
    for task in CHOICE_TASKS:
        counts = {len(s.options) for s in generate(3, range(40), TaskMix.of([task]), cfg)}
        assert counts == {n_options}, (task, counts)


def test_the_tiny_setting_is_the_tiny_presets_env() -> None:
    from rlsys.config import env_config, load_config

    assert env_config(load_config("configs/tiny_cpu.yaml")) == SETTINGS["tiny"]


def test_a_broken_bound_is_named_and_marked_in_the_table() -> None:
    row = TaskQuality(task="root_cause", setting="tiny", n=100, needs=("series", "graph"),
                      chance=1 / 3, oracle=0.99, graph_free=0.34, graph=0.35, series=0.52,
                      text=0.33, learned_text=0.33, letter_skew=0.01,
                      baselines={"series:xcorr": 0.52, "series:learned": 0.4})
    assert row.problems() == ["root_cause [tiny]: series-only 0.520 (series:xcorr) is more "
                              "than 0.10 above chance 0.333"]
    assert "0.520!" in format_table([row]) and "0.350!" not in format_table([row])
    series_only = TaskQuality(task="etiological", setting="x", n=100, needs=("series",),
                              chance=0.25, oracle=1.0, graph_free=1.0, graph=0.26,
                              series=1.0, text=0.25, learned_text=0.25, letter_skew=0.0)
    assert series_only.problems() == []  # its series-only solvers may answer it
