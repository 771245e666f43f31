"""Domain data: complete, distinct texts, and every domain generating on its own."""

from __future__ import annotations

from collections import Counter

import pytest

from envs.domains import DOMAIN_NAMES, DOMAINS, MECHANISMS, ROLES
from envs.sample import TASKS
from envs.stream import TaskMix, generate
from envs.tasks import EnvConfig


@pytest.mark.parametrize("name", DOMAIN_NAMES)
def test_domain_texts(name: str) -> None:
    d = DOMAINS[name]
    assert d.name == name
    assert set(d.roles) == set(ROLES)
    names = [nm.lower() for nm, _ in d.roles.values()]
    assert len(set(names)) == len(ROLES)  # distinct names, no near-synonyms
    assert all(desc for _, desc in d.roles.values())
    assert set(d.mechanisms) == set(MECHANISMS) and len(set(d.mechanisms.values())) == 4
    assert "{src}" in d.mechanisms["single"] and "{srcs}" in d.mechanisms["multi"]
    assert d.event_sign in (-1, 1) and 0 < d.level_range[0] < d.level_range[1]
    assert len(set(d.place_names)) == len(d.place_names) >= 10
    assert d.event_noun and d.unit and d.quantity


def test_role_texts_do_not_collide_across_domains() -> None:
    texts = Counter(f"{nm}, {desc}" for d in DOMAINS.values() for nm, desc in d.roles.values())
    assert max(texts.values()) == 1


def test_step_text() -> None:
    steps = {d.sampling_minutes: d.step_text for d in DOMAINS.values()}
    assert steps[5] == "5 minutes" and steps[60] == "1 hour" and steps[1440] == "1 day"


def test_every_domain_appears_in_the_default_mix() -> None:
    samples = generate(1, range(300), TaskMix.of(TASKS))
    seen = Counter(s.meta["domain"] for s in samples)
    assert set(seen) == set(DOMAIN_NAMES)


@pytest.mark.parametrize("name", DOMAIN_NAMES)
def test_each_domain_generates_every_task(name: str) -> None:
    cfg = EnvConfig(domains=(name,))
    samples = [generate(4, [0], TaskMix.of([t]), cfg)[0] for t in TASKS]
    assert {s.meta["domain"] for s in samples} == {name}
    d = DOMAINS[name]
    assert all(f"{d.quantity} ({d.unit})" in s.question for s in samples)
