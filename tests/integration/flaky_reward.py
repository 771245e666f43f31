"""A plug-in reward for the fault tests: it raises on completions of odd length, so a
batch fails and is retried one by one, and only the odd ones score 0 (counted)."""

from __future__ import annotations

from collections.abc import Sequence

from rewards import Target, reward


@reward("flaky", kinds=("choice", "sequence", "text"))
def flaky(completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
    if any(len(c) % 2 for c in completions):
        raise ValueError("odd length")
    return [1.0 for _ in completions]
