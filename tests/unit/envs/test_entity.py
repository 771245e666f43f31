"""The `entity` task: roles need the graph and the series together.

The role of node k is how many of its upstream nodes (graph) depart before it (series) and
whether a node it links to departs after it. Every world has the same skeleton around k
whatever the role, so k's degrees, its own series and the count of departures around it
say nothing about the role."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from envs.detect import departures
from envs.domains import DOMAINS, ROLES
from envs.prompt import parse_prompt
from envs.stream import TaskMix, generate
from envs.tasks import EnvConfig, get_task
from envs.tasks.entity import _ROLE_OF_TEXT, role_of

MIX = TaskMix.of(["entity"])


def test_entity_needs_both_inputs_and_has_six_roles() -> None:
    assert set(get_task("entity").needs) == {"series", "graph"}
    assert len(ROLES) == 6
    assert {role_of(b, f) for b in (0, 1, 2) for f in (True, False)} == set(ROLES)


@pytest.mark.parametrize("domain", list(DOMAINS))
def test_role_texts_read_back(domain: str) -> None:
    roles = DOMAINS[domain].roles
    assert all(_ROLE_OF_TEXT[f"{nm}, {desc}"] == r for r, (nm, desc) in roles.items())


@pytest.mark.parametrize("n_options", [2, 3, 4, 5, 6])
def test_option_count_is_exact(n_options: int) -> None:
    cfg = EnvConfig(nodes=(3, 10), lengths=(48, 96), n_options=n_options)
    samples = generate(4, range(30), MIX, cfg)
    assert {len(s.options) for s in samples} == {n_options}
    assert all(len(set(s.options)) == n_options for s in samples)


def test_oracle_and_rationale() -> None:
    samples = generate(5, range(120), MIX)
    task = get_task("entity")
    hits = [task.solve(parse_prompt(s.prompt())) == ord(s.answer) - 65 for s in samples]
    assert np.mean(hits) >= 0.95
    assert all(s.rationale.endswith(f"option {s.answer}.") for s in samples)
    assert all(0 <= task.solve(parse_prompt(s.prompt_no_graph)) < len(s.options)
               for s in samples[:20])


def test_the_asked_node_looks_the_same_whatever_its_role() -> None:
    """Two links in, one out, it departs, two departures before it, in every role."""
    samples = generate(6, range(120), MIX, EnvConfig(nodes=(3, 10)))
    assert len(Counter(s.meta["role"] for s in samples)) == len(ROLES)
    for s in samples:
        k = s.meta["node"]
        ins = [u for u, v, _ in s.edges if v == k]
        outs = [v for u, v, _ in s.edges if u == k]
        assert len(ins) == 2 and len(outs) == 1
        assert all(not any(v == u for _, v, _ in s.edges) for u in ins)  # sources
        on = departures(s.series).onset
        assert on[k] >= 0 and ((on >= 0) & (on < on[k])).sum() >= 2
