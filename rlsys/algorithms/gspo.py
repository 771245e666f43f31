"""GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization"): the importance ratio and its
clip at the level of the sequence, the unit the reward is given to.

    s_i = exp( (1/|y_i|) * sum_t (log pi_theta(y_t) - log pi_old(y_t)) )
    l_t = -min(s_{i,t} A_i, clip(s_{i,t}, 1 - clip_low, 1 + clip_high) A_i),
    s_{i,t} = sg[s_i] * pi_theta(y_t) / sg[pi_theta(y_t)]

This is the paper's GSPO-token form: s_{i,t} equals s_i in value, and with
`aggregation: seq_mean_token_mean` (the paper's 1/|y_i| per sequence) its gradient equals
sequence-level GSPO's, s_i A_i (1/|y_i|) sum_t grad log pi_theta(y_t). A whole sequence is
clipped or not. The paper's clip ranges are far narrower than PPO's (3e-4 and 4e-4): set
`algorithm.clip_low` and `clip_high` with it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlsys.algorithms.core import LOG_RATIO_CLAMP, clipped_surrogate
from rlsys.algorithms.registry import Surrogate, register_loss


@register_loss("gspo")
def gspo(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, *,
         clip_low: float, clip_high: float) -> Surrogate:
    """GSPO-token's clipped surrogate (see the module docstring); `clipped` marks every token
    of a sequence whose ratio the clip stopped."""
    m = mask.to(logp.dtype)
    seq_log = ((logp - old_logp) * m).sum(dim=1) / m.sum(dim=1).clamp_min(1)
    seq_log = seq_log.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = torch.exp(seq_log.detach()[:, None] + logp - logp.detach())
    return clipped_surrogate(ratio, adv, mask, clip_low, clip_high)
