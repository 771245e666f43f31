"""The reports' statistics against hand computations."""

from __future__ import annotations

import math

import pytest

from rlsys.stats import paired_change, standard_error, wilson


def test_standard_error_is_the_sample_sd_over_root_n() -> None:
    assert standard_error([1.0, 3.0]) == pytest.approx(math.sqrt(2) / math.sqrt(2))
    assert standard_error([0.5]) == 0.0


def test_paired_change_differences_each_pair() -> None:
    d = paired_change([0.0, 1.0, 0.5], [1.0, 1.0, 1.0])  # changes 1, 0, 0.5
    assert d["change"] == pytest.approx(0.5)
    assert d["se"] == pytest.approx(0.5 / math.sqrt(3))


def test_wilson_interval_matches_the_formula() -> None:
    # 40 of 100 at z = 1.96: the textbook interval (0.3094, 0.4980)
    lo, hi = wilson(0.4, 100)
    assert lo == pytest.approx(0.3094, abs=1e-4) and hi == pytest.approx(0.4980, abs=1e-4)
    assert wilson(0.0, 10)[0] == 0.0 and wilson(None, 10) is None and wilson(0.5, 0) is None
