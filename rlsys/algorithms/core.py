"""What every RL algorithm shares: dynamic sampling, KL estimators, aggregation and
`policy_loss`, which wraps a registered loss with the rollout correction and the KL term.

Pure functions on torch tensors (rewards may also come as numpy arrays). Nothing here knows
about Ray, DeepSpeed or a model: the trainer computes advantages with the registered
estimators and the learner calls `policy_loss` on each micro-batch, so both sides can be
tested on a CPU.

Conventions
- Rollouts of one prompt are consecutive: rewards of G prompts with n rollouts each are a
  flat `(G*n,)` tensor whose blocks of n are the groups, or the same values as `(G, n)`.
- Log-probabilities are per token, shape `(B, T)`; `mask` marks the response tokens that
  carry loss (prompt and padding are False). Values at masked-out positions are ignored
  entirely, even when they are inf or NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from rlsys.algorithms.correction import Correction, Weights, importance_weights
from rlsys.algorithms.registry import Surrogate, loss_fn

KLKind = Literal["k1", "k2", "k3"]
Aggregation = Literal["token_mean", "seq_mean_token_mean"]

KL_KINDS: tuple[str, ...] = ("k1", "k2", "k3")
AGGREGATIONS: tuple[str, ...] = ("token_mean", "seq_mean_token_mean")

# exp() of a log-ratio beyond +-20 is a probability ratio of ~5e8: no meaningful update is
# that large, and e^20 still fits in float32/bfloat16 (e^89 would not). veRL clamps there too.
LOG_RATIO_CLAMP = 20.0
NO_CORRECTION = Correction()


# ---------------------------------------------------------------------------------------
# Advantages and dynamic sampling (trainer side)
# ---------------------------------------------------------------------------------------


def as_groups(rewards: Tensor | np.ndarray, n: int) -> Tensor:
    """Rewards as a float `(G, n)` tensor; raises if they do not split into groups of n."""
    if n < 1:
        raise ValueError(f"group size n must be >= 1, got {n}")
    r = torch.as_tensor(rewards)
    if not r.is_floating_point():
        r = r.to(torch.get_default_dtype())
    if r.dim() == 2:
        if r.shape[1] != n:
            raise ValueError(f"rewards of shape {tuple(r.shape)} are not groups of n={n}")
        return r
    if r.dim() != 1:
        raise ValueError(f"rewards must be (G*n,) or (G, n), got shape {tuple(r.shape)}")
    if r.numel() % n != 0:
        raise ValueError(
            f"{r.numel()} rewards do not split into groups of n={n}: "
            "every prompt needs exactly n rollouts, consecutive in the batch")
    return r.view(-1, n)


def dynamic_sampling_mask(rewards: Tensor | np.ndarray, n: int, tol: float = 1e-9) -> Tensor:
    """Bool `(G,)`: True for groups to keep, i.e. whose rewards are not all equal (DAPO).

    A group whose rewards span no more than `tol` (max - min <= tol) has zero advantage for
    every rollout, so it only dilutes the token mean; dropping it keeps the batch informative.

    >>> dynamic_sampling_mask(torch.tensor([1.0, 0.0, 0.5, 0.5]), n=2)
    tensor([ True, False])
    """
    r = as_groups(rewards, n)
    spread = r.max(dim=1).values - r.min(dim=1).values
    return spread > tol


def topup_needed(kept_groups: int, target_groups: int) -> int:
    """How many more groups to sample so that `kept_groups` reaches `target_groups` (>= 0).

    >>> topup_needed(kept_groups=5, target_groups=8), topup_needed(9, 8)
    (3, 0)
    """
    if kept_groups < 0 or target_groups < 0:
        raise ValueError(f"group counts must be >= 0, got {kept_groups=} {target_groups=}")
    return max(0, target_groups - kept_groups)


# ---------------------------------------------------------------------------------------
# Loss pieces (learner side)
# ---------------------------------------------------------------------------------------


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of `x` over positions where `mask` is true (all of them, or along `dim`).

    Masked-out values never reach the result, even when they are NaN or inf. Where no
    position is selected the mean is 0: an empty micro-batch must not poison a sum of losses.
    """
    m = mask.bool()
    total = torch.where(m, x, torch.zeros_like(x))
    if dim is None:
        return total.sum() / m.sum().clamp_min(1)
    return total.sum(dim=dim) / m.sum(dim=dim).clamp_min(1)


