"""CISPO (MiniMax-M1, 2025): clip the importance weight, not the update, so that no token
loses its gradient.

    l_t = -sg(clip(r_t, 1 - clip_low, 1 + clip_high)) * A * log pi_theta(y_t),
    r_t = pi_theta(y_t) / pi_old(y_t)

implemented as -sg(clip(r_t) / r_t) * r_t * A, which has the same gradient,
-clip(r_t) A grad log pi_theta(y_t), and the value -clip(r_t) A (so `pg_loss` reads like
PPO's). PPO's clip zeroes the gradient of tokens past the range, often the rare tokens a
reasoning step turns on; CISPO keeps them with a bounded weight. `clipped` marks the tokens
whose weight was clipped (their gradient is kept). MiniMax-M1 clips only above: a
`clip_low` near 1 (e.g. 0.99) leaves the lower side open.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlsys.algorithms.core import LOG_RATIO_CLAMP
from rlsys.algorithms.registry import Surrogate, register_loss


@register_loss("cispo")
def cispo(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, *,
          clip_low: float, clip_high: float) -> Surrogate:
    """CISPO's per-token loss (see the module docstring)."""
    ratio = torch.exp((logp - old_logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    weight = ratio.detach().clamp(1.0 - clip_low, 1.0 + clip_high)
    clipped = (weight != ratio.detach()) & mask
    return Surrogate(-(weight / ratio.detach()) * ratio * adv, clipped)
