"""Asynchronous GRPO's rounds in flight as a checkpoint keeps them, and the staleness
histogram."""

from __future__ import annotations

import doctest

import pytest

from actors.rollout import Completion
from rlsys.train import rounds
from rlsys.train.data import Prompt
from rlsys.train.rounds import Round


def test_module_doctests_pass() -> None:
    assert doctest.testmod(rounds).failed == 0


def _round(step: int, free: bool) -> Round:
    p = Prompt(id=f"q{step}", task="root_cause", ids=[1, 2, 3], target={"answer": "B"},
               ids_no_graph=[1, 3] if free else None, series=[[0.5, 1.0], [2.0, 3.5]])
    comps = [[Completion(0, [7, 8], [-0.25, -1.5], "B", "stop"),
              Completion(0, [9], [-3.0], "A", "length")]]
    return Round(step, 0, version=4, prompts=[p], groups=comps,
                 free=[[Completion(0, [5], [-0.5], "C", "stop")]] if free else None)


@pytest.mark.parametrize("free", [False, True])
def test_a_gathered_round_round_trips_through_the_checkpoint_file(free: bool) -> None:
    before = [_round(3, free), _round(4, free)]
    after = rounds.loads(rounds.dumps(before))
    assert after == before
    assert after[0].gathered and after[0].calls == [] and after[0].version == 4


def test_a_round_in_flight_cannot_be_written() -> None:
    r = Round(5, 0, 1, prompts=[], calls=["ref"])
    with pytest.raises(ValueError, match="still in flight"):
        rounds.dumps([r])


def test_no_samples_no_histogram() -> None:
    assert rounds.staleness_metrics([], k=2) == {}
    got = rounds.staleness_metrics([2, 2, 0], k=2)
    assert got["staleness/1"] == 0.0 and got["staleness/2"] == pytest.approx(2 / 3)
