"""The built-in rule rewards named by the product card; importing ``rewards`` registers them.

======================  ==========  ==========================================================
name                    kinds       value
======================  ==========  ==========================================================
``format``              all         1 if ``<think>..</think><answer>..</answer>`` else 0
``exact_match``         choice      1 if the answered letter is the gold letter else 0
``exp_mae``             sequence    ``exp(-alpha * MAE)`` (TimeOmni-1), 0 for invalid lists
``horizon_bonus``       sequence    ``bonus`` if a finite list of the horizon's length
``streasoner_forecast`` sequence    STReasoner's ``mean(1 - clip(|p-g|/|g|, 0, 1))``
``accuracy``            choice,     exact_match on choices, exp_mae(alpha=0.1) on sequences:
                        sequence    what ``strl score`` reports as "score"
======================  ==========  ==========================================================

STReasoner's training reward ``0.5 * accuracy + 0.5 * format`` is a config, not a reward:
two specs with weight 0.5 each. The judge reward for text answers lives in ``judge.py``.

All of them are pure Python on purpose: a forecast has tens of values, and numpy's
per-call overhead on arrays that small costs more than the arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rewards.extract import (
    is_strictly_formed,
    is_well_formed,
    parse_choice,
    parse_sequence,
    value_matches,
)
from rewards.registry import reward
from rewards.types import CHOICE, SEQUENCE, VALUE, Target


@reward("format")
def format_reward(completions: Sequence[str], targets: Sequence[Target],
                  strict: bool = False) -> list[float]:
    """1.0 where ``ANSWER_FORMAT_RE`` fullmatches: ``<think>...</think><answer>...</answer>``.

    With ``strict=True``: exactly one think block and one non-empty answer block with no
    stray tags inside (``is_strictly_formed``); the seed regex can be gamed.

    >>> format_reward(["<think>a</think> <answer>B</answer>", "<answer>B</answer>"], [None] * 2)
    [1.0, 0.0]
    >>> format_reward(["<think></think></answer>x<answer></answer>"], [None], strict=True)
    [0.0]
    """
    check = is_strictly_formed if strict else is_well_formed
    return [1.0 if check(c) else 0.0 for c in completions]


def exact_match_one(completion: str, target: Target) -> float:
    """1.0 if the completion answers the target's gold letter."""
    ex = parse_choice(completion, target.n_options)
    return 1.0 if ex.reason is None and ex.value == target.gold_letter else 0.0


