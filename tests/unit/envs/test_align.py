"""ST-Align: every skill is asked, every gold is what the prompt alone says, every
reference completion scores 1 and makes only true claims, one-node prompts hold one node,
and align stays out of "all" and the eval suite."""

from __future__ import annotations

from collections import Counter

import pytest

from envs.evalsuite import cells
from envs.prompt import GRAPH_CLAUSE, parse_prompt
from envs.quality import SETTINGS, audit_perception
from envs.stream import SampleStream, TaskMix
from envs.tasks.align import SERIES_SKILLS, SKILLS, oracle
from envs.values import same_value
from rewards.builtin import accuracy
from rewards.rationale import check
from rewards.types import Target


@pytest.fixture(scope="module", params=["tiny", "default"])
def samples(request):
    return SampleStream(11, {"align": 1}, SETTINGS[request.param]).take(660)


def test_every_skill_is_asked_about_equally_often(samples) -> None:
    count = Counter(s.meta["skill"] for s in samples)
    assert set(count) == set(SKILLS)
    assert min(count.values()) >= 0.5 * len(samples) / len(SKILLS), count


def test_the_gold_is_what_the_prompt_alone_says(samples) -> None:
    for s in samples:
        said = oracle(parse_prompt(s.prompt()), s.meta["skill"])
        assert same_value(said, s.answer, s.tolerance), (s.id, s.meta["skill"], said, s.answer)


def test_reference_completions_score_1_and_every_claim_is_true(samples) -> None:
    targets = [Target.from_record(s.to_record()) for s in samples]
    assert accuracy([s.completion for s in samples], targets) == [1.0] * len(samples)
    for s, t in zip(samples, targets, strict=True):
        assert all(c.ok for c in check(s.rationale, t.facts)), (s.id, s.rationale)


def test_one_node_prompts_show_one_node_and_no_graph(samples) -> None:
    alone = [s for s in samples if s.meta["alone"]]
    assert {s.meta["skill"] for s in alone} == set(SERIES_SKILLS)
    assert 0.3 < len(alone) / sum(s.meta["skill"] in SERIES_SKILLS for s in samples) < 0.7
    for s in alone:
        assert s.series.shape[0] == 1 and s.edges == [] and GRAPH_CLAUSE not in s.prompt()
        assert "Node 0" in s.question and "Node 1" not in s.prompt()


def test_no_domain_tells_the_direction_of_a_move() -> None:
    """Every domain's events move one way (PM2.5 up, traffic speed down), so direction is
    asked on one node alone, its series mirrored around its baseline half the time: per
    domain, both answers are common; a mirrored series stays positive."""
    for setting in ("tiny", "default"):
        samples = SampleStream(5, {"align_node": 1}, SETTINGS[setting]).take(800)
        asked = [s for s in samples if s.meta["skill"] == "direction"]
        by_domain: dict[str, Counter] = {}
        for s in asked:
            by_domain.setdefault(s.meta["domain"], Counter())[s.answer] += 1
        for domain, c in by_domain.items():
            assert min(c["up"], c["down"]) >= 0.25 * sum(c.values()), (setting, domain, c)
        assert 0.35 < sum(bool(s.meta.get("mirrored")) for s in samples) / len(samples) < 0.65
        assert all(s.series.min() >= 0 for s in samples if s.meta.get("mirrored")
                   and s.meta["domain"] != "climate")
    full = SampleStream(6, {"align": 1}, SETTINGS["tiny"]).take(400)
    assert all(s.meta["alone"] for s in full if s.meta["skill"] == "direction")


def test_align_node_asks_the_series_skills_on_one_node_alone() -> None:
    """The curriculum's first step (`trainer.align.one_node_steps`): every question one of
    the series skills, every prompt one node and no graph; golds and references as sound
    as align's."""
    samples = SampleStream(12, {"align_node": 1}, SETTINGS["tiny"]).take(100)
    assert {s.meta["skill"] for s in samples} == set(SERIES_SKILLS)
    for s in samples:
        assert s.meta["alone"] and s.task == "align_node"
        assert s.series.shape[0] == 1 and s.edges == [] and GRAPH_CLAUSE not in s.prompt()
        assert same_value(oracle(parse_prompt(s.prompt()), s.meta["skill"]), s.answer,
                          s.tolerance)
    targets = [Target.from_record(s.to_record()) for s in samples]
    assert accuracy([s.completion for s in samples], targets) == [1.0] * len(samples)


def test_answers_a_model_cannot_guess_from_the_skill_alone() -> None:
    """The prior (each skill's most common answer) stays well below the oracle: the
    perception table of `strl quality` at the tiny preset's setting."""
    rows = {r.skill: r for r in audit_perception("align", 600, 5, SETTINGS["tiny"], "tiny")}
    assert all(r.oracle == 1.0 for r in rows.values())
    # delay and arrival are small numbers read within a step; the rest are hard to guess
    assert all(r.prior < 0.6 for k, r in rows.items() if k not in ("delay", "arrival")), rows
    # nor from the domain the text names (before the mirror: direction 1.000)
    assert rows["direction"].domain_prior < 0.65, rows["direction"]


def test_align_is_asked_for_by_name_only() -> None:
    for name in ("align", "align_node"):
        assert name not in TaskMix.of("all").names
        assert name not in {c.task for c in cells()}
        assert TaskMix.of(name).names == (name,)


@pytest.mark.parametrize(("said", "gold", "tol", "ok"), [
    ("15", "15", 0, True), ("step 16", "15", 1, True), ("17", "15", 1, False),
    ("never", "never", 0, True), ("none", "never", 0, True), ("15", "never", 1, False),
    ("Node 2, Node 1", "Node 1, Node 2", 0, True), ("Node 1", "Node 1, Node 2", 0, False),
    ("up", "up", 0, True), ("Up.", "up", 0, True), ("down", "up", 0, False),
    ("41%", "40", 3, True), ("", "15", 1, False),
])
def test_value_answers(said: str, gold: str, tol: float, ok: bool) -> None:
    assert same_value(said, gold, tol) is ok
