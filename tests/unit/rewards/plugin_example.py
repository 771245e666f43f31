"""An example user reward file, loaded by tests through ``RewardSpec(module=<this path>)``.

It is what a researcher writes in their own file: a plain function reward with a keyword
parameter, and a module-level class reward. Names carry a prefix so they cannot clash
with built-ins.
"""

from __future__ import annotations

from collections.abc import Sequence

from rewards import Target, reward


@reward("plugin_len_penalty", kinds=("choice", "sequence"))
def len_penalty(
    completions: Sequence[str], targets: Sequence[Target], max_chars: int = 2000
) -> list[float]:
    """-1.0 for completions longer than ``max_chars``, else 0.0."""
    return [-1.0 if len(c) > max_chars else 0.0 for c in completions]


@reward("plugin_contains", kinds=("text",))
class Contains:
    """``value`` when the completion mentions ``word``."""

    def __init__(self, word: str, value: float = 1.0) -> None:
        self.word = word
        self.value = value

    def __call__(self, completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
        return [self.value if self.word in c else 0.0 for c in completions]