def kl_penalty(logp: Tensor, ref_logp: Tensor, kind: KLKind = "k3") -> Tensor:
    """Per-token estimate of KL(policy || reference) from sampled-token log-probs.

    With `logr = ref_logp - logp` (Schulman, "Approximating KL divergence", 2020):
    - k1 = logp - ref_logp: unbiased, high variance, can be negative;
    - k2 = 0.5 * (logp - ref_logp)**2: biased, always >= 0;
    - k3 = exp(logr) - logr - 1: unbiased and low-variance, always >= 0 (the DeepSeekMath
      GRPO penalty; veRL's "low_var_kl").

    For k3 the log-ratio is clamped to +-LOG_RATIO_CLAMP so exp cannot overflow; beyond it
    the penalty is flat (no gradient), which only happens for a degenerate policy. The
    result is computed in at least float32, since bf16 log-probs lose the small differences
    that the estimator is about.
    """
    if kind not in KL_KINDS:
        raise ValueError(f"unknown KL estimator {kind!r}; choose one of {KL_KINDS}")
    dtype = torch.promote_types(logp.dtype, torch.float32)
    diff = logp.to(dtype) - ref_logp.to(dtype)
    if kind == "k1":
        return diff
    if kind == "k2":
        return 0.5 * diff.square()
    logr = (-diff).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    # expm1 keeps precision for small logr, where exp(logr) - 1 cancels; rounding could
    # still leave a value a hair below 0, and the estimator is non-negative by definition.
    return (torch.expm1(logr) - logr).clamp_min(0.0)


@dataclass
class LossOutput:
    """What `policy_loss` returns: the loss to backpropagate and detached metrics.

    Metrics are means over this call's masked tokens, whatever the loss denominator, so a
    caller that splits a batch averages them weighted by `num_tokens`. They stay tensors so
    that logging does not force a device sync on every micro-batch.
    """

    loss: Tensor  # scalar with grad: pg + kl_coef * kl, aggregated as requested
    pg_loss: Tensor  # token mean of the (weighted) surrogate loss alone
    kl: Tensor | None  # token mean of the KL estimate; None when no ref_logp was given
    clip_frac: Tensor  # fraction of tokens whose gradient the clip removed
    ratio_mean: Tensor  # token mean of pi_theta / pi_old
    num_tokens: int  # masked (response) tokens in this call
    mismatch_abs: Tensor  # token mean of |log pi_learner - log pi_rollout|
    mismatch_kl: Tensor  # token mean of the k3 estimate of KL(pi_rollout || pi_learner)
    correction: Weights | None = None  # the importance weights, unless correction is none
    entropy: Tensor | None = None  # token mean of the entropy passed in, if any

    def as_dict(self) -> dict[str, float]:
        """Plain floats for a logger; metrics that were not computed are left out."""
        out = {"loss": float(self.loss.detach()), "pg_loss": float(self.pg_loss),
               "clip_frac": float(self.clip_frac), "ratio_mean": float(self.ratio_mean),
               "num_tokens": float(self.num_tokens),
               "mismatch/abs_logp": float(self.mismatch_abs),
               "mismatch/kl": float(self.mismatch_kl)}
        if self.kl is not None:
            out["kl"] = float(self.kl)
        if self.entropy is not None:
            out["entropy"] = float(self.entropy)
        if self.correction is not None:
            out["correction/weight"] = float(self.correction.mean)
            out["correction/truncated"] = float(self.correction.truncated)
            out["correction/rejected"] = float(self.correction.rejected)
        return out


