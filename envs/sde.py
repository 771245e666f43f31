"""Vectorised Euler-Maruyama integration of a batch of network SDEs.

Per node i of world b (time measured in steps, so dt = 1 step of the domain's sampling
interval):

    dY_i = [a_i(t) + b_i(t) Y_i + c_i(t) Y_i^2
            + sum_j A_ji(t) (Y_j(t - lag_ji) - Y_i)] dt
           + sigma_i g_i(Y_i) dW_i

The quadratic drift covers every drift kind of the design with one array expression:
mean-reverting `kappa (mu - Y)` is (a, b, c) = (kappa mu, -kappa, 0), sinusoidal puts
`kappa (base + amp sin(w t + phi))` into a(t), logistic `r Y (1 - Y/K)` is (0, r, -r/K),
constant drift is (const, 0, 0); a drift that switches in a time window (an event) is just
different (a, b, c) rows in that window. The diffusion shape is
`g(Y) = g0 + g1 |Y| + g2 sqrt(|Y|)` (constant, linear `1 + a|Y|`, or square-root).
`A` already carries the node's coupling strength lambda_i and the edge-activation windows.

The loop runs over time steps only; nodes and worlds are array axes. Running many worlds
of the same shape at once amortises numpy's per-call overhead, which is what makes
on-the-fly generation cheap. A world's trajectory does not depend on which other worlds
share its batch (checked by tests), so a sample rebuilt alone equals the one generated
in a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SDEArrays:
    """Coefficients of one world with N nodes, E edges and T steps."""

    a: np.ndarray  # (T, N) constant drift term
    b: np.ndarray  # (T, N) linear drift coefficient
    c: np.ndarray  # (T, N) quadratic drift coefficient
    src: np.ndarray  # (E,) int, edge tails
    dst: np.ndarray  # (E,) int, edge heads
    lag: np.ndarray  # (E,) int >= 1, edge lags in steps
    weight: np.ndarray  # (T, E) effective coupling A_ji(t) (lambda, activation included)
    sigma: np.ndarray  # (N,)
    g: np.ndarray  # (3, N) diffusion shape coefficients g0, g1, g2
    y0: np.ndarray  # (N,)
    noise: np.ndarray  # (T, N) standard normal draws

    @property
    def shape(self) -> tuple[int, int]:
        """(N, T) of this world."""
        return self.a.shape[1], self.a.shape[0]


def simulate(batch: list[SDEArrays], with_noise_free: bool = True) -> np.ndarray:
    """Integrate worlds with the same number of steps together.

    Returns Y of shape (K, T, M) where M is the total node count of the batch (world
    after world, in order); K=2 when `with_noise_free` (index 0 is the noisy path, index 1
    the same worlds with sigma=0, used to define ground truth), else K=1. Use `split` to
    cut the result back into worlds.
    """
    if not batch:
        raise ValueError("simulate() needs at least one world")
    t_len = batch[0].shape[1]
    if any(w.shape[1] != t_len for w in batch):
        raise ValueError("all worlds in a batch need the same number of steps")
    copies = 2 if with_noise_free else 1
    worlds = batch * copies  # the noise-free twin is just more worlds in the same batch
    sizes = np.array([w.shape[0] for w in worlds])
    offset = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    m = int(sizes.sum())
    cat = np.concatenate
    a, b, c = (cat([getattr(w, k) for w in worlds], axis=1) for k in ("a", "b", "c"))
    g = cat([w.g for w in worlds], axis=1)
    sigma = cat([w.sigma if i < len(batch) else np.zeros_like(w.sigma)
                 for i, w in enumerate(worlds)])
    noise_scale = sigma[None, :] * cat([w.noise for w in worlds], axis=1)  # (T, M)
    src = cat([w.src + o for w, o in zip(worlds, offset, strict=True)])
    dst = cat([w.dst + o for w, o in zip(worlds, offset, strict=True)])
    lag = cat([w.lag for w in worlds])
    weight = cat([w.weight for w in worlds], axis=1)  # (T, E_total)

    y = np.empty((t_len, m))
    y[0] = cat([w.y0 for w in worlds])
    flat = y.reshape(-1)
    for t in range(t_len - 1):
        cur = y[t]
        # Y_j(t + 1 - lag): lags are >= 1 so this only reads the past.
        rows = np.maximum(t + 1 - lag, 0)
        lagged = flat[rows * m + src]
        # bincount sums each head's edges in edge order: a world's result does not depend
        # on the other worlds in the batch.
        coupling = np.bincount(dst, weight[t] * (lagged - cur[dst]), minlength=m)
        drift = a[t] + cur * (b[t] + c[t] * cur)
        absy = np.abs(cur)
        gval = g[0] + g[1] * absy + g[2] * np.sqrt(absy)
        y[t + 1] = cur + drift + coupling + gval * noise_scale[t]
    return y.reshape(t_len, copies, m // copies).transpose(1, 0, 2)


def split(y: np.ndarray, batch: list[SDEArrays]) -> list[np.ndarray]:
    """Cut one simulate() result (K, T, M) into per-world arrays of shape (K, N, T)."""
    out, o = [], 0
    for w in batch:
        n = w.shape[0]
        out.append(y[:, :, o : o + n].transpose(0, 2, 1))
        o += n
    return out
