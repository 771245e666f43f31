"""A simulated world: a directed graph of sensors, node dynamics, events, and its series.

Nodes are numbered internally in topological order (sources first); `labels` maps them to
the shuffled "Node k" labels shown in prompts, so a node's number never hints at its role.

Rates are per step (see `envs.sde`): with dt = 1 step, mean reversion kappa in [0.1, 0.3],
noise sigma <= 0.006 of the baseline, coupling lambda in [0.8, 1.5] times an edge weight of
0.1 that is multiplied 5-20x inside activation windows. A node's total incoming coupling
is capped at 0.9 per step: the design's per-hour ranges, applied literally, make
Euler-Maruyama unstable at hourly sampling (coupling * dt > 2) and make propagation
invisible at 5-minute sampling; per-step rates keep every domain's dynamics visible and
stable.

Events are the design's drift switches: during [t0, t0 + duration) an event node's drift
becomes `k_event (1 + amp - Y)`, a fast move to a level `amp` away from baseline, which then
travels along active edges with their lags.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from envs.domains import DOMAINS, Domain
from envs.sde import SDEArrays

EVENT_RATE = 0.6
"""Per-step rate at which an event node moves to its event level."""
MAX_COUPLING = 0.9
"""Cap on a node's total incoming coupling per step (stability, see module docstring)."""
BASE_WEIGHT = 0.1
LAMBDA_RANGE = (0.8, 1.5)
ACTIVATION_RANGE = (5.0, 20.0)
ALIKE_NOISE = 0.05
"""Noise of `alike` nodes relative to the usual: small, so the copy of it that crosses an
active link is buried in the receiver's own noise and cannot fingerprint the link."""


@dataclass(frozen=True)
class Event:
    """A drift switch at `nodes` during [t0, t0 + duration), moving them by `amp` (relative)."""

    nodes: tuple[int, ...]
    t0: int
    duration: int
    amp: float