@reward("exact_match", kinds=(CHOICE,))
def exact_match(completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
    """1.0 where the extracted letter equals the gold letter (case-insensitive).

    >>> t = Target("entity", "choice", "<answer>C</answer>", n_options=4)
    >>> exact_match(["<answer>(c)</answer>", "<answer>D</answer>"], [t, t])
    [1.0, 0.0]
    """
    return [exact_match_one(c, t) for c, t in zip(completions, targets, strict=True)]


def mean_abs_error(pred: Sequence[float], gold: Sequence[float]) -> float:
    """MAE of two equally long sequences.

    >>> mean_abs_error([1.0, 2.0, 4.0], [1.0, 3.0, 2.0])
    1.0
    """
    if len(pred) != len(gold):
        raise ValueError(f"lengths differ: {len(pred)} predicted, {len(gold)} gold")
    return sum([abs(p - g) for p, g in zip(pred, gold, strict=True)]) / len(gold)


def _scale(target: Target) -> float:
    s = target.scale
    return s if s > 0 and math.isfinite(s) else 1.0


@reward("exp_mae", kinds=(SEQUENCE,))
class ExpMAE:
    """TimeOmni-1's ``exp(-alpha * MAE)``; a list of the wrong length or with nan/inf scores 0.

    With ``normalize=True`` the MAE is divided by ``target.scale`` (1 if scale <= 0), so
    one ``alpha`` suits series of any magnitude.

    >>> t = Target("forecasting", "sequence", "[1.0, 2.0, 3.0]")
    >>> ExpMAE(alpha=0.1)(["<answer>[1, 2, 6]</answer>", "<answer>[1, 2]</answer>"], [t, t])
    [0.9048374180359595, 0.0]
    """

    def __init__(self, alpha: float = 0.1, normalize: bool = False) -> None:
        if not (math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"alpha must be finite and >= 0, got {alpha!r}")
        self.alpha = float(alpha)
        self.normalize = bool(normalize)

    def score_one(self, completion: str, target: Target) -> float:
        """The reward of one completion."""
        ex = parse_sequence(completion, target.horizon)
        if ex.reason is not None:
            return 0.0
        mae = mean_abs_error(ex.value, target.gold_values)  # type: ignore[arg-type]
        if self.normalize:
            mae /= _scale(target)
        return math.exp(-self.alpha * mae)

    def __call__(self, completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
        return [self.score_one(c, t) for c, t in zip(completions, targets, strict=True)]


@reward("horizon_bonus", kinds=(SEQUENCE,))
class HorizonBonus:
    """``bonus`` when the answer is a finite list exactly ``horizon`` long, else 0.

    TimeOmni-1 keeps this separate from the error term; nan/inf lists get no bonus because
    a length check is meant to reward a usable forecast, not a well-counted one.
    """

    def __init__(self, bonus: float = 0.1) -> None:
        if not math.isfinite(bonus):
            raise ValueError(f"bonus must be finite, got {bonus!r}")
        self.bonus = float(bonus)

    def __call__(self, completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
        return [
            self.bonus if parse_sequence(c, t.horizon).reason is None else 0.0
            for c, t in zip(completions, targets, strict=True)
        ]


def streasoner_relative_score(pred: Sequence[float], gold: Sequence[float]) -> float:
    """STReasoner's ``mean(1 - clip(|p - g| / |g|, 0, 1))`` over the gold horizon.

    A prediction longer than the gold is truncated; positions it does not cover score 0
    (STReasoner zero-pads, which scores 0 there too unless the gold is exactly 0). Where
    ``g == 0`` the relative error is 0 for an exact hit and 1 otherwise (the limit of
    ``|p - g| / |g|`` as ``|g| -> 0``), so there is no division by zero.

    >>> streasoner_relative_score([10.0, 5.0], [10.0, 4.0])  # (1 + (1 - 0.25)) / 2
    0.875
    >>> streasoner_relative_score([10.0], [10.0, 4.0])
    0.5
    """
    total = 0.0
    for p, g in zip(pred, gold, strict=False):
        d = abs(p - g)
        if g == 0.0:
            total += 1.0 if d == 0.0 else 0.0
        else:
            total += 1.0 - min(d / abs(g), 1.0)
    return total / len(gold)


@reward("streasoner_forecast", kinds=(SEQUENCE,))
class STReasonerForecast:
    """STReasoner's forecast score; ``with_horizon_bonus`` adds its ``min(1, s + bonus)``.

    The bonus applies when the answered length equals the horizon. Any list is scored
    (padded/truncated); an answer with no list or with nan/inf scores 0.
    """

    def __init__(self, with_horizon_bonus: bool = False, bonus: float = 0.1) -> None:
        if not math.isfinite(bonus):
            raise ValueError(f"bonus must be finite, got {bonus!r}")
        self.with_horizon_bonus = bool(with_horizon_bonus)
        self.bonus = float(bonus)

    def score_one(self, completion: str, target: Target) -> float:
        """The reward of one completion."""
        ex = parse_sequence(completion)
        if ex.reason is not None:
            return 0.0
        pred: list[float] = ex.value  # type: ignore[assignment]
        s = streasoner_relative_score(pred, target.gold_values)
        if self.with_horizon_bonus and len(pred) == target.horizon:
            s = min(1.0, s + self.bonus)
        return s

    def __call__(self, completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
        return [self.score_one(c, t) for c, t in zip(completions, targets, strict=True)]


_ACCURACY_SEQUENCE = ExpMAE(alpha=0.1)


def accuracy_one(completion: str, target: Target) -> float:
    """exact_match for a choice target, exp_mae(alpha=0.1) for a sequence target, and for
    a value target 1.0 when the answer says the gold value (numbers within the target's
    tolerance; `rewards.extract.value_matches`)."""
    if target.kind == CHOICE:
        return exact_match_one(completion, target)
    if target.kind == SEQUENCE:
        return _ACCURACY_SEQUENCE.score_one(completion, target)
    if target.kind == VALUE:
        return 1.0 if value_matches(completion, target.answer, target.tolerance) else 0.0
    raise ValueError(f"accuracy does not apply to {target.kind!r} targets")


@reward("accuracy", kinds=(CHOICE, SEQUENCE, VALUE))
def accuracy(completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
    """exact_match on choice targets, exp_mae(alpha=0.1) on sequence targets, the value
    within tolerance on value targets.

    >>> t = Target("align", "value", "15", tolerance=1)
    >>> accuracy(["<answer>16</answer>", "<answer>17</answer>"], [t, t])
    [1.0, 0.0]
    """
    return [accuracy_one(c, t) for c, t in zip(completions, targets, strict=True)]
