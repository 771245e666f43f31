"""S-GRPO's spatial bonus (STReasoner) as pure functions over reward arrays.

For each prompt the rollout makes ``n`` completions with the graph and ``n`` from the same
prompt with the ``Graph Structure: ...`` clause removed. STReasoner pairs them by index::

    helped_k = R_graph[k] > threshold * R_nograph[k]        (threshold = 0.8)
    reward_k = R_graph[k] + weight * helped_k                (weight = 0.1)

The bonus is added to the with-graph rollout's reward *before* group normalisation;
graph-free rollouts get no gradient. ``helped_rate`` is what to log ("how often the graph
helped").

Consequences of the definition worth knowing: the rule assumes non-negative rewards (with
``R_nograph < 0`` the bar ``0.8 * R_nograph`` sits *above* ``R_nograph``); equal positive
rewards count as helped (the 0.8 is a tolerance, not a margin); two zeros do not.

:func:`spatial_bonus_group_mean` is a lower-variance variant: each with-graph reward is
compared with ``threshold * mean(R_nograph)`` of the whole group, so one lucky graph-free
sample does not decide the bonus of its pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SpatialResult:
    """Per-rollout bonus (``weight * helped``), the helped mask, and its mean."""

    bonus: np.ndarray
    helped: np.ndarray
    helped_rate: float


def _as_rewards(x: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} holds non-finite rewards")
    return a


def _result(helped: np.ndarray, weight: float) -> SpatialResult:
    rate = float(helped.mean()) if helped.size else 0.0
    return SpatialResult(bonus=weight * helped.astype(np.float64), helped=helped, helped_rate=rate)


def spatial_bonus(
    r_graph: Sequence[float] | np.ndarray,
    r_nograph: Sequence[float] | np.ndarray,
    threshold: float = 0.8,
    weight: float = 0.1,
) -> SpatialResult:
    """STReasoner's paired rule: ``helped_k = R_graph[k] > threshold * R_nograph[k]``.

    An empty group gives empty arrays and ``helped_rate == 0.0``.

    >>> r = spatial_bonus([1.0, 0.5, 0.0], [1.0, 1.0, 0.0])
    >>> r.helped.tolist(), r.bonus.tolist(), round(r.helped_rate, 3)
    ([True, False, False], [0.1, 0.0, 0.0], 0.333)
    """
    g = _as_rewards(r_graph, "r_graph")
    ng = _as_rewards(r_nograph, "r_nograph")
    if g.shape != ng.shape:
        raise ValueError(
            f"r_graph and r_nograph pair by index: lengths {g.size} and {ng.size} differ"
        )
    return _result(g > threshold * ng, weight)


def spatial_bonus_group_mean(
    r_graph: Sequence[float] | np.ndarray,
    r_nograph: Sequence[float] | np.ndarray,
    threshold: float = 0.8,
    weight: float = 0.1,
) -> SpatialResult:
    """Variant: ``helped_k = R_graph[k] > threshold * mean(R_nograph)``; lengths may differ.

    >>> spatial_bonus_group_mean([1.0, 0.5], [1.0, 0.0, 0.5]).helped.tolist()
    [True, True]
    """
    g = _as_rewards(r_graph, "r_graph")
    ng = _as_rewards(r_nograph, "r_nograph")
    if ng.size == 0:
        raise ValueError("r_nograph is empty: there is no graph-free baseline to compare with")
    return _result(g > threshold * float(ng.mean()), weight)
