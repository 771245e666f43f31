"""The rollout correction: importance weights for tokens sampled by a policy other than the
learner's (vLLM's numerics, or an older version of the weights in asynchronous GRPO).

Three policies take part (decoupled PPO, Hilton et al. 2021; veRL's "rollout correction",
AReaL's proximal policy):
- pi_rollout, the behaviour policy: the engine that sampled the tokens, whose log-probs
  arrive with every sample;
- pi_old, the proximal policy: the learner's weights before this step's update. strl takes
  exactly one optimizer step per batch, so pi_old is the learner's own forward pass on the
  batch, detached: no second forward is needed;
- pi_theta, the policy being updated.

`algorithm.correction` picks how the gap between pi_rollout and pi_old is handled:
- "none": bypass. pi_rollout stands in for pi_old, so the PPO ratio pi_theta / pi_rollout
  carries the mismatch and its clip zeroes the gradient of any token the mismatch pushed out
  of range. This is strl's loss before the correction existed, bit for bit.
- "tis": truncated importance sampling, per token (Yao et al. 2025; veRL `rollout_is=token`,
  slime `--use-tis`): w_t = min(pi_old(y_t) / pi_rollout(y_t), C), C = `correction_cap`.
- "mis": masked importance sampling, per sequence: the sequence's geometric-mean ratio
  rho = exp(mean_t log(pi_old(y_t) / pi_rollout(y_t))) decides; a sequence with rho outside
  [lo, hi] (`correction_bounds`) gets w = 0 on every token, the others w = 1. The geometric
  mean, not the product, so that a long completion is not rejected for its length alone
  (veRL's "geometric" level).

With "tis" and "mis" the registered loss sees pi_old as its `old_logp`, and each token's loss
is multiplied by w (detached).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

CorrectionKind = Literal["none", "tis", "mis"]
CORRECTIONS: tuple[str, ...] = ("none", "tis", "mis")


@dataclass(frozen=True)
class Correction:
    """How `policy_loss` corrects for the rollout policy (see the module docstring)."""

    kind: CorrectionKind = "none"
    cap: float = 2.0  # tis: the largest token weight C
    lo: float = 0.8  # mis: the lowest kept sequence ratio
    hi: float = 1.25  # mis: the highest kept sequence ratio

    def __post_init__(self) -> None:
        if self.kind not in CORRECTIONS:
            raise ValueError(f"unknown correction {self.kind!r}; choose one of {CORRECTIONS}")
        if self.cap <= 0 or not (0 < self.lo <= 1 <= self.hi):
            raise ValueError(f"need cap > 0 and 0 < lo <= 1 <= hi, got cap={self.cap}, "
                             f"bounds=[{self.lo}, {self.hi}]")


@dataclass
class Weights:
    """Per-token importance weights `(B, T)` and what they did, as token means."""

    w: Tensor  # detached; 0 at masked-out positions
    mean: Tensor  # token mean of w
    truncated: Tensor  # share of tokens whose tis weight hit the cap
    rejected: Tensor  # share of tokens in sequences that mis rejected


def importance_weights(old_logp: Tensor, rollout_logp: Tensor, mask: Tensor,
                       c: Correction) -> Weights:
    """The weights of `c.kind` (tis or mis) from pi_old's and pi_rollout's log-probs of the
    sampled tokens (with "none" there are no weights: `policy_loss` does not call this).

    Both log-probs are `(B, T)`, zero (or anything) where `mask` is False; the result is
    computed in float32 at least and carries no gradient.

    >>> lp = torch.log(torch.tensor([[0.5, 0.2]]))
    >>> roll = torch.log(torch.tensor([[0.25, 0.4]]))
    >>> importance_weights(lp, roll, torch.ones(1, 2, dtype=torch.bool), Correction("tis")).w
    tensor([[2.0000, 0.5000]])
    """
    if c.kind == "none":
        raise ValueError("correction 'none' has no importance weights")
    m = mask.bool()
    dtype = torch.promote_types(old_logp.dtype, torch.float32)
    zero = torch.zeros((), dtype=dtype, device=old_logp.device)
    log_rho = torch.where(m, old_logp.detach().to(dtype) - rollout_logp.detach().to(dtype), zero)
    ones = m.to(dtype)
    n_tok = m.sum().clamp_min(1)
    if c.kind == "tis":
        # exp of a log-ratio beyond the cap is not needed: min(exp(x), C) = exp(min(x, log C))
        log_cap = torch.log(torch.tensor(c.cap, dtype=dtype))
        w = torch.exp(log_rho.clamp(max=log_cap)) * ones
        return Weights(w, w.sum() / n_tok, ((log_rho >= log_cap) & m).sum() / n_tok, zero)
    seq_log = log_rho.sum(dim=1) / m.sum(dim=1).clamp_min(1)
    keep = (seq_log >= torch.log(torch.tensor(c.lo, dtype=dtype))) \
        & (seq_log <= torch.log(torch.tensor(c.hi, dtype=dtype)))
    w = ones * keep[:, None].to(dtype)
    return Weights(w, w.sum() / n_tok, zero, (m & ~keep[:, None]).sum() / n_tok)
