"""Built-in rewards: hand-computed values, the real ST-Test rows, and bounds on any input."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards import (
    ExpMAE,
    HorizonBonus,
    RewardSet,
    RewardSpec,
    STReasonerForecast,
    Target,
    accuracy,
    exact_match,
    format_reward,
    streasoner_relative_score,
)

SEQ = Target("forecasting", "sequence", "[1.0, 2.0, 3.0]", scale=2.0)
CHOICE = Target("correlation", "choice", "<answer>D</answer>", n_options=4)
TEXT = Target("path_description", "text", "Node 0 -> Node 2")


def ans(inner: str) -> str:
    return f"<think>the series rise together</think><answer>{inner}</answer>"


def own_answer(row: dict) -> str:
    """A completion that answers with the row's gold output (tagged as the prompt asks)."""
    out = row["output"]
    return "<think>ok</think>" + (out if "<answer>" in out else f"<answer>{out}</answer>")


def test_format() -> None:
    comps = [ans("D"), "<answer>D</answer>", ans("D") + " extra", "<think>x</think><answer>D"]
    assert format_reward(comps, [CHOICE] * 4) == [1.0, 0.0, 0.0, 0.0]


def test_exact_match_is_case_and_markup_insensitive() -> None:
    comps = [ans("d"), ans("**D.** via Node 3"), ans("C"), ans("D or C"), "D"]
    assert exact_match(comps, [CHOICE] * 5) == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_exp_mae_hand_computed() -> None:
    # |2-1| + |2-2| + |5-3| = 3 over 3 steps: MAE 1, normalised by scale 2: 0.5
    pred = ans("[2, 2, 5]")
    assert ExpMAE()([pred], [SEQ]) == [pytest.approx(math.exp(-0.1))]
    assert ExpMAE(alpha=1.0, normalize=True)([pred], [SEQ]) == [pytest.approx(math.exp(-0.5))]
    assert ExpMAE()([ans("[1, 2, 3]")], [SEQ]) == [1.0]


@pytest.mark.parametrize("inner", ["[1, 2]", "[1, 2, 3, 4]", "[1, nan, 3]", "up", "[1, inf, 3]"])
def test_exp_mae_invalid_predictions_score_zero(inner: str) -> None:
    assert ExpMAE()([ans(inner)], [SEQ]) == [0.0]


def test_exp_mae_normalize_guards_bad_scale() -> None:
    zero = Target("forecasting", "sequence", "[1.0]", scale=0.0)
    assert ExpMAE(alpha=1.0, normalize=True)([ans("[3]")], [zero]) == [pytest.approx(math.exp(-2))]
    with pytest.raises(ValueError, match="alpha"):
        ExpMAE(alpha=math.nan)


def test_horizon_bonus() -> None:
    comps = [ans("[9, 9, 9]"), ans("[1, 2]"), ans("[1, nan, 3]"), ans("none")]
    assert HorizonBonus()(comps, [SEQ] * 4) == [0.1, 0.0, 0.0, 0.0]
    assert HorizonBonus(bonus=0.5)(comps[:1], [SEQ]) == [0.5]


def test_streasoner_relative_score_hand_computed() -> None:
    assert streasoner_relative_score([10.0, 5.0], [10.0, 4.0]) == 0.875  # (1 + 0.75) / 2
    assert streasoner_relative_score([10.0], [10.0, 4.0]) == 0.5  # missing step scores 0
    assert streasoner_relative_score([10.0, 4.0, 99.0], [10.0, 4.0]) == 1.0  # truncated
    assert streasoner_relative_score([30.0, -4.0], [10.0, 4.0]) == 0.0  # errors clip at 1
    # gold 0: exact hit scores 1, anything else 0 -- no division by zero
    assert streasoner_relative_score([0.0, 1.0], [0.0, 2.0]) == 0.75
    assert streasoner_relative_score([0.1, 2.0], [0.0, 2.0]) == 0.5


