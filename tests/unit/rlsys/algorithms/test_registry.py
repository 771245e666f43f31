"""The registered estimators and losses (RLOO, GSPO, CISPO; GRPO's are in test_core.py)
against hand computations, and the registry itself: names, errors, one file per entry."""

from __future__ import annotations

import doctest
import math

import pytest
import torch

from rlsys.algorithms import (
    ADVANTAGES,
    LOSSES,
    advantage_fn,
    cispo,
    gspo,
    loss_fn,
    policy_loss,
    register_loss,
    rloo,
)
from rlsys.algorithms.registry import Surrogate


@pytest.mark.parametrize("module", [rloo, gspo, cispo])
def test_module_doctests_pass(module) -> None:
    assert doctest.testmod(module).failed == 0


def test_the_built_in_names() -> None:
    assert set(ADVANTAGES) >= {"grpo", "dr_grpo", "rloo"}
    assert set(LOSSES) >= {"ppo_clip", "gspo", "cispo"}


def test_rloo_leaves_each_rollout_out_of_its_own_baseline() -> None:
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0], [2.0, 4.0, 0.0, 6.0]])
    got = advantage_fn("rloo")(r, 4)
    by_hand = [[1 - 0, 0 - 1 / 3, 0 - 1 / 3, 0 - 1 / 3],
               [2 - 10 / 3, 4 - 8 / 3, 0 - 4, 6 - 2]]
    assert got.tolist() == [pytest.approx(row) for row in by_hand]
    centred = advantage_fn("dr_grpo")(r, 4)
    assert torch.allclose(got, centred * 4 / 3)  # n / (n - 1) times Dr. GRPO's
    with pytest.raises(ValueError, match="n >= 2"):
        advantage_fn("rloo")(torch.tensor([1.0]), 1)


def _step(loss: str, logp: torch.Tensor, old: torch.Tensor, adv: torch.Tensor,
          mask: torch.Tensor, **kw):
    lp = logp.clone().requires_grad_(True)
    out = policy_loss(lp, old, adv, mask, loss=loss, **kw)
    out.loss.backward()
    return lp.grad, out


def test_gspo_uses_one_ratio_per_sequence() -> None:
    """Two tokens with log-ratios 0.2 and 0: s = exp(0.1) for both. Inside the clip each
    token's loss is -s A, and with the paper's per-sequence mean each gradient is
    -s A / 2; past 1 + clip_high the whole sequence is clipped and has no gradient."""
    old = torch.tensor([[-1.0, -2.0]])
    logp = old + torch.tensor([[0.2, 0.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    s = math.exp(0.1)
    grad, out = _step("gspo", logp, old, torch.tensor([1.0]), mask, clip_high=0.2,
                      aggregation="seq_mean_token_mean")
    assert out.loss.item() == pytest.approx(-s, rel=1e-6)
    assert grad.tolist()[0] == pytest.approx([-s / 2, -s / 2], rel=1e-6)
    assert out.clip_frac.item() == 0.0
    grad, out = _step("gspo", logp, old, torch.tensor([1.0]), mask, clip_high=0.05,
                      aggregation="seq_mean_token_mean")
    assert grad.abs().sum().item() == 0.0 and out.clip_frac.item() == 1.0
    assert out.loss.item() == pytest.approx(-1.05, rel=1e-6)


def test_gspo_and_ppo_clip_agree_on_policy() -> None:
    """At pi_theta = pi_old every ratio is 1: the two losses and gradients coincide."""
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.1], [0.3, 0.3, 0.6]]))
    mask = torch.tensor([[True, True, True], [True, False, False]])
    adv = torch.tensor([1.0, -0.5])
    g1, o1 = _step("gspo", logp, logp, adv, mask)
    g2, o2 = _step("ppo_clip", logp, logp, adv, mask)
    assert torch.allclose(g1, g2) and o1.loss.item() == pytest.approx(o2.loss.item())


def test_cispo_keeps_the_gradient_that_ppos_clip_removes() -> None:
    """A token with ratio e^0.5 and A = 1: PPO's clip removes its gradient; CISPO's is
    -clip(r) A = -1.2. A token with ratio e^-0.5 and A = -1: weight 0.8, gradient +0.8."""
    old = torch.tensor([[-1.0], [-1.0]])
    logp = old + torch.tensor([[0.5], [-0.5]])
    mask = torch.ones(2, 1, dtype=torch.bool)
    adv = torch.tensor([1.0, -1.0])
    g_ppo, _ = _step("ppo_clip", logp, old, adv, mask, clip_low=0.2, clip_high=0.2)
    g_cis, out = _step("cispo", logp, old, adv, mask, clip_low=0.2, clip_high=0.2)
    assert g_ppo.abs().sum().item() == 0.0
    assert g_cis.flatten().tolist() == pytest.approx([-1.2 / 2, 0.8 / 2], rel=1e-6)
    assert out.loss.item() == pytest.approx((-1.2 + 0.8) / 2, rel=1e-6)
    assert out.clip_frac.item() == 1.0  # both weights were clipped, neither gradient lost


def test_unknown_and_duplicate_names_are_errors_that_say_what_exists() -> None:
    with pytest.raises(ValueError, match=r"algorithm.loss='ppo'.*cispo.*gspo.*ppo_clip"):
        loss_fn("ppo")
    with pytest.raises(ValueError, match=r"algorithm.advantage='gae'.*dr_grpo"):
        advantage_fn("gae")
    with pytest.raises(ValueError, match="registered twice"):
        register_loss("cispo")(lambda *a, **k: None)


def test_a_new_loss_is_one_decorated_function() -> None:
    """Registered under a name, it is used by `policy_loss` with everything else shared:
    masking, aggregation, the KL term and the metrics."""

    @register_loss("test_reinforce")
    def reinforce(logp, old_logp, adv, mask, *, clip_low, clip_high):
        return Surrogate(-logp * adv, torch.zeros_like(mask))

    try:
        logp = torch.log(torch.tensor([[0.5, 0.25, 0.9]]))
        mask = torch.tensor([[True, True, False]])
        grad, out = _step("test_reinforce", logp, logp, torch.tensor([2.0]), mask)
        assert grad.tolist()[0] == pytest.approx([-1.0, -1.0, 0.0])
        assert out.num_tokens == 2 and out.clip_frac.item() == 0.0
    finally:
        del LOSSES["test_reinforce"]
