"""Evaluation metrics: validity first, quality on the valid answers (TimeOmni-1)."""

from __future__ import annotations

import math

import pytest

from rewards import Target, TaskMetrics, evaluate

ENTITY = Target("entity", "choice", "B", n_options=4)
FORECAST = Target("forecasting", "sequence", "[1.0, 2.0, 3.0]")
PATH = Target("path_description", "text", "Node 0 -> Node 2")


def ans(inner: str) -> str:
    return f"<think>t</think><answer>{inner}</answer>"


def test_mixed_batch_hand_computed() -> None:
    completions = [
        ans("B"),  # valid, right
        ans("A"),  # valid, wrong
        ans("E"),  # out of range: invalid
        ans("[2, 2, 5]"),  # valid, MAE 1
        ans("[1, 2]"),  # wrong length: invalid
        ans("Node 0 then Node 2"),  # valid text
        "no tags at all",  # invalid text
    ]
    targets = [ENTITY, ENTITY, ENTITY, FORECAST, FORECAST, PATH, PATH]
    m = evaluate(completions, targets)
    assert list(m) == ["entity", "forecasting", "path_description", "all"]
    assert m["entity"] == TaskMetrics(3, 2, 2 / 3, 0.5, None, None, strict_format=1.0,
                                      modal_answer=0.5)
    assert m["forecasting"] == TaskMetrics(2, 1, 0.5, None, 1.0, math.exp(-0.1), 1.0)
    assert m["path_description"] == TaskMetrics(2, 1, 0.5, None, None, None, 0.5)
    assert m["all"] == TaskMetrics(7, 4, 4 / 7, 0.5, 1.0, math.exp(-0.1), 6 / 7,
                                   modal_answer=0.5)


def test_accuracy_is_none_without_valid_choice_answers() -> None:
    m = evaluate([ans("maybe"), "nothing"], [ENTITY, ENTITY])
    assert m["entity"] == TaskMetrics(2, 0, 0.0, None, None, None, strict_format=0.5)


def test_the_claims_of_the_reasoning_are_counted_and_checked() -> None:
    from rewards.rationale import Facts

    facts = Facts.of([[1.0] * 10 + [2.0] * 10, [1.0] * 20], [[0, 1, 2]])
    t = Target("root_cause", "choice", "A", n_options=2, facts=facts)
    m = evaluate(["<think>Node 0 departs at step 10. Node 1 departs at step 12. Node 0->Node 1"
                  " (lag 2).</think><answer>A</answer>",
                  "<think>Node 1 never departs.</think><answer>B</answer>",
                  "<answer>A</answer>"], [t] * 3)["root_cause"]
    assert (m.claims, m.claims_verified, m.claim_accuracy) == (5, 4, 0.8)
    assert m.strict_format == pytest.approx(2 / 3) and m.accuracy == pytest.approx(2 / 3)
    assert evaluate([ans("A")], [ENTITY])["entity"].claim_accuracy is None  # nothing to check


def test_consistency_is_the_share_of_answers_that_follow_the_reasoning() -> None:
    said = ["<think>B is too late. So option C.</think><answer>C</answer>",  # follows
            "<think>So option C.</think><answer>A</answer>",  # answers against it
            "<think>option A, then option B.</think><answer>B</answer>",  # the last one counts
            "<think>no conclusion</think><answer>D</answer>",  # concludes nothing: not counted
            "<think>So option C.</think><answer>Z</answer>"]  # invalid: not counted
    m = evaluate(said, [ENTITY] * 5)["entity"]
    assert m.consistency == pytest.approx(2 / 3)
    assert evaluate([ans("B")], [ENTITY])["entity"].consistency is None


def test_conclusion_accuracy_reads_the_reasoning_apart_from_the_letter() -> None:
    ref = "So the disturbance at step 20 started at Node 1: option B."
    root = Target("root_cause", "choice", "B", n_options=3, reference=ref,
                  options=("Node 3", "Node 1", "Node 2"))
    said = ["<think>So it started at Node 1: option A.</think><answer>A</answer>",  # reached
            "<think>So it started at Node 3: option B.</think><answer>B</answer>",  # lucky letter
            "<think>So it started at Node 1: option B.</think><answer>Z</answer>",  # invalid too
            "<answer>B</answer>"]  # no reasoning: not reached, though its letter is right
    m = evaluate(said, [root] * 4)["root_cause"]
    assert m.conclusion_accuracy == pytest.approx(2 / 4) and m.accuracy == pytest.approx(2 / 3)
    assert evaluate(said[:1], [ENTITY])["entity"].conclusion_accuracy is None  # no reference


def test_alpha_and_non_finite_forecasts() -> None:
    m = evaluate([ans("[1, 2, 5]"), ans("[1, nan, 3]")], [FORECAST, FORECAST], alpha=1.0)
    # only the finite forecast counts: MAE 2/3
    assert m["forecasting"].n_valid == 1
    assert m["forecasting"].mae == pytest.approx(2 / 3)
    assert m["forecasting"].exp_mae == pytest.approx(math.exp(-2 / 3))


def test_st_test_rows_answered_with_their_gold(st_rows: list[dict]) -> None:
    targets = [Target.from_record(r) for r in st_rows]
    comps = [
        r["output"] if "<answer>" in r["output"] else f"<answer>{r['output']}</answer>"
        for r in st_rows
    ]
    m = evaluate(comps, targets)
    assert m["all"].success_rate == 1.0 and m["all"].accuracy == 1.0
    assert m["forecasting"].mae == 0.0 and m["forecasting"].exp_mae == 1.0
    assert len(m) == 5


def test_input_checks() -> None:
    with pytest.raises(ValueError, match="2 completions but 1 targets"):
        evaluate(["a", "b"], [PATH])
    with pytest.raises(ValueError, match="reserved"):
        evaluate(["a"], [Target("all", "text", "x")])
    assert evaluate([], [])["all"] == TaskMetrics(0, 0, 0.0, None, None, None)


def test_modal_answer_exposes_a_policy_that_answers_one_letter() -> None:
    constant = evaluate([ans("B")] * 4 + [ans("Z")], [ENTITY] * 5)["entity"]
    assert constant.modal_answer == 1.0  # the invalid answer is not counted
    mixed = evaluate([ans("A"), ans("B"), ans("C"), ans("B")], [ENTITY] * 4)["entity"]
    assert mixed.modal_answer == pytest.approx(0.5)
    assert evaluate([ans("[1, 2, 3]")], [FORECAST])["forecasting"].modal_answer is None
