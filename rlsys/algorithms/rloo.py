"""RLOO (Ahmadian et al. 2024, "Back to Basics"): each rollout's baseline is the mean reward
of the other n - 1 rollouts of its prompt.

    A_i = r_i - (1 / (n - 1)) * sum_{j != i} r_j = n / (n - 1) * (r_i - mean_group)

An unbiased baseline (it does not depend on r_i), no std scaling.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rlsys.algorithms.core import as_groups
from rlsys.algorithms.registry import register_advantage


@register_advantage("rloo")
def rloo_advantages(rewards: Tensor | np.ndarray, n: int) -> Tensor:
    """Leave-one-out advantages, in the shape of `rewards`.

    >>> rloo_advantages(torch.tensor([1.0, 0.0, 0.0]), n=3)
    tensor([ 1.0000, -0.5000, -0.5000])
    """
    if n < 2:
        raise ValueError(f"RLOO needs n >= 2 rollouts per prompt to leave one out, got {n}")
    shape = torch.as_tensor(rewards).shape
    r = as_groups(rewards, n)
    others = (r.sum(dim=1, keepdim=True) - r) / (n - 1)
    return (r - others).reshape(shape)