def clipped_surrogate(ratio: Tensor, adv: Tensor, mask: Tensor, clip_low: float,
                      clip_high: float) -> Surrogate:
    """-min(r A, clip(r, 1 - clip_low, 1 + clip_high) A) per token, and the tokens where the
    clipped branch is strictly the smaller one (there the gradient through r is zero; ties,
    r inside the range or A = 0, do not count). Shared by the losses that clip a ratio."""
    surr = ratio * adv
    surr_clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * adv
    return Surrogate(-torch.minimum(surr, surr_clipped), (surr_clipped < surr) & mask)


def _check_shapes(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor) -> None:
    if logp.dim() != 2:
        raise ValueError(f"logp must be (B, T), got shape {tuple(logp.shape)}")
    for name, t in (("old_logp", old_logp), ("mask", mask)):
        if t.shape != logp.shape:
            raise ValueError(f"{name} shape {tuple(t.shape)} != logp shape {tuple(logp.shape)}")
    if advantages.shape not in (logp.shape[:1], logp.shape):
        raise ValueError(f"advantages must be (B,) or (B, T) = {tuple(logp.shape)}, "
                         f"got {tuple(advantages.shape)}")


def _aggregate(
    per_token: Tensor,
    mask: Tensor,
    aggregation: Aggregation,
    num_tokens_total: int | None,
    num_seqs_total: int | None,
) -> Tensor:
    """Reduce per-token losses (already zero where masked) to the scalar to backpropagate."""
    if aggregation == "token_mean":
        if num_seqs_total is not None:
            raise ValueError("num_seqs_total goes with aggregation='seq_mean_token_mean'; "
                             "for 'token_mean' pass num_tokens_total")
        denom = mask.sum().clamp_min(1) if num_tokens_total is None else num_tokens_total
        return per_token.sum() / denom
    if num_tokens_total is not None:
        raise ValueError("num_tokens_total goes with aggregation='token_mean'; "
                         "for 'seq_mean_token_mean' pass num_seqs_total")
    seq_means = per_token.sum(dim=1) / mask.sum(dim=1).clamp_min(1)
    denom = seq_means.shape[0] if num_seqs_total is None else num_seqs_total
    return seq_means.sum() / max(denom, 1)


