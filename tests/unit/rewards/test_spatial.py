"""S-GRPO spatial bonus: STReasoner's paired rule and the group-mean variant."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards import spatial_bonus, spatial_bonus_group_mean

reward = st.floats(min_value=0.0, max_value=1.0, allow_subnormal=False)
pairs = st.integers(min_value=1, max_value=16).flatmap(
    lambda n: st.tuples(
        st.lists(reward, min_size=n, max_size=n), st.lists(reward, min_size=n, max_size=n)
    )
)


def test_hand_computed_pairs() -> None:
    r = spatial_bonus([1.0, 0.8, 0.79, 0.0, 0.5], [1.0, 1.0, 1.0, 0.0, 0.0])
    # 1 > 0.8; 0.8 is not > 0.8; 0.79 < 0.8; 0 is not > 0; 0.5 > 0
    assert r.helped.tolist() == [True, False, False, False, True]
    assert r.bonus.tolist() == [0.1, 0.0, 0.0, 0.0, 0.1]
    assert r.helped_rate == pytest.approx(0.4)
    assert r.helped.dtype == np.bool_


def test_lengths_must_match_and_rewards_be_finite() -> None:
    with pytest.raises(ValueError, match="pair by index"):
        spatial_bonus([1.0, 0.0], [1.0])
    with pytest.raises(ValueError, match="non-finite"):
        spatial_bonus([np.nan], [1.0])
    with pytest.raises(ValueError, match="1-D"):
        spatial_bonus([[1.0]], [[1.0]])
    with pytest.raises(ValueError, match="empty"):
        spatial_bonus_group_mean([1.0], [])


def test_empty_group() -> None:
    r = spatial_bonus([], [])
    assert r.bonus.size == 0 and r.helped_rate == 0.0


def test_group_mean_variant_hand_computed() -> None:
    # mean(no-graph) = 0.5, bar = 0.4
    r = spatial_bonus_group_mean([0.41, 0.4, 1.0], [1.0, 0.0], weight=0.2)
    assert r.helped.tolist() == [True, False, True]
    assert r.bonus.tolist() == [0.2, 0.0, 0.2]


@settings(deadline=None)  # shared CI cores make per-example timing noisy
@given(pairs, st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_paired_properties(p: tuple[list[float], list[float]], threshold: float, w: float) -> None:
    g, ng = p
    r = spatial_bonus(g, ng, threshold=threshold, weight=w)
    assert r.helped.tolist() == [a > threshold * b for a, b in zip(g, ng, strict=True)]
    assert set(r.bonus.tolist()) <= {0.0, w}
    np.testing.assert_array_equal(r.bonus, w * r.helped)
    assert r.helped_rate == pytest.approx(float(np.mean(r.helped)))
    # more reward with the graph never takes a bonus away
    better = spatial_bonus([a + 0.5 for a in g], ng, threshold=threshold, weight=w)
    assert (better.helped >= r.helped).all()


@settings(deadline=None)  # shared CI cores make per-example timing noisy
@given(pairs)
def test_equal_rewards_help_iff_positive(p: tuple[list[float], list[float]]) -> None:
    g, _ = p
    r = spatial_bonus(g, g)
    assert r.helped.tolist() == [a > 0 for a in g]
    assert not spatial_bonus(g, g, threshold=1.0).helped.any()


@settings(deadline=None)  # shared CI cores make per-example timing noisy
@given(pairs, st.floats(0.0, 1.0))
def test_group_mean_equals_paired_for_a_constant_baseline(
    p: tuple[list[float], list[float]], c: float
) -> None:
    g, _ = p
    paired = spatial_bonus(g, [c] * len(g))
    pooled = spatial_bonus_group_mean(g, [c] * (len(g) + 3))
    np.testing.assert_array_equal(paired.helped, pooled.helped)
