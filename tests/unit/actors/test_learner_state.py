"""A learner refuses to load weights or optimizer state that are not finite: `non_finite`
finds them anywhere in a nested state (DeepSpeed's optimizer state is dicts of lists of
tensors) and says where."""

from __future__ import annotations

import torch

from actors.learner import non_finite


def test_finite_state_passes_and_integers_are_not_checked() -> None:
    state = {"weights": {"w": torch.ones(3, 3)},
             "optimizer state": {"state": {0: {"exp_avg": torch.zeros(4), "step": torch.tensor(7)}},
                                 "single_partition_of_fp32_groups": [torch.randn(10)]}}
    assert non_finite(state) == ""


def test_non_finite_values_are_counted_and_located() -> None:
    master = torch.randn(1000)
    master[::100] = float("nan")
    master[1] = float("inf")
    state = {"weights": {"lm_head.weight": torch.ones(2)},
             "optimizer state": {"single_partition_of_fp32_groups": [torch.ones(3), master]}}
    assert non_finite(state) == "optimizer state.single_partition_of_fp32_groups[1]: 11"
    many = {f"p{i}": torch.tensor([float("nan")]) for i in range(5)}
    assert non_finite(many) == "p0: 1; p1: 1; p2: 1; and 2 more"