def test_streasoner_forecast_reward_and_bonus() -> None:
    gold = Target("forecasting", "sequence", "[10, 4]")
    comps = [ans("[10, 5]"), ans("[10, 4]"), ans("[10]"), ans("[10, nan]"), ans("n/a")]
    assert STReasonerForecast()(comps, [gold] * 5) == [0.875, 1.0, 0.5, 0.0, 0.0]
    bonus = STReasonerForecast(with_horizon_bonus=True)(comps, [gold] * 5)
    assert bonus == [pytest.approx(0.975), 1.0, 0.5, 0.0, 0.0]


def test_accuracy_dispatches_by_kind() -> None:
    assert accuracy([ans("D"), ans("[2, 2, 5]")], [CHOICE, SEQ]) == [
        1.0,
        pytest.approx(math.exp(-0.1)),
    ]
    with pytest.raises(ValueError, match="does not apply"):
        accuracy([ans("x")], [TEXT])
    out = RewardSet([RewardSpec("accuracy")]).score([ans("x")], [TEXT])
    assert out.components["accuracy"] == [None] and out.total == [0.0]


def test_st_test_rows_score_one_on_their_own_output(st_rows: list[dict]) -> None:
    targets = [Target.from_record(r) for r in st_rows]
    comps = [own_answer(r) for r in st_rows]
    assert accuracy(comps, targets) == [1.0] * 4
    rs = RewardSet(
        [
            {"name": "exact_match"},
            {"name": "exp_mae"},
            {"name": "streasoner_forecast"},
            {"name": "format"},
        ]
    )
    out = rs.score(comps, targets)
    kinds = [t.kind for t in targets]
    assert out.components["format"] == [1.0] * 4
    assert out.components["exact_match"] == [1.0 if k == "choice" else None for k in kinds]
    assert out.components["exp_mae"] == [1.0 if k == "sequence" else None for k in kinds]
    assert out.components["streasoner_forecast"] == out.components["exp_mae"]


def test_st_test_rows_wrong_answers_score_below_one(st_rows: list[dict]) -> None:
    targets = [Target.from_record(r) for r in st_rows]
    wrong = {"choice": ans("A"), "sequence": ans("[19.88, 19.89, 19.90]")}
    scores = accuracy([wrong[t.kind] for t in targets], targets)
    # the paper's own STReasoner forecast: MAE (0.02 + 0.08 + 0.15) / 3
    for t, s in zip(targets, scores, strict=True):
        if t.kind == "sequence":
            assert s == pytest.approx(math.exp(-0.1 * 0.25 / 3))
        else:
            assert s == 0.0


def test_bare_untagged_gold_reads_as_the_answer(st_rows: list[dict]) -> None:
    # ST-Test's forecasting gold has no tags; a completion that is only such an answer is
    # read as it (but earns no format reward), anything else untagged is not an answer.
    row = next(r for r in st_rows if r["category"] == "forecasting")
    target = Target.from_record(row)
    assert accuracy([row["output"]], [target]) == [1.0]
    assert format_reward([row["output"]], [target]) == [0.0]
    assert accuracy([f"The forecast is {row['output']}"], [target]) == [0.0]


def test_streasoner_combined_reward(st_rows: list[dict]) -> None:
    rs = RewardSet([RewardSpec("accuracy", 0.5), RewardSpec("format", 0.5)])
    targets = [Target.from_record(r) for r in st_rows]
    assert rs([own_answer(r) for r in st_rows], targets) == [1.0] * 4
    untagged_think = [own_answer(r).replace("<think>ok</think>", "") for r in st_rows]
    assert rs(untagged_think, targets) == [0.5] * 4


@settings(deadline=None)  # shared CI cores make per-example timing noisy
@given(st.text(max_size=300))
def test_builtin_rewards_stay_in_unit_interval(text: str) -> None:
    for r, t in [
        (format_reward, TEXT),
        (exact_match, CHOICE),
        (ExpMAE(normalize=True), SEQ),
        (STReasonerForecast(with_horizon_bonus=True), SEQ),
        (accuracy, SEQ),
    ]:
        for c in (text, ans(text)):
            (v,) = r([c], [t])
            assert 0.0 <= v <= 1.0
