"""Euler-Maruyama integration: hand-computed steps on small hand-built worlds, and batching."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from envs.sde import SDEArrays, simulate, split


def world(n: int = 1, t_len: int = 2, *, y0: float | list[float] = 1.0, sigma: float = 0.0,
          g: tuple[float, float, float] = (1.0, 0.0, 0.0), edges: tuple = (),
          weight: float = 0.0) -> SDEArrays:
    """A world with zero drift, constant diffusion shape and optional (src, dst, lag) edges."""
    src = np.array([e[0] for e in edges], dtype=np.int64)
    dst = np.array([e[1] for e in edges], dtype=np.int64)
    lag = np.array([e[2] for e in edges], dtype=np.int64)
    return SDEArrays(
        a=np.zeros((t_len, n)), b=np.zeros((t_len, n)), c=np.zeros((t_len, n)),
        src=src, dst=dst, lag=lag, weight=np.full((t_len, len(edges)), weight),
        sigma=np.full(n, sigma), g=np.tile(np.array(g, dtype=float)[:, None], (1, n)),
        y0=np.broadcast_to(np.asarray(y0, dtype=float), (n,)).copy(),
        noise=np.zeros((t_len, n)),
    )


def run(w: SDEArrays) -> np.ndarray:
    """Noisy path of a single world as (N, T)."""
    return split(simulate([w], with_noise_free=False), [w])[0][0]


def random_world(rng: np.random.Generator, n: int, t_len: int) -> SDEArrays:
    edges = [(u, v) for v in range(1, n) for u in range(v) if rng.random() < 0.5]
    return SDEArrays(
        a=rng.uniform(0.1, 0.3, (t_len, n)), b=-rng.uniform(0.1, 0.3, (t_len, n)),
        c=rng.uniform(-0.05, 0.0, (t_len, n)),
        src=np.array([u for u, _ in edges], dtype=np.int64),
        dst=np.array([v for _, v in edges], dtype=np.int64),
        lag=rng.integers(1, 4, len(edges)), weight=rng.uniform(0, 0.3, (t_len, len(edges))),
        sigma=rng.uniform(0.002, 0.006, n), g=rng.uniform(0, 1, (3, n)),
        y0=1 + rng.normal(0, 0.01, n), noise=rng.standard_normal((t_len, n)),
    )


def test_mean_reversion_step_moves_toward_mu() -> None:
    kappa, mu, y0 = 0.2, 3.0, 1.0
    w = world(y0=y0)
    w.a[:], w.b[:] = kappa * mu, -kappa
    y = run(w)[0]
    assert y[1] == pytest.approx(y0 + kappa * (mu - y0), abs=1e-15)
    assert abs(mu - y[1]) < abs(mu - y[0])


def test_logistic_step() -> None:
    r = 0.3
    w = world(y0=0.5)
    w.b[:], w.c[:] = r, -r
    assert run(w)[0, 1] == pytest.approx(0.5 + r * 0.5 * 0.5, abs=1e-15)


@pytest.mark.parametrize("lag", [1, 2, 3])
def test_edge_response_appears_exactly_lag_steps_later(lag: int) -> None:
    wgt, t_step, t_len = 0.25, 5, 14
    w = world(n=2, t_len=t_len, edges=((0, 1, lag),), weight=wgt)
    w.a[t_step, 0] = 1.0  # node 0 jumps from 1 to 2 at step t_step + 1
    y = run(w)
    assert np.array_equal(y[0], np.where(np.arange(t_len) > t_step, 2.0, 1.0))
    # node 1 at step t+1 reads node 0 at step t + 1 - lag
    expected = [1.0]
    for t in range(t_len - 1):
        expected.append(expected[-1] + wgt * (y[0, max(t + 1 - lag, 0)] - expected[-1]))
    np.testing.assert_allclose(y[1], expected, rtol=0, atol=1e-15)
    first = int(np.flatnonzero(y[1] != 1.0)[0])
    assert first == t_step + 1 + lag
    assert y[1, first] == pytest.approx(1.0 + wgt * (2.0 - 1.0))


def test_coupling_pulls_toward_the_lagged_parent_not_away() -> None:
    w = world(n=2, t_len=3, y0=[2.0, 1.0], edges=((0, 1, 1),), weight=0.5)
    y = run(w)
    assert y[1, 1] == pytest.approx(1.5)  # 1 + 0.5 * (2 - 1)
    assert y[0, 1] == 2.0  # a parent does not feel its child


def test_constant_noise_increment_is_sigma_times_draw() -> None:
    w = world(y0=1.0, sigma=0.1, g=(1.0, 0.0, 0.0))
    w.noise[0] = 0.7
    assert run(w)[0, 1] - 1.0 == pytest.approx(0.1 * 0.7, abs=1e-15)


def test_sqrt_noise_scales_with_sqrt_of_level() -> None:
    w = world(y0=4.0, sigma=0.1, g=(0.0, 0.0, 1.0))
    w.noise[0] = -0.5
    assert run(w)[0, 1] - 4.0 == pytest.approx(0.1 * 2.0 * -0.5, abs=1e-15)


def test_linear_noise_shape() -> None:
    w = world(y0=-3.0, sigma=0.1, g=(0.5, 0.5, 0.0))
    w.noise[0] = 1.0
    assert run(w)[0, 1] + 3.0 == pytest.approx(0.1 * (0.5 + 0.5 * 3.0), abs=1e-15)


def test_batch_equals_each_world_alone_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    batch = [random_world(rng, n, 40) for n in (3, 5, 1, 4)]
    together = split(simulate(batch), batch)
    for w, ys in zip(batch, together, strict=True):
        alone = split(simulate([w]), [w])[0]
        assert ys.shape == (2, w.shape[0], 40)
        assert np.array_equal(ys, alone)


def test_batch_order_does_not_matter() -> None:
    rng = np.random.default_rng(8)
    batch = [random_world(rng, n, 30) for n in (2, 6, 3)]
    fwd = split(simulate(batch), batch)
    rev = split(simulate(batch[::-1]), batch[::-1])[::-1]
    assert all(np.array_equal(a, b) for a, b in zip(fwd, rev, strict=True))


def test_noise_free_twin_equals_a_run_with_sigma_zero() -> None:
    w = random_world(np.random.default_rng(9), 4, 50)
    twin = split(simulate([w]), [w])[0][1]
    quiet = replace(w, sigma=np.zeros_like(w.sigma))
    assert np.array_equal(twin, run(quiet))
    assert not np.array_equal(twin, split(simulate([w]), [w])[0][0])


def test_without_twin_returns_one_copy() -> None:
    w = random_world(np.random.default_rng(10), 3, 20)
    y = simulate([w], with_noise_free=False)
    assert y.shape == (1, 20, 3)
    assert np.array_equal(y[0], simulate([w])[0])


def test_empty_batch_and_mixed_lengths_raise() -> None:
    with pytest.raises(ValueError, match="at least one world"):
        simulate([])
    with pytest.raises(ValueError, match="same number of steps"):
        simulate([world(t_len=10), world(t_len=11)])


def test_split_returns_k_n_t_per_world() -> None:
    batch = [world(n=n, t_len=12) for n in (2, 3, 1)]
    parts = split(simulate(batch), batch)
    assert [p.shape for p in parts] == [(2, 2, 12), (2, 3, 12), (2, 1, 12)]
    assert world(n=3, t_len=12).shape == (3, 12)
