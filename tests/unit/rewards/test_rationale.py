"""The rationale checker on hand-written claims, true and false, and on the simulator's own
reference rationales (which must all verify)."""

from __future__ import annotations

import numpy as np
import pytest

from envs.stream import generate
from envs.tasks.common import EnvConfig
from rewards import RewardSet, Target, check
from rewards.rationale import (
    DELAY,
    DEPARTURE,
    LAG,
    LINK,
    NEVER,
    SUM,
    Facts,
    concluded,
    conclusion,
    reasoned_gold,
    verified_share,
)


def _world() -> tuple[list[list[float]], list[list[int]]]:
    """Four nodes, 30 steps: Node 0 departs at step 12, Node 1 at 15, Node 2 never, Node 3
    at 20; links 0->1 (lag 3), 1->3 (lag 5), 2->3 (lag 2)."""
    x = np.full((4, 30), 10.0)
    x[0, 12:] = 15.0
    x[1, 15:] = 15.0
    x[3, 20:] = 15.0
    return x.tolist(), [[0, 1, 3], [1, 3, 5], [2, 3, 2]]


FACTS = Facts.of(*_world())
TARGET = Target("root_cause", "choice", "A", n_options=3, facts=FACTS)


def _one(text: str) -> list[tuple[str, tuple[int, ...], bool]]:
    return [(c.kind, c.what, c.ok) for c in check(text, FACTS)]


def test_the_world_is_what_the_claims_are_checked_against() -> None:
    assert FACTS.onsets == (12, 15, -1, 20)
    assert dict(FACTS.links) == {(0, 1): 3, (1, 3): 5, (2, 3): 2}


@pytest.mark.parametrize("text,claims", [
    ("Node 0 departs at step 12.", [(DEPARTURE, (0, 12), True)]),
    ("Node 0 departs at step 13.", [(DEPARTURE, (0, 13), True)]),  # within a step
    ("Node 0 departs at step 9.", [(DEPARTURE, (0, 9), False)]),
    ("Node 2 departs at step 12.", [(DEPARTURE, (2, 12), False)]),  # it never does
    ("Node 3 leaves its baseline of 10 at step 20 (peak +50%).", [(DEPARTURE, (3, 20), True)]),
    ("At step 15, Node 1 leaves its baseline: the shock hits it.",
     [(DEPARTURE, (1, 15), True)]),
    ("fed by other sources (Node 3 from step 26)", [(DEPARTURE, (3, 26), False)]),
    ("Node 2 never departs from its baseline.", [(NEVER, (2,), True)]),
    ("Node 1 never departs from its baseline.", [(NEVER, (1,), False)]),
    ("No node moves more than 10% away from its baseline.", [(NEVER, (), False)]),
    ("Node 1 departs at step 15, 3 steps after Node 0.",
     [(DEPARTURE, (1, 15), True), (DELAY, (1, 3, 0), True)]),
    ("It reached Node 3 at step 20 (8 steps after Node 0, peak +50%).",
     [(DEPARTURE, (3, 20), True), (DELAY, (3, 8, 0), True)]),
    ("It reached Node 3 at step 20 (2 steps after Node 1, peak +50%).",
     [(DEPARTURE, (3, 20), True), (DELAY, (3, 2, 1), False)]),
    ("the route Node 0 -> Node 1 -> Node 3.", [(LINK, (0, 1), True), (LINK, (1, 3), True)]),
    ("the route Node 0->Node 3.", [(LINK, (0, 3), False)]),
    ("over the link Node 1->Node 3 (lag 5)", [(LINK, (1, 3), True), (LAG, (1, 3, 5), True)]),
    ("over the link Node 1->Node 3 (lag 4)", [(LINK, (1, 3), True), (LAG, (1, 3, 4), False)]),
    ("Node 3 receives links from Node 1, Node 2 and Node 0.",
     [(LINK, (1, 3), True), (LINK, (2, 3), True), (LINK, (0, 3), False)]),
    ("In the graph, Node 0 links to Node 1 (lag 3), Node 3 (lag 8).",
     [(LINK, (0, 1), True), (LAG, (0, 1, 3), True), (LINK, (0, 3), False),
      (LAG, (0, 3, 8), False)]),
    ("The route through Node 1 (lags 3 + 5 = 8) matches; (lags 3 + 5 = 9) does not.",
     [(SUM, (3, 5, 8), True), (SUM, (3, 5, 9), False)]),
    ("Node 0 departs at step 12; with the lag of 3, its disturbance would arrive at step 16",
     [(DEPARTURE, (0, 12), True), (SUM, (12, 3, 16), False)]),
    ("Node 9 departs at step 12. Node 7->Node 8.",  # nodes the world does not have
     [(DEPARTURE, (9, 12), False), (LINK, (7, 8), False)]),
    ("The answer is B, because the graph says so.", []),
])
def test_hand_written_claims_are_read_and_checked(text: str, claims: list) -> None:
    assert _one(text) == claims


