"""GRPO (DeepSeekMath) and Dr. GRPO: group-relative advantages and PPO's clipped token loss.

- advantage "grpo": (r - mean_group) / (std_group + eps);
- advantage "dr_grpo": r - mean_group (Liu et al. 2025, "Understanding R1-Zero-Like
  Training"; pair it with `aggregation: token_mean`, its length-unbiased loss);
- loss "ppo_clip": l_t = -min(r_t A, clip(r_t, 1 - clip_low, 1 + clip_high) A).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rlsys.algorithms.core import LOG_RATIO_CLAMP, as_groups, clipped_surrogate
from rlsys.algorithms.registry import Surrogate, register_advantage, register_loss


def group_advantages(
    rewards: Tensor | np.ndarray,
    n: int,
    *,
    scale_by_std: bool = True,
    eps: float = 1e-6,
) -> Tensor:
    """GRPO advantages `(r - mean_group) / (std_group + eps)`, in the shape of `rewards`.

    `std_group` is the *sample* standard deviation (Bessel's correction, divisor n - 1), as
    in veRL's `compute_grpo_outcome_advantage` and TRL's `GRPOTrainer` (both call
    `torch.std`, unbiased by default), so runs compare with theirs at equal n. Population
    std would scale every advantage up by sqrt(n / (n - 1)) (1.15 at n = 4, 1.07 at n = 8).
    A group whose rewards are all equal gets advantage 0, not NaN.

    With `scale_by_std=False` this is Dr. GRPO's `r - mean_group`: no division, so groups
    with a small spread are not up-weighted. `n = 1` is refused: a group of one has no
    baseline and an undefined sample std.

    >>> group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), n=4, scale_by_std=False)
    tensor([ 0.5000, -0.5000, -0.5000,  0.5000])
    """
    if n < 2:
        raise ValueError(f"GRPO needs n >= 2 rollouts per prompt to form a baseline, got {n}")
    shape = torch.as_tensor(rewards).shape
    r = as_groups(rewards, n)
    centred = r - r.mean(dim=1, keepdim=True)
    if scale_by_std:
        centred = centred / (r.std(dim=1, keepdim=True, correction=1) + eps)
    return centred.reshape(shape)


@register_advantage("grpo")
def grpo_advantages(rewards: Tensor | np.ndarray, n: int) -> Tensor:
    """GRPO's advantages: `group_advantages` with the std scaling."""
    return group_advantages(rewards, n, scale_by_std=True)


@register_advantage("dr_grpo")
def dr_grpo_advantages(rewards: Tensor | np.ndarray, n: int) -> Tensor:
    """Dr. GRPO's advantages: `r - mean_group`, no std scaling.

    >>> dr_grpo_advantages(torch.tensor([3.0, 1.0]), n=2)
    tensor([ 1., -1.])
    """
    return group_advantages(rewards, n, scale_by_std=False)


@register_loss("ppo_clip")
def ppo_clip(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, *,
             clip_low: float, clip_high: float) -> Surrogate:
    """PPO's clipped surrogate per token, with `r_t = exp(logp - old_logp)`:

        l_t = -min(r_t A, clip(r_t, 1 - clip_low, 1 + clip_high) A)

    The min is the pessimistic bound: for A > 0 the objective stops growing once r_t passes
    1 + clip_high, for A < 0 once it falls below 1 - clip_low; past those points the token
    has no gradient (the `clipped` tokens). `clip_high > clip_low` is DAPO's clip-higher
    (e.g. 0.28), which leaves room to raise unlikely good tokens.
    """
    ratio = torch.exp((logp - old_logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    return clipped_surrogate(ratio, adv, mask, clip_low, clip_high)
