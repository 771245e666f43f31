"""GRPO math: advantages, dynamic sampling, KL estimators and the clipped loss, by hand."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsys.algorithms import core, correction, grpo
from rlsys.algorithms.core import (
    dynamic_sampling_mask,
    kl_penalty,
    masked_mean,
    policy_loss,
    topup_needed,
)
from rlsys.algorithms.grpo import group_advantages

REWARDS = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5]])
LOG2 = math.log(2.0)


def one_token(logp: float, old_logp: float, adv: float, **kw) -> tuple[core.LossOutput, float]:
    """Loss of a single response token, and d loss / d logp."""
    lp = torch.tensor([[logp]], requires_grad=True)
    out = policy_loss(lp, torch.tensor([[old_logp]]), torch.tensor([adv]),
                      torch.ones(1, 1, dtype=torch.bool), **kw)
    out.loss.backward()
    return out, lp.grad.item()


@pytest.mark.parametrize("module", [core, correction, grpo])
def test_module_doctests_pass(module) -> None:
    assert doctest.testmod(module).failed == 0


# --- advantages --------------------------------------------------------------------------


def test_group_advantages_use_sample_std_and_zero_variance_gives_zeros() -> None:
    # Group 1: mean 0.5, deviations +-0.5, sample var = 4 * 0.25 / (4 - 1) = 1/3, so
    # A = +-0.5 / sqrt(1/3) = +-sqrt(3)/2 (population std 0.5 would give +-1).
    # Group 2: all equal -> 0 / (0 + eps) = 0, not NaN.
    a = group_advantages(REWARDS, n=4)
    h = math.sqrt(3) / 2
    expected = torch.tensor([[h, -h, -h, h], [0.0, 0.0, 0.0, 0.0]])
    assert a.shape == (2, 4)
    assert torch.allclose(a, expected, atol=1e-5)
    assert not torch.isnan(a).any()


def test_dr_grpo_only_centres() -> None:
    a = group_advantages(REWARDS, n=4, scale_by_std=False)
    assert torch.allclose(a, torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.0] * 4]))


def test_flat_input_keeps_its_shape_and_groups_are_consecutive_blocks() -> None:
    flat = group_advantages(REWARDS.flatten(), n=4)
    assert flat.shape == (8,)
    assert torch.allclose(flat, group_advantages(REWARDS, n=4).flatten())
    # Two groups of 2 ([3, 1] and [0, 0]), not interleaved: Dr. GRPO gives [1, -1, 0, 0].
    assert group_advantages(np.array([3, 1, 0, 0]), n=2, scale_by_std=False).tolist() == [
        1.0, -1.0, 0.0, 0.0]


def test_advantage_shape_errors() -> None:
    with pytest.raises(ValueError, match="groups of n=4"):
        group_advantages(torch.zeros(6), n=4)
    with pytest.raises(ValueError, match="not groups of n=3"):
        group_advantages(torch.zeros(2, 4), n=3)
    with pytest.raises(ValueError, match="n >= 2"):
        group_advantages(torch.zeros(4), n=1)


# --- dynamic sampling --------------------------------------------------------------------


def test_dynamic_sampling_keeps_groups_with_spread() -> None:
    assert dynamic_sampling_mask(REWARDS, n=4).tolist() == [True, False]
    assert dynamic_sampling_mask(REWARDS.flatten(), n=4).tolist() == [True, False]


def test_dynamic_sampling_tolerance() -> None:
    r = torch.tensor([1.0, 1.0 + 1e-12, 0.0, 0.1], dtype=torch.float64)
    assert dynamic_sampling_mask(r, n=2).tolist() == [False, True]  # 1e-12 <= default tol
    assert dynamic_sampling_mask(r, n=2, tol=0.0).tolist() == [True, True]
    assert dynamic_sampling_mask(r, n=2, tol=0.2).tolist() == [False, False]


def test_topup_needed() -> None:
    assert topup_needed(5, 8) == 3
    assert topup_needed(8, 8) == 0
    assert topup_needed(10, 8) == 0
    with pytest.raises(ValueError):
        topup_needed(-1, 8)


# --- KL estimators -----------------------------------------------------------------------


def test_kl_estimators_at_a_hand_computed_point() -> None:
    # logp = log 0.5, ref = log 0.25: logp - ref = log 2, logr = -log 2.
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert kl_penalty(logp, ref, "k1").item() == pytest.approx(LOG2, rel=1e-6)  # 0.6931
    assert kl_penalty(logp, ref, "k2").item() == pytest.approx(0.5 * LOG2**2, rel=1e-6)  # 0.2402
    # k3 = e^{-log 2} + log 2 - 1 = 0.5 + 0.6931 - 1 = 0.1931
    assert kl_penalty(logp, ref, "k3").item() == pytest.approx(LOG2 - 0.5, rel=1e-6)
    with pytest.raises(ValueError, match="unknown KL"):
        kl_penalty(logp, ref, "k4")  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.floats(-60.0, 0.0), st.floats(-60.0, 0.0))
def test_k3_is_non_negative_and_finite(logp: float, ref: float) -> None:
    k3 = kl_penalty(torch.tensor([logp]), torch.tensor([ref]), "k3")
    assert torch.isfinite(k3).all() and (k3 >= 0).all()


def test_k3_matches_k2_for_small_differences() -> None:
    # k3 = e^x - x - 1 = x^2/2 + O(x^3): relative gap ~ x/3 for x = logr.
    logp = torch.tensor([-1.0, -2.0])
    ref = logp + torch.tensor([1e-3, -1e-3])
    k2, k3 = kl_penalty(logp, ref, "k2"), kl_penalty(logp, ref, "k3")
    assert torch.allclose(k3, k2, rtol=2e-3)


def test_k3_clamps_the_log_ratio() -> None:
    k3 = kl_penalty(torch.tensor([-1000.0]), torch.tensor([0.0]), "k3")
    limit = grpo.LOG_RATIO_CLAMP
    assert k3.item() == pytest.approx(math.exp(limit) - limit - 1, rel=1e-5)


# --- masked mean -------------------------------------------------------------------------


def test_masked_mean_ignores_masked_values_and_empty_rows() -> None:
    x = torch.tensor([[1.0, 3.0, float("nan")], [5.0, 7.0, 9.0]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    assert masked_mean(x, mask).item() == pytest.approx(2.0)
    assert masked_mean(x, mask, dim=1).tolist() == [2.0, 0.0]


# --- policy loss: clipping ---------------------------------------------------------------


def test_positive_advantage_clipped_above() -> None:
    # A = 2, ratio 1.5: min(1.5*2, 1.2*2) = 2.4 -> loss -2.4, clipped branch -> no gradient.
    out, grad = one_token(math.log(1.5), 0.0, 2.0)
    assert out.loss.item() == pytest.approx(-2.4, rel=1e-6)
    assert grad == 0.0
    assert out.clip_frac.item() == 1.0
    assert out.ratio_mean.item() == pytest.approx(1.5, rel=1e-6)


def test_negative_advantage_clipped_below() -> None:
    # A = -1, ratio 0.5: min(0.5*-1, 0.8*-1) = min(-0.5, -0.8) = -0.8 -> loss = -(0.8*A) = 0.8.
    # Pushing a bad token's ratio below 0.8 earns nothing more: no gradient.
    out, grad = one_token(math.log(0.5), 0.0, -1.0)
    assert out.loss.item() == pytest.approx(0.8, rel=1e-6)
    assert grad == 0.0
    assert out.clip_frac.item() == 1.0


def test_unclipped_sides_keep_their_gradient() -> None:
    # A = 1, ratio 0.5: min(0.5, 0.8) = 0.5 -> loss -0.5; d/dlogp(-ratio*A) = -0.5.
    out, grad = one_token(math.log(0.5), 0.0, 1.0)
    assert out.loss.item() == pytest.approx(-0.5, rel=1e-6)
    assert grad == pytest.approx(-0.5, rel=1e-6)
    assert out.clip_frac.item() == 0.0
    # A = -1, ratio 1.5: min(-1.5, -1.2) = -1.5 -> loss 1.5; gradient -ratio*A = 1.5.
    out, grad = one_token(math.log(1.5), 0.0, -1.0)
    assert out.loss.item() == pytest.approx(1.5, rel=1e-6)
    assert grad == pytest.approx(1.5, rel=1e-6)
    assert out.clip_frac.item() == 0.0


def test_clip_higher_leaves_room_above() -> None:
    # ratio 1.25, A = 1: clipped at 1.2 with clip_high 0.2, not with DAPO's 0.28.
    out, _ = one_token(math.log(1.25), 0.0, 1.0)
    assert out.loss.item() == pytest.approx(-1.2, rel=1e-6)
    out, grad = one_token(math.log(1.25), 0.0, 1.0, clip_high=0.28)
    assert out.loss.item() == pytest.approx(-1.25, rel=1e-6)
    assert grad == pytest.approx(-1.25, rel=1e-6)


def test_ratio_one_gives_minus_advantage_and_its_gradient() -> None:
    out, grad = one_token(-0.7, -0.7, 3.0)
    assert out.loss.item() == pytest.approx(-3.0)
    assert grad == pytest.approx(-3.0)


def test_clip_frac_counts_masked_tokens_only() -> None:
    # Tokens: ratio 1.5 (clipped, A>0), 1.0 (not), 1.1 (not), then one padded ratio-2 token.
    logp = torch.log(torch.tensor([[1.5, 1.0, 1.1, 2.0]]))
    mask = torch.tensor([[True, True, True, False]])
    out = policy_loss(logp, torch.zeros(1, 4), torch.tensor([1.0]), mask)
    assert out.clip_frac.item() == pytest.approx(1 / 3)
    assert out.num_tokens == 3
    assert out.ratio_mean.item() == pytest.approx((1.5 + 1.0 + 1.1) / 3, rel=1e-6)


def test_the_rollout_learner_mismatch_by_hand() -> None:
    """Learner log-probs 0.1 above the rollout's on one token, 0.3 below on another, and a
    padded token far off that must not count: |delta| mean 0.2; k3 of KL(rollout ||
    learner) per token is r - 1 - log r with r = exp(delta)."""
    old = torch.tensor([[-1.0, -2.0, -3.0]])
    logp = old + torch.tensor([[0.1, -0.3, 5.0]])
    mask = torch.tensor([[True, True, False]])
    out = policy_loss(logp, old, torch.tensor([1.0]), mask)
    k3 = [math.exp(d) - 1 - d for d in (0.1, -0.3)]
    assert out.mismatch_abs.item() == pytest.approx(0.2, rel=1e-6)
    assert out.mismatch_kl.item() == pytest.approx(sum(k3) / 2, rel=1e-5)
    d = out.as_dict()
    assert d["mismatch/abs_logp"] == pytest.approx(0.2, rel=1e-6) and d["mismatch/kl"] > 0
    same = policy_loss(old, old, torch.tensor([1.0]), mask)  # no gap: both exactly 0
    assert same.mismatch_abs.item() == 0.0 and same.mismatch_kl.item() == 0.0


# --- policy loss: masking and aggregation ------------------------------------------------


def test_padding_changes_nothing() -> None:
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    base = torch.tensor([[-0.5, -1.0, 0.0], [-0.2, 0.0, 0.0]])
    old = torch.tensor([[-0.6, -0.9, 0.0], [-0.2, 0.0, 0.0]])
    adv = torch.tensor([[1.0, -2.0, 0.0], [0.5, 0.0, 0.0]])

    def run(fill: float) -> tuple[torch.Tensor, torch.Tensor]:
        lp = torch.where(mask, base, torch.full_like(base, fill)).requires_grad_()
        junk = torch.where(mask, old, torch.full_like(old, fill))
        a = torch.where(mask, adv, torch.full_like(adv, fill))
        out = policy_loss(lp, junk, a, mask, ref_logp=junk, kl_coef=0.1)
        out.loss.backward()
        return out.loss.detach(), lp.grad

    loss0, grad0 = run(0.0)
    for fill in (123.0, -float("inf"), float("nan")):
        loss, grad = run(fill)
        assert torch.equal(loss, loss0)
        assert torch.equal(grad, grad0)
    assert (grad0[~mask] == 0).all()


def test_token_mean_and_seq_mean_differ_on_unequal_lengths() -> None:
    # ratio 1 everywhere, so each token's loss is -A. Sequence 0: 1 token, A = 2 -> [-2];
    # sequence 1: 3 tokens, A = -1 -> [1, 1, 1].
    # token_mean = (-2 + 3) / 4 = 0.25; seq_mean_token_mean = (-2 + 1) / 2 = -0.5.
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]], dtype=torch.bool)
    zeros = torch.zeros(2, 3)
    adv = torch.tensor([2.0, -1.0])
    tok = policy_loss(zeros, zeros, adv, mask)
    seq = policy_loss(zeros, zeros, adv, mask, aggregation="seq_mean_token_mean")
    assert tok.loss.item() == pytest.approx(0.25)
    assert seq.loss.item() == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="unknown aggregation"):
        policy_loss(zeros, zeros, adv, mask, aggregation="sum")  # type: ignore[arg-type]


def test_per_token_advantages_are_accepted() -> None:
    mask = torch.ones(1, 2, dtype=torch.bool)
    zeros = torch.zeros(1, 2)
    out = policy_loss(zeros, zeros, torch.tensor([[1.0, 3.0]]), mask)
    assert out.loss.item() == pytest.approx(-2.0)  # (-1 - 3) / 2
    with pytest.raises(ValueError, match="advantages must be"):
        policy_loss(zeros, zeros, torch.zeros(3), mask)


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean_token_mean"])
def test_micro_batch_gradients_sum_to_the_full_batch_gradient(aggregation: str) -> None:
    g = torch.Generator().manual_seed(0)
    B, T = 6, 7
    logp = (-torch.rand(B, T, generator=g) * 3).requires_grad_()
    old = logp.detach() + 0.3 * torch.randn(B, T, generator=g)  # some tokens get clipped
    ref = logp.detach() + 0.1 * torch.randn(B, T, generator=g)
    adv = torch.randn(B, generator=g)
    lengths = torch.tensor([1, 7, 3, 5, 2, 6])  # unequal, so the split is not balanced
    mask = torch.arange(T)[None, :] < lengths[:, None]
    kw = dict(ref_logp=ref, kl_coef=0.05, aggregation=aggregation, clip_high=0.28)

    full = policy_loss(logp, old, adv, mask, **kw)
    (full_grad,) = torch.autograd.grad(full.loss, logp)

    totals = ({"num_tokens_total": int(mask.sum())} if aggregation == "token_mean"
              else {"num_seqs_total": B})
    acc = torch.zeros_like(logp)
    loss_sum = torch.zeros(())
    for rows in (slice(0, 1), slice(1, 4), slice(4, 6)):
        lp = logp.detach()[rows].clone().requires_grad_()
        micro = policy_loss(lp, old[rows], adv[rows], mask[rows],
                            **{**kw, "ref_logp": ref[rows]}, **totals)
        micro.loss.backward()
        acc[rows] = lp.grad
        loss_sum += micro.loss.detach()

    assert full.clip_frac.item() > 0  # the property is exercised on clipped tokens too
    assert torch.allclose(loss_sum, full.loss.detach(), atol=1e-6)
    assert torch.allclose(acc, full_grad, atol=1e-7)


def test_wrong_total_for_the_aggregation_is_refused() -> None:
    mask = torch.ones(1, 1, dtype=torch.bool)
    z = torch.zeros(1, 1)
    with pytest.raises(ValueError, match="num_seqs_total"):
        policy_loss(z, z, torch.zeros(1), mask, aggregation="seq_mean_token_mean",
                    num_tokens_total=4)
    with pytest.raises(ValueError, match="num_tokens_total"):
        policy_loss(z, z, torch.zeros(1), mask, num_seqs_total=4)


# --- policy loss: KL term and gradient flow ----------------------------------------------


def test_kl_term_adds_kl_coef_times_k3_mean() -> None:
    # ratio 1 and A = 0: the surrogate is 0, so loss = kl_coef * k3 = 0.1 * (log 2 - 0.5).
    mask = torch.ones(1, 2, dtype=torch.bool)
    logp = torch.full((1, 2), math.log(0.5))
    ref = torch.full((1, 2), math.log(0.25))
    out = policy_loss(logp, logp, torch.zeros(1), mask, ref_logp=ref, kl_coef=0.1)
    assert out.loss.item() == pytest.approx(0.1 * (LOG2 - 0.5), rel=1e-6)
    assert out.kl.item() == pytest.approx(LOG2 - 0.5, rel=1e-6)
    assert out.pg_loss.item() == 0.0
    with pytest.raises(ValueError, match="ref_logp"):
        policy_loss(logp, logp, torch.zeros(1), mask, kl_coef=0.1)


def test_gradients_flow_only_through_logp() -> None:
    mask = torch.ones(2, 3, dtype=torch.bool)
    logp = torch.full((2, 3), -1.0, requires_grad=True)
    old = torch.full((2, 3), -1.1, requires_grad=True)
    ref = torch.full((2, 3), -0.9, requires_grad=True)
    adv = torch.tensor([1.0, -1.0], requires_grad=True)
    entropy = torch.full((2, 3), 2.0, requires_grad=True)
    out = policy_loss(logp, old, adv, mask, ref_logp=ref, kl_coef=0.1, entropy=entropy)
    out.loss.backward()
    assert logp.grad is not None and logp.grad.abs().sum() > 0
    assert old.grad is None and ref.grad is None and adv.grad is None and entropy.grad is None
    for metric in (out.pg_loss, out.kl, out.clip_frac, out.ratio_mean, out.entropy,
                   out.mismatch_abs, out.mismatch_kl):
        assert not metric.requires_grad
    assert out.entropy.item() == pytest.approx(2.0)
    assert set(out.as_dict()) == {"loss", "pg_loss", "kl", "clip_frac", "ratio_mean",
                                  "num_tokens", "entropy", "mismatch/abs_logp", "mismatch/kl"}


def test_bf16_inputs_compute_in_float32() -> None:
    mask = torch.ones(1, 1, dtype=torch.bool)
    lp = torch.zeros(1, 1, dtype=torch.bfloat16, requires_grad=True)
    out = policy_loss(lp, lp.detach(), torch.tensor([1.0]), mask)
    out.loss.backward()
    assert out.loss.dtype == torch.float32 and lp.grad.dtype == torch.bfloat16
