"""Departure detection on synthetic series with known onsets."""

from __future__ import annotations

import numpy as np
import pytest

from envs.detect import TAU, baseline_len, departures

T = 60
W = baseline_len(T)  # 18


def step(level: float, at: int, to: float, length: int = T) -> np.ndarray:
    x = np.full(length, level)
    x[at:] = to
    return x


def test_baseline_len() -> None:
    assert baseline_len(60) == 18
    assert baseline_len(10) == 6  # never shorter than 6 steps


@pytest.mark.parametrize("t", [W, W + 1, 30, T - 2])
def test_step_gives_its_onset(t: int) -> None:
    dep = departures(step(10.0, t, 13.0)[None])
    assert dep.onset.tolist() == [t]
    assert dep.sign.tolist() == [1.0]
    assert dep.peak[0] == pytest.approx(0.3)
    assert dep.baseline[0] == 10.0


def test_negative_step_has_sign_minus_one() -> None:
    dep = departures(step(50.0, 30, 35.0)[None])
    assert dep.onset[0] == 30
    assert dep.sign[0] == -1
    assert dep.peak[0] == pytest.approx(0.3)


def test_single_step_spike_is_not_an_onset() -> None:
    x = np.full(T, 10.0)
    x[30] = 20.0
    dep = departures(x[None])
    assert dep.onset[0] == -1
    assert dep.peak[0] == pytest.approx(1.0)  # the spike still sets the peak


def test_a_step_on_the_last_step_is_not_an_onset() -> None:
    assert departures(step(10.0, T - 1, 20.0)[None]).onset[0] == -1


def test_threshold_is_strict() -> None:
    below = departures(step(10.0, 30, 10.0 * (1 + TAU * 0.99))[None])
    above = departures(step(10.0, 30, 10.0 * (1 + TAU * 1.01))[None])
    assert below.onset[0] == -1
    assert above.onset[0] == 30


def test_step_early_in_the_baseline_window_is_absorbed_by_the_baseline() -> None:
    dep = departures(step(10.0, 3, 15.0)[None])  # most of the window is at the new level
    assert dep.onset[0] == -1
    assert dep.baseline[0] == 15.0


def test_step_late_in_the_baseline_window_is_reported_no_earlier_than_its_end() -> None:
    dep = departures(step(10.0, W - 3, 15.0)[None])
    assert dep.baseline[0] == 10.0
    assert dep.onset[0] == W  # never inside the baseline window


def test_baseline_is_the_window_median() -> None:
    x = np.full(T, 10.0)
    x[: W // 2] = 9.0  # half the window at 9, half at 10
    x[W : W + 3] = [11.0, 9.5, 10.5]
    base = departures(x[None]).baseline[0]
    assert base == 10.0  # the upper median of an even window (np.median would give 9.5)
    assert departures(x[None]).onset[0] == -1


def test_rows_are_independent() -> None:
    x = np.stack([step(10.0, 25, 14.0), np.full(T, 5.0), step(-8.0, 40, -12.0)])
    dep = departures(x)
    assert dep.onset.tolist() == [25, -1, 40]
    assert dep.peak.tolist() == pytest.approx([0.4, 0.0, 0.5])
    assert dep.baseline.tolist() == [10.0, 5.0, -8.0]
    # deviation is relative to |baseline|: a negative series moving further down is -1
    assert dep.sign[2] == -1


def test_peak_after_onset_is_the_largest_deviation() -> None:
    x = np.full(T, 100.0)
    x[30:40] = 130.0
    x[40:45] = 160.0
    x[45:] = 95.0
    dep = departures(x[None])
    assert dep.onset[0] == 30
    assert dep.peak[0] == pytest.approx(0.6)
    assert dep.sign[0] == 1