def test_the_reward_is_the_share_of_true_claims_and_needs_a_series_claim() -> None:
    rs = RewardSet([{"name": "rationale", "weight": 1.0}])
    completions = [
        "<think>Node 0 departs at step 12. Node 1 departs at step 15.</think><answer>A</answer>",
        "<think>Node 0 departs at step 12. Node 1 departs at step 2.</think><answer>A</answer>",
        # the graph copied from the prompt, nothing read off the series: no credit
        "<think>Node 0->Node 1. Node 1->Node 3. Node 2->Node 3.</think><answer>A</answer>",
        # the same claim twice counts once; claims outside <think> do not count
        "<think>Node 0 departs at step 12. Node 0 departs at step 12. Node 2->Node 0.</think>"
        "<answer>A. Node 1 departs at step 15</answer>",
        "<answer>A</answer>",
    ]
    got = rs(completions, [TARGET] * len(completions))
    assert got == [1.0, 0.5, 0.0, 0.5, 0.0]
    no_data = Target("root_cause", "choice", "A", n_options=3)  # e.g. an ST-Test row
    assert rs([completions[0]], [no_data]) == [0.0]


def test_a_record_carries_its_facts_and_a_row_without_series_none() -> None:
    series, edges = _world()
    rec = {"task": "root_cause", "answer": "A", "options": ["x", "y", "z"],
           "series": series, "edges": edges}
    assert Target.from_record(rec).facts == FACTS
    assert Target.from_record({"task": "root_cause", "answer": "A",
                               "options": ["x", "y"]}).facts is None
    ragged = {**rec, "series": [[1.0, 2.0], [1.0]], "edges": [{"from": 0, "to": 1}]}
    assert Target.from_record(ragged).facts is None  # still a target: only claims unchecked


@pytest.mark.parametrize("task", ["etiological", "entity", "correlation", "root_cause",
                                  "propagation", "path_description", "intervention"])
def test_the_simulators_own_rationales_verify(task: str) -> None:
    """Reference rationales are what SFT teaches: every claim they make checks out at the
    default setting (the series at 2 decimals)."""
    from rlsys.train.data import TaskMix

    claims = []
    for s in generate(3, range(100), TaskMix.of([task]), EnvConfig()):
        found = check(s.rationale, Target.from_record(s.to_record()).facts)
        claims += found
        assert verified_share(found) == 1.0, s.rationale
    assert len(claims) >= 200 and all(c.ok for c in claims)


ROOT_OPTIONS = ("Node 3", "Node 1", "Node 12")


@pytest.mark.parametrize("text,named", [
    ("Node 1 is too late. So the disturbance started at Node 12: option A.", 2),  # not its letter
    ("Node 1 is too late. So it started at Node 1, option C.", 1),
    ("Node 3 matches. So it started at Node 2: option A.", None),  # Node 2 is no option
    ("So option B.", None),  # the letter alone
    ("Node 3 matches, and Node 1 does not. Done.", None),  # no sentence names a letter
    ("So Node 3 matches, not Node 1: option B. Then option C, by Node 12.", 2),  # the last one
])
def test_a_conclusion_is_read_by_the_name_it_gives(text: str, named: int | None) -> None:
    assert concluded(text, ROOT_OPTIONS) == named


def test_the_conclusion_reward_pays_the_gold_by_name_whatever_the_letter() -> None:
    ref = "Node 3 departs at step 9. So the disturbance at step 20 started at Node 1: option B."
    target = Target("root_cause", "choice", "B", n_options=3, reference=ref,
                    options=ROOT_OPTIONS)
    done = ["<think>So the disturbance at step 20 started at Node 1: option A.</think>"
            "<answer>A</answer>",  # the right node under the wrong letter: paid
            "<think>So the disturbance at step 20 started at Node 3: option B.</think>"
            "<answer>B</answer>",  # the right letter for the wrong node: not paid
            "<answer>B</answer>"]
    assert conclusion(done, [target] * 3) == [1.0, 0.0, 0.0]
    by_letter = Target("correlation", "choice", "B", n_options=3, options=ROOT_OPTIONS,
                       reference="Via Node 1: 26 + 4 = 30: matches. So option B.")
    assert reasoned_gold(target) == 1 and reasoned_gold(by_letter) is None
    assert conclusion(done[:1], [by_letter]) == [0.0]  # nothing to compare against


@pytest.mark.parametrize("task,by_name", [("root_cause", True), ("propagation", True),
                                          ("entity", True), ("correlation", False),
                                          ("etiological", False)])
def test_the_references_that_conclude_by_name_name_their_gold(task: str, by_name: bool) -> None:
    """Where a task's reference concludes by name, it names its gold (so the metric reads
    every question of the task); where it does not, no question is read."""
    from rlsys.train.data import TaskMix

    for s in generate(5, range(30), TaskMix.of([task]), EnvConfig(n_options=3)):
        t = Target.from_record(s.to_record())
        assert (reasoned_gold(t) == ord(t.gold_letter) - 65) if by_name else (
            reasoned_gold(t) is None), s.rationale
