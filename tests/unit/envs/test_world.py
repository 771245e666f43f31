"""Worlds: random DAGs, drawn parameters, the coupling cap, events, and graph queries."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from envs.domains import DOMAINS
from envs.sde import simulate, split
from envs.world import MAX_COUPLING, Event, draw_world, random_dag

CASES = [(seed, n, m) for seed in range(30) for n, m in ((3, 2), (5, 2), (10, 3), (12, 6))]


@pytest.mark.parametrize(("seed", "n", "m"), CASES[::7] + [(99, 10, 4)])
def test_random_dag_structure(seed: int, n: int, m: int) -> None:
    edges = random_dag(np.random.default_rng(seed), n, m)
    assert edges == sorted(set(edges))
    assert all(0 <= u < v < n for u, v in edges)  # lower to higher index: acyclic
    heads = {v for _, v in edges}
    tails = {u for u, _ in edges}
    assert heads.isdisjoint(range(m))  # sources have no parents
    assert set(range(m)) <= tails  # and each has at least one child
    assert set(range(m, n)) <= heads  # every other node has a parent


def test_random_dag_many_seeds() -> None:
    for seed, n, m in CASES:
        edges = random_dag(np.random.default_rng(seed), n, m)
        g = nx.DiGraph(edges)
        assert nx.is_directed_acyclic_graph(g)
        assert {v for v in range(n) if g.in_degree(v) == 0} == set(range(m))


def make_world(seed: int = 0, domain: str = "energy", n: int = 6, m: int = 2,
               events: list[Event] | None = None, noise: float = 1.0,
               lag_range: tuple[int, int] = (1, 3)):
    rng = np.random.default_rng(seed)
    edges = random_dag(rng, n, m)
    events = [Event((0,), 20, 10, 0.5)] if events is None else events
    return draw_world(rng, DOMAINS[domain], n, 80, edges, m, events, noise, lag_range)


@pytest.mark.parametrize("seed", range(5))
def test_draw_world_labels_lags_and_shapes(seed: int) -> None:
    w = make_world(seed, n=8, m=3, lag_range=(2, 4))
    assert sorted(w.labels.tolist()) == list(range(8))
    assert set(w.lags) == set(w.edges)
    assert all(2 <= lag <= 4 for lag in w.lags.values())
    assert w.arrays.shape == (8, 80)
    assert w.sources == [0, 1, 2]
    lo, hi = w.domain.level_range
    assert np.all((w.levels >= lo) & (w.levels <= hi))
    assert len(w.node_names) == 8 and set(w.node_names) <= set(w.domain.place_names)


@pytest.mark.parametrize("seed", range(8))
def test_incoming_coupling_is_capped_at_every_step(seed: int) -> None:
    w = make_world(seed, n=10, m=3, events=[Event((0, 1, 2), 30, 12, 0.4)])
    arr = w.arrays
    inflow = np.zeros((w.length, w.n))
    np.add.at(inflow, (slice(None), arr.dst), arr.weight)
    assert inflow.max() <= MAX_COUPLING + 1e-12
    assert inflow.max() > 0.5  # the activation window makes the cap bite
    assert np.all(arr.weight >= 0)


@pytest.mark.parametrize(("domain", "amp"), [("energy", 0.5), ("transportation", -0.4),
                                             ("ecology", 0.3), ("climate", -0.6)])
def test_event_moves_its_node_to_one_plus_amp(domain: str, amp: float) -> None:
    t0, dur = 25, 10
    for seed in range(4):
        w = make_world(seed, domain, events=[Event((0,), t0, dur, amp)])
        clean = split(simulate([w.arrays]), [w.arrays])[0][1]
        y = clean[0, t0 + dur]  # after `dur` event steps
        assert y == pytest.approx(1 + amp, rel=0.05)
        assert abs(clean[0, t0] - 1) < 0.05  # not before the event


@pytest.mark.parametrize("seed", range(6))
def test_ancestors_and_descendants_agree_with_networkx(seed: int) -> None:
    w = make_world(seed, n=10, m=3)
    g = nx.DiGraph(w.edges)
    g.add_nodes_from(range(w.n))
    for i in range(w.n):
        assert w.ancestors(i) == nx.ancestors(g, i)
        assert w.descendants(i) == nx.descendants(g, i)
        assert sorted(w.parents[i]) == sorted(g.predecessors(i))
        assert sorted(w.children[i]) == sorted(g.successors(i))


def test_event_nodes_collects_all_events() -> None:
    w = make_world(events=[Event((0,), 20, 8, 0.3), Event((1, 2), 30, 8, 0.3)])
    assert w.event_nodes == {0, 1, 2}