def policy_loss(
    logp: Tensor,
    rollout_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    loss: str = "ppo_clip",
    correction: Correction = NO_CORRECTION,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    ref_logp: Tensor | None = None,
    kl_coef: float = 0.0,
    kl_kind: KLKind = "k3",
    aggregation: Aggregation = "token_mean",
    num_tokens_total: int | None = None,
    num_seqs_total: int | None = None,
    entropy: Tensor | None = None,
) -> LossOutput:
    """The registered policy loss `loss`, importance-weighted, plus `kl_coef` times a KL
    estimate, aggregated over the batch.

    Per response token t, with advantage A and the loss's surrogate l_t (for "ppo_clip",
    GRPO's: l_t = -min(r_t A, clip(r_t, 1 - clip_low, 1 + clip_high) A), r_t = pi_theta /
    pi_old; see each loss's docstring):
        loss_t = w_t * l_t + kl_coef * kl_penalty(logp, ref_logp, kl_kind)
    - `correction.kind == "none"`: pi_old = pi_rollout (`rollout_logp`, the engine's log-probs)
      and w_t = 1: the loss strl always had.
    - "tis" / "mis": pi_old = pi_theta detached (the learner before its one update of this
      batch) and w_t the truncated or masked importance weight of pi_old against pi_rollout
      (`rlsys.algorithms.correction`).

    Only `logp` carries gradient: `rollout_logp`, `ref_logp` and `advantages` are detached.
    `advantages` are per sequence `(B,)` (broadcast over tokens) or per token `(B, T)`.

    The rollout/learner mismatch is measured on the same tokens (exact when `logp` comes from
    the weights that generated them, as in a synchronous GRPO step):
    `mismatch_abs` = mean |logp - rollout_logp| and `mismatch_kl` = mean of the k3 estimate
    `r - 1 - log r`, `r = exp(logp - rollout_logp)`, of KL(pi_rollout || pi_learner) on
    tokens sampled from pi_rollout (prime-rl's `mismatch_kl`).

    Aggregation:
    - "token_mean" (DAPO, Dr. GRPO): sum over every masked token of the batch / number of
      masked tokens, so long answers are not down-weighted per token.
    - "seq_mean_token_mean" (original GRPO, GSPO): mean over sequences of per-sequence token
      means.

    Gradient accumulation: when a batch is split into micro-batches, pass the whole batch's
    masked-token count as `num_tokens_total` (or its sequence count as `num_seqs_total` for
    "seq_mean_token_mean") to every micro-batch; each loss is then a share of the full-batch
    mean and the accumulated gradient equals the full-batch gradient exactly.
    """
    surrogate = loss_fn(loss)
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; choose one of {AGGREGATIONS}")
    if not (0.0 <= clip_low < 1.0 and clip_high >= 0.0):
        raise ValueError(f"need 0 <= clip_low < 1 and clip_high >= 0, got {clip_low}, {clip_high}")
    if kl_coef != 0.0 and ref_logp is None:
        raise ValueError("kl_coef is non-zero but no ref_logp was given")
    for name, total in (("num_tokens_total", num_tokens_total),
                        ("num_seqs_total", num_seqs_total)):
        if total is not None and total < 1:
            raise ValueError(f"{name} must be >= 1, got {total}")
    _check_shapes(logp, rollout_logp, advantages, mask)

    m = mask.bool()
    dtype = torch.promote_types(logp.dtype, torch.float32)
    zero = torch.zeros((), dtype=dtype, device=logp.device)
    # Sanitise padded positions *before* any arithmetic: a NaN or -inf there would otherwise
    # come back as a NaN gradient through exp, even though the forward value is masked out.
    logp_ = torch.where(m, logp.to(dtype), zero)
    rollout_ = torch.where(m, rollout_logp.detach().to(dtype), zero)
    adv = advantages.detach().to(dtype)
    adv = torch.where(m, adv if adv.dim() == 2 else adv[:, None], zero)

    weights = None
    old_ = rollout_
    if correction.kind != "none":
        old_ = logp_.detach()
        weights = importance_weights(old_, rollout_, m, correction)
    pg_per_token, clipped = surrogate(logp_, old_, adv, m, clip_low=clip_low,
                                      clip_high=clip_high)
    pg_per_token = torch.where(m, pg_per_token, zero)
    if weights is not None:
        pg_per_token = pg_per_token * weights.w

    per_token = pg_per_token
    kl_metric = None
    if ref_logp is not None:
        ref_ = torch.where(m, ref_logp.detach().to(dtype), zero)
        kl_per_token = torch.where(m, kl_penalty(logp_, ref_, kl_kind), zero)
        per_token = per_token + kl_coef * kl_per_token
        kl_metric = masked_mean(kl_per_token.detach(), m)

    ratio = torch.exp((logp_.detach() - old_).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    return LossOutput(
        loss=_aggregate(per_token, m, aggregation, num_tokens_total, num_seqs_total),
        pg_loss=masked_mean(pg_per_token.detach(), m),
        kl=kl_metric,
        clip_frac=masked_mean((clipped & m).to(dtype), m),
        ratio_mean=masked_mean(ratio, m),
        num_tokens=int(m.sum()),
        mismatch_abs=masked_mean((logp_ - rollout_).detach().abs(), m),
        mismatch_kl=masked_mean(kl_penalty(rollout_, logp_.detach(), "k3"), m),
        correction=weights,
        entropy=None if entropy is None else masked_mean(entropy.detach().to(dtype), m),
    )
