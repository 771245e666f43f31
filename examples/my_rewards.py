"""Your own rewards, in one file: decorate, then name them in the config.

    rewards:
      - {name: exact_match, weight: 1.0}
      - {name: my_len_penalty, weight: 0.1, module: examples/my_rewards.py,
         params: {max_chars: 1500}}

A reward takes the batch of completions and their targets (`rewards.Target`: task, kind,
gold answer, options, horizon, ...) and returns one float per completion. `kinds` says which
targets it applies to ("choice", "sequence", "text"); it never sees the others.
"""

from __future__ import annotations

from collections.abc import Sequence

from rewards import Target, parse_choice, reward


@reward("my_len_penalty", kinds=("choice", "sequence"))
def my_len_penalty(completions: Sequence[str], targets: Sequence[Target],
                   max_chars: int = 2000) -> list[float]:
    """-1 for a completion longer than `max_chars` characters, else 0."""
    return [-1.0 if len(c) > max_chars else 0.0 for c in completions]


@reward("my_confident_letter", kinds=("choice",))
class ConfidentLetter:
    """`bonus` when the answer is one clean letter (no 'A or B' hedging), else 0."""

    def __init__(self, bonus: float = 0.1) -> None:
        self.bonus = bonus

    def __call__(self, completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
        return [self.bonus if parse_choice(c, t.n_options).ok else 0.0
                for c, t in zip(completions, targets, strict=True)]


@reward("my_letter", kinds=("choice",))
def my_letter(completions: Sequence[str], targets: Sequence[Target],
              letter: str = "A") -> list[float]:
    """1 when the answer is `letter`, whatever the question: a control reward. Any policy
    that writes valid answers can learn it, so GRPO on it must raise its objective; if it
    does not, the loop is broken, not the task too hard (docs/training.md)."""
    want = letter.strip().upper()
    return [1.0 if (ex := parse_choice(c, t.n_options)).ok and ex.value == want else 0.0
            for c, t in zip(completions, targets, strict=True)]
