"""Evaluation metrics per task, in TimeOmni-1's convention: validity first, quality on valid.

For each task, and for all targets together (the row ``"all"``):

* ``success_rate`` = ``n_valid / n``: the share of completions with an answer of the right
  kind that can be used. Choice: a letter within the options. Sequence: a list of finite
  numbers exactly ``horizon`` long. Text and value: an ``<answer>`` block with non-empty
  content.
* ``accuracy``: exact match over the *valid* choice and value answers (a value within the
  target's tolerance; None when there are none).
* ``mae``: mean absolute error over the *valid* forecasts (None when there are none).
* ``exp_mae``: mean of ``exp(-alpha * MAE)`` over the same valid forecasts (None likewise).
* ``strict_format``: the share of completions that are strictly formed (one ``<think>``, one
  non-empty ``<answer>``, no stray tags: ``is_strictly_formed``).
* ``consistency``: over the valid choice answers whose ``<think>`` concludes with an option
  (its last "option X"), the share whose answer is that option: does the answer follow the
  reasoning? (None when no think block concludes.)
* ``conclusion_accuracy``: over the choice targets whose reference rationale concludes
  with the gold by name (``rewards.rationale.reasoned_gold``: root_cause, propagation,
  entity), the share of completions whose ``<think>`` concludes with the gold by name too
  ("started at Node 2: option C." names Node 2), whichever letter it then wrote. Chance is
  1/options, as for accuracy; above accuracy when the reasoning reaches the gold and the
  lookup of its letter fails. (None without such targets.)
* ``modal_answer``: over the valid choice answers, the share that are the letter answered
  most often. About 1/options when the letters follow the questions; 1.0 when the same
  letter is answered whatever the question, which then scores the share of golds that are
  that letter. Read it beside accuracy. (None without valid choice answers.)
* ``claims``, ``claims_verified``, ``claim_accuracy``: the verifiable claims the
  ``<think>`` blocks make (``rewards.rationale``), how many the question's data confirm, and
  their ratio (None without claims, or for targets without data to check against).

Quality metrics are conditional on success, so a model that answers rarely but well shows a
low ``success_rate`` and a high ``accuracy``; read the two together. (The training rewards
instead score an invalid answer 0: a different question, "how good is the average
completion".) The ``"all"`` row pools every task; its ``mae`` mixes series of different
magnitudes and is only a rough summary.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from rewards.builtin import mean_abs_error
from rewards.extract import (
    answer_text,
    is_strictly_formed,
    parse_choice,
    parse_sequence,
    value_matches,
)
from rewards.rationale import OPTION_LETTER, check, concluded, reasoned_gold, reasoning
from rewards.types import CHOICE, SEQUENCE, VALUE, Target

ALL = "all"


@dataclass(frozen=True)
class TaskMetrics:
    """Metrics of one task (or of all tasks): see the module docstring for the convention."""

    n: int
    n_valid: int
    success_rate: float
    accuracy: float | None
    mae: float | None
    exp_mae: float | None
    strict_format: float = 0.0
    claims: int = 0
    claims_verified: int = 0
    claim_accuracy: float | None = None
    consistency: float | None = None
    modal_answer: float | None = None
    conclusion_accuracy: float | None = None


def concluded_option(completion: str) -> str | None:
    """The option a completion's reasoning concludes with: the last "option X" of its
    ``<think>`` blocks (None when they name none).

    >>> concluded_option("<think>C is too late. So option B.</think><answer>A</answer>")
    'B'
    """
    found = OPTION_LETTER.findall(reasoning(completion))
    return found[-1] if found else None


class _Tally:
    __slots__ = ("n", "n_valid", "n_choice", "n_correct", "n_seq", "abs_err", "exp_sum",
                 "n_strict", "claims", "verified", "n_concluded", "n_consistent", "letters",
                 "n_reasoned", "n_reasoned_gold")

    def __init__(self) -> None:
        self.n = self.n_valid = self.n_choice = self.n_correct = self.n_seq = 0
        self.n_strict = self.claims = self.verified = 0
        self.n_concluded = self.n_consistent = 0
        self.n_reasoned = self.n_reasoned_gold = 0
        self.abs_err = self.exp_sum = 0.0
        self.letters: Counter[str] = Counter()

    def metrics(self) -> TaskMetrics:
        return TaskMetrics(
            n=self.n,
            n_valid=self.n_valid,
            success_rate=self.n_valid / self.n if self.n else 0.0,
            accuracy=self.n_correct / self.n_choice if self.n_choice else None,
            mae=self.abs_err / self.n_seq if self.n_seq else None,
            exp_mae=self.exp_sum / self.n_seq if self.n_seq else None,
            strict_format=self.n_strict / self.n if self.n else 0.0,
            claims=self.claims,
            claims_verified=self.verified,
            claim_accuracy=self.verified / self.claims if self.claims else None,
            consistency=self.n_consistent / self.n_concluded if self.n_concluded else None,
            modal_answer=(self.letters.most_common(1)[0][1] / self.letters.total()
                          if self.letters else None),
            conclusion_accuracy=(self.n_reasoned_gold / self.n_reasoned
                                 if self.n_reasoned else None),
        )


def evaluate(
    completions: Sequence[str], targets: Sequence[Target], alpha: float = 0.1
) -> dict[str, TaskMetrics]:
    """Metrics per task (in order of first appearance) and the pooled row ``"all"``.

    >>> t = Target("entity", "choice", "B", n_options=4)
    >>> m = evaluate(["<answer>B</answer>", "<answer>Z</answer>", "<answer>A</answer>"], [t] * 3)
    >>> m["entity"].success_rate, m["entity"].accuracy
    (0.6666666666666666, 0.5)
    """
    if len(completions) != len(targets):
        raise ValueError(f"{len(completions)} completions but {len(targets)} targets")
    tallies: dict[str, _Tally] = {}
    pooled = _Tally()
    for c, t in zip(completions, targets, strict=True):
        if t.task == ALL:
            raise ValueError(f"task name {ALL!r} is reserved for the pooled row")
        tally = tallies.get(t.task)
        if tally is None:
            tally = tallies[t.task] = _Tally()
        strict = is_strictly_formed(c)
        think = reasoning(c)
        claims = check(think, t.facts) if t.facts is not None else []
        for tl in (tally, pooled):
            tl.n += 1
            tl.n_strict += strict
            tl.claims += len(claims)
            tl.verified += sum(cl.ok for cl in claims)
        if t.kind == CHOICE:
            gold = reasoned_gold(t)
            if gold is not None:
                reached = concluded(think, t.options) == gold
                for tl in (tally, pooled):
                    tl.n_reasoned += 1
                    tl.n_reasoned_gold += reached
            ex = parse_choice(c, t.n_options)
            if ex.reason is None:
                hit = ex.value == t.gold_letter
                said = concluded_option(c)
                for tl in (tally, pooled):
                    tl.n_valid += 1
                    tl.n_choice += 1
                    tl.n_correct += hit
                    tl.n_concluded += said is not None
                    tl.n_consistent += said == ex.value
                    tl.letters[ex.value] += 1
        elif t.kind == SEQUENCE:
            ex = parse_sequence(c, t.horizon)
            if ex.reason is None:
                err = mean_abs_error(ex.value, t.gold_values)  # type: ignore[arg-type]
                for tl in (tally, pooled):
                    tl.n_valid += 1
                    tl.n_seq += 1
                    tl.abs_err += err
                    tl.exp_sum += math.exp(-alpha * err)
        elif answer_text(c).reason is None:
            hit = t.kind == VALUE and value_matches(c, t.answer, t.tolerance)
            for tl in (tally, pooled):
                tl.n_valid += 1
                tl.n_choice += t.kind == VALUE
                tl.n_correct += hit
    out = {task: tally.metrics() for task, tally in tallies.items()}
    out[ALL] = pooled.metrics()
    return out