@dataclass
class World:
    domain: Domain
    n: int
    length: int
    edges: list[tuple[int, int]]
    sources: list[int]
    events: list[Event]
    labels: np.ndarray  # internal index -> shown label
    lags: dict[tuple[int, int], int]
    levels: np.ndarray  # physical baseline per node
    node_names: list[str]
    arrays: SDEArrays | None = None
    parents: list[list[int]] = field(default_factory=list)
    children: list[list[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.parents = [[] for _ in range(self.n)]
        self.children = [[] for _ in range(self.n)]
        for u, v in self.edges:
            self.parents[v].append(u)
            self.children[u].append(v)

    # Graph queries on internal indices (small graphs: plain Python beats networkx here).
    def descendants(self, u: int) -> set[int]:
        out: set[int] = set()
        stack = list(self.children[u])
        while stack:
            v = stack.pop()
            if v not in out:
                out.add(v)
                stack.extend(self.children[v])
        return out

    def ancestors(self, v: int) -> set[int]:
        out: set[int] = set()
        stack = list(self.parents[v])
        while stack:
            u = stack.pop()
            if u not in out:
                out.add(u)
                stack.extend(self.parents[u])
        return out

    @property
    def event_nodes(self) -> set[int]:
        return {i for e in self.events for i in e.nodes}

    def label(self, i: int) -> int:
        return int(self.labels[i])


def random_dag(rng: np.random.Generator, n: int, n_sources: int) -> list[tuple[int, int]]:
    """A connected-looking DAG on 0..n-1 whose first `n_sources` nodes have no parents.

    Every other node gets one parent (sometimes two) among earlier nodes, preferring
    recent ones, which gives the chains, merges and splits of real sensor networks.
    Every source gets at least one child.
    """
    edges: set[tuple[int, int]] = set()
    u01 = rng.random((n, 3))  # one draw block per node: cheaper than many rng.choice calls
    cum = np.cumsum(np.arange(1, n + 1, dtype=float) ** 1.5)
    for v in range(n_sources, n):
        first = int(np.searchsorted(cum[:v], u01[v, 0] * cum[v - 1], side="right"))
        edges.add((first, v))
        if v >= 2 and u01[v, 1] < 0.35:
            second = int(np.searchsorted(cum[:v], u01[v, 2] * cum[v - 1], side="right"))
            edges.add((second, v))
    for s in range(n_sources):
        if not any(u == s for u, _ in edges):
            edges.add((s, int(rng.integers(n_sources, n))))
    return sorted(edges)


def draw_world(
    rng: np.random.Generator,
    domain: Domain,
    n: int,
    length: int,
    edges: list[tuple[int, int]],
    n_sources: int,
    events: list[Event],
    noise: float = 1.0,
    lag_range: tuple[int, int] = (1, 3),
    active_windows: list[tuple[int, int]] | None = None,
    lags: dict[tuple[int, int], int] | None = None,
    alike: tuple[int, ...] = (),
    closed_edges: frozenset[tuple[int, int]] = frozenset(),
    gains: dict[tuple[int, int], float] | None = None,
) -> World:
    """Draw node parameters, lags, weights, activation windows and noise for a graph.

    `active_windows` are (start, end) step ranges in which every edge is activated; by
    default the span of the events plus a tail long enough for them to propagate.
    `lags` fixes the lags of some edges (the others are drawn from `lag_range`).
    `alike` nodes share a plain mean-reverting drift (no cycle), its rate and their
    diffusion shape, so equal events at them look alike and recover alike: waveform
    matching cannot tell their disturbances apart downstream (their noise is
    `ALIKE_NOISE` of the usual). `closed_edges` carry nothing while the series run
    (weight 0: a closed road, a shut sluice, a line out of service): the graph still
    shows them, with their lags, and only the data tell that nothing crossed.
    `gains` pin what some links pass on while they are active: the head of link (u, v)
    then moves to `gain` times u's lagged departure within a step (inside the active
    windows its mean reversion is 1 - gain and the link's weight is the gain; its other
    links in must be closed), so a route of such links shrinks a disturbance by the
    product of its gains, whatever the nodes' own rates outside the windows.
    """
    labels = rng.permutation(n)
    drawn = rng.integers(lag_range[0], lag_range[1] + 1, size=len(edges))
    lags = {e: int(lags[e]) if lags and e in lags else int(d)
            for e, d in zip(edges, drawn, strict=True)}
    levels = rng.uniform(*domain.level_range, size=n)
    pick = rng.permutation(len(domain.place_names))
    k = len(pick)  # more nodes than place names: "Elm Street 2", ...
    names = [domain.place_names[pick[i % k]] + (f" {i // k + 1}" if i >= k else "")
             for i in range(n)]
    world = World(domain, n, length, list(edges), list(range(n_sources)), list(events),
                  labels, lags, levels, names)
    world.arrays = _arrays(rng, world, noise, active_windows, alike, closed_edges, gains or {})
    return world


def _arrays(
    rng: np.random.Generator, w: World, noise: float, active_windows: list[tuple[int, int]] | None,
    alike: tuple[int, ...] = (),
    closed_edges: frozenset[tuple[int, int]] = frozenset(),
    gains: dict[tuple[int, int], float] | None = None,
) -> SDEArrays:
    n, t_len = w.n, w.length
    # One draw block for every per-node parameter: a few large RNG calls are much cheaper
    # than many small ones, and this runs once per generated sample.
    u = rng.random((9, n))
    if alike:
        idx = list(alike)
        for row in (0, 5, 6, 7):  # mean-reversion rate and noise
            u[row, idx] = u[row, idx[0]]
        # Mean-reverting, without a daily cycle: a cycle passed on downstream carries its
        # source's phase, and the delay of that copy would give the link's lag away.
        u[1, idx] = 0.0
    kappa = 0.1 + 0.2 * u[0]
    a = np.empty((t_len, n))
    a[:] = kappa
    b = np.empty((t_len, n))
    b[:] = -kappa
    c = np.zeros((t_len, n))
    kind = np.searchsorted(_DRIFT_CUM[w.domain.name], u[1], side="right")  # 0 mr, 1 sin, 2 logistic
    period = max(7, 1440 // w.domain.sampling_minutes)
    cyc = np.flatnonzero(kind == 1)
    if len(cyc):
        amp = 0.005 + 0.025 * u[2, cyc]
        phase = 2 * np.pi * u[3, cyc]
        wave = np.sin((2 * np.pi / period) * np.arange(t_len)[:, None] + phase)
        a[:, cyc] = kappa[cyc] * (1 + amp * wave)
    logi = kind == 2
    a[:, logi] = 0.0
    b[:, logi] = kappa[logi]  # r Y (1 - Y/K) with K = 1
    c[:, logi] = -kappa[logi]
    for ev in w.events:
        sl = slice(ev.t0, min(ev.t0 + ev.duration, t_len))
        idx = list(ev.nodes)
        a[sl, idx] = EVENT_RATE * (1 + ev.amp)
        b[sl, idx] = -EVENT_RATE
        c[sl, idx] = 0.0

    lam = LAMBDA_RANGE[0] + (LAMBDA_RANGE[1] - LAMBDA_RANGE[0]) * u[4]
    if active_windows is None:
        active_windows = [(e.t0 - 1, e.t0 + e.duration + 25) for e in w.events]
    src = np.array([u for u, _ in w.edges], dtype=np.int64)
    dst = np.array([v for _, v in w.edges], dtype=np.int64)
    lag = np.array([w.lags[e] for e in w.edges], dtype=np.int64)
    mult = rng.uniform(*ACTIVATION_RANGE, size=len(w.edges))
    active = np.zeros(t_len, dtype=bool)
    for s, e in active_windows:
        active[max(s, 0) : max(e, 0)] = True  # overlapping windows activate once
    weight = np.full((t_len, len(w.edges)), BASE_WEIGHT)
    weight[active] *= mult
    weight *= lam[dst]
    if closed_edges:
        weight[:, [i for i, e in enumerate(w.edges) if e in closed_edges]] = 0.0
    inflow = weight @ (dst[:, None] == np.arange(n)[None, :])  # (T, N) incoming per node
    weight *= np.minimum(1.0, MAX_COUPLING / np.maximum(inflow[:, dst], 1e-12))
    for (tail, head), gain in (gains or {}).items():
        if not 0.0 < gain <= MAX_COUPLING:
            raise ValueError(f"the gain of link {tail}->{head} must be in (0, {MAX_COUPLING}]")
        weight[active, w.edges.index((tail, head))] = gain
        a[active, head], b[active, head], c[active, head] = 1.0 - gain, gain - 1.0, 0.0

    shape = (3 * u[5]).astype(np.int64)  # 0 constant, 1 linear 1 + a|Y|, 2 square-root
    lin = 0.2 + 0.8 * u[6]
    g = np.zeros((3, n))
    g[0] = np.where(shape == 0, 1.0, np.where(shape == 1, 1 / (1 + lin), 0.0))
    g[1] = np.where(shape == 1, lin / (1 + lin), 0.0)
    g[2] = shape == 2
    sigma = noise * (0.002 + 0.004 * u[7])
    if alike:
        sigma[list(alike)] *= ALIKE_NOISE
    y0 = 1 + 0.01 * (u[8] - 0.5)
    return SDEArrays(a, b, c, src, dst, lag, weight, sigma, g, y0, rng.standard_normal((t_len, n)))


def _drift_mix(domain: str) -> list[float]:
    """Probabilities of (mean_reverting, sinusoidal, logistic) drift in a domain."""
    if domain == "ecology":
        return [0.2, 0.2, 0.6]
    if domain in ("transportation", "energy", "mobility", "climate", "pollution"):
        return [0.3, 0.7, 0.0]
    return [0.7, 0.3, 0.0]


_DRIFT_CUM = {name: np.cumsum(_drift_mix(name)) for name in DOMAINS}
