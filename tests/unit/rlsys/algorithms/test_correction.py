"""The rollout correction (none, tis, mis) against hand computations, and `none` against the
loss strl had before the correction existed, bit for bit."""

from __future__ import annotations

import math

import pytest
import torch

from rlsys.algorithms import Correction, importance_weights, policy_loss

LOG = math.log


def _grad(logp: torch.Tensor, rollout: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
          **kw) -> tuple[torch.Tensor, object]:
    lp = logp.clone().requires_grad_(True)
    out = policy_loss(lp, rollout, adv, mask, **kw)
    out.loss.backward()
    return lp.grad, out


def test_tis_weights_are_the_ratio_truncated_at_the_cap() -> None:
    learner = torch.log(torch.tensor([[0.6, 0.2, 0.9]]))
    rollout = torch.log(torch.tensor([[0.4, 0.4, 0.3]]))  # ratios 1.5, 0.5, 3.0
    mask = torch.ones(1, 3, dtype=torch.bool)
    got = importance_weights(learner, rollout, mask, Correction("tis", cap=2.0))
    assert got.w.tolist()[0] == pytest.approx([1.5, 0.5, 2.0], rel=1e-6)
    assert got.mean.item() == pytest.approx(4.0 / 3, rel=1e-6)
    assert got.truncated.item() == pytest.approx(1 / 3) and got.rejected.item() == 0.0


def test_tis_loss_scales_each_tokens_gradient_by_its_weight() -> None:
    """pi_old is the learner detached, so the PPO ratio is 1 with gradient d logp: each
    token's loss is -w_t * A and its gradient -w_t * A / (tokens)."""
    learner = torch.log(torch.tensor([[0.6, 0.2, 0.9]]))
    rollout = torch.log(torch.tensor([[0.4, 0.4, 0.3]]))
    mask = torch.ones(1, 3, dtype=torch.bool)
    grad, out = _grad(learner, rollout, torch.tensor([2.0]), mask,
                      correction=Correction("tis", cap=2.0))
    assert grad.tolist()[0] == pytest.approx([-2 * 1.5 / 3, -2 * 0.5 / 3, -2 * 2.0 / 3], rel=1e-6)
    assert out.loss.item() == pytest.approx(-2 * (1.5 + 0.5 + 2.0) / 3, rel=1e-6)
    assert out.ratio_mean.item() == 1.0 and out.clip_frac.item() == 0.0
    d = out.as_dict()
    assert d["correction/weight"] == pytest.approx(4 / 3) and d["correction/truncated"] > 0


def test_mis_drops_whole_sequences_whose_geometric_ratio_leaves_the_bounds() -> None:
    """Sequence 0: log-ratios 0.1 and -0.05, mean 0.025, kept. Sequence 1: 0.5 and 0.3, mean
    0.4 > log 1.25, rejected: its tokens have no gradient. A padded token far off counts
    for neither."""
    rollout = torch.tensor([[-1.0, -1.0, -1.0], [-2.0, -2.0, -2.0]])
    learner = rollout + torch.tensor([[0.1, -0.05, 9.0], [0.5, 0.3, 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, False]])
    c = Correction("mis", lo=0.8, hi=1.25)
    w = importance_weights(learner, rollout, mask, c)
    assert w.w.tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    assert w.rejected.item() == pytest.approx(0.5) and w.mean.item() == pytest.approx(0.5)
    grad, out = _grad(learner, rollout, torch.tensor([1.0, 1.0]), mask, correction=c)
    assert grad[1].abs().sum().item() == 0.0
    assert grad[0, :2].tolist() == pytest.approx([-0.25, -0.25])  # -A / 4 tokens
    assert out.as_dict()["correction/rejected"] == pytest.approx(0.5)
    low = Correction("mis", lo=0.95, hi=1.05)  # now sequence 0 (mean 0.025) is still kept
    assert importance_weights(learner, rollout, mask, low).w[0, :2].tolist() == [1.0, 1.0]


def _loss_before_the_correction(logp, old, adv, mask, clip_low, clip_high):
    """strl's token loss as it was (token mean, no KL), written out again."""
    m = mask.bool()
    zero = torch.zeros(())
    logp_ = torch.where(m, logp, zero)
    old_ = torch.where(m, old, zero)
    a = torch.where(m, adv[:, None], zero)
    ratio = torch.exp((logp_ - old_).clamp(-20, 20))
    pg = -torch.minimum(ratio * a, ratio.clamp(1 - clip_low, 1 + clip_high) * a)
    return torch.where(m, pg, zero).sum() / m.sum()


def test_none_is_the_loss_before_the_correction_bit_for_bit() -> None:
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 7, generator=g) * 3
    old = logp + torch.randn(4, 7, generator=g) * 0.3
    adv = torch.randn(4, generator=g)
    mask = torch.rand(4, 7, generator=g) > 0.3
    a = logp.clone().requires_grad_(True)
    b = logp.clone().requires_grad_(True)
    new = policy_loss(a, old, adv, mask, clip_low=0.2, clip_high=0.28).loss
    ref = _loss_before_the_correction(b, old, adv, mask, 0.2, 0.28)
    new.backward()
    ref.backward()
    assert torch.equal(new.detach(), ref.detach()) and torch.equal(a.grad, b.grad)


def test_with_no_mismatch_every_correction_gives_the_plain_gradient() -> None:
    """Learner and rollout agree: the tis weights are 1, mis keeps everything, and the
    gradient is the on-policy -A / tokens for each, as with none."""
    logp = torch.log(torch.tensor([[0.5, 0.25]]))
    mask = torch.ones(1, 2, dtype=torch.bool)
    grads = [_grad(logp, logp, torch.tensor([1.0]), mask, correction=Correction(k))[0]
             for k in ("none", "tis", "mis")]
    for gr in grads:
        assert gr.tolist()[0] == pytest.approx([-0.5, -0.5])


@pytest.mark.parametrize("bad", [dict(kind="is"), dict(kind="tis", cap=0.0),
                                 dict(kind="mis", lo=1.1, hi=2.0), dict(kind="mis", hi=0.9)])
def test_bad_corrections_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        Correction(**bad)
