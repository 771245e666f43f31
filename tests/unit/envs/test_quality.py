"""The quality guarantees of generated questions, over thousands of samples per task:
an oracle that reads only the prompt answers >= 95%; shortcut baselines (same letter,
longest option, most question-like option) and, for tasks that need the graph, the
graph-free oracle stay within 10 points of chance; gold letters are uniform."""

from __future__ import annotations

import pytest

from envs.quality import audit
from envs.sample import TASKS
from envs.tasks import EnvConfig, get_task

CHOICE_TASKS = [t for t in TASKS if get_task(t).kind == "choice"]


@pytest.mark.slow
@pytest.mark.parametrize("task", CHOICE_TASKS)
def test_quality_bounds_hold_over_2000_samples(task: str) -> None:
    (row,) = audit([task], 2000, seed=7)
    assert row.problems() == []
    assert row.oracle >= 0.95
    assert row.letter_skew < 0.05
    if row.needs_graph:
        # the graph is what makes these answerable
        assert row.oracle - row.graph_free > 0.4


@pytest.mark.slow
@pytest.mark.parametrize("cfg", [
    EnvConfig(nodes=(10,), lengths=(168,), n_options=5),
    EnvConfig(nodes=(5,), lengths=(48,), n_options=3, noise=2.0),
], ids=["10 nodes 5 options", "5 nodes 3 options noisy"])
def test_quality_bounds_hold_at_other_difficulties(cfg: EnvConfig) -> None:
    rows = audit(CHOICE_TASKS, 600, seed=11, cfg=cfg)
    problems = [p for r in rows for p in r.problems()]
    assert problems == []


def test_needs_graph_is_declared_for_structural_tasks() -> None:
    assert {t for t in CHOICE_TASKS if get_task(t).needs_graph} == {
        "correlation", "root_cause", "propagation"}
