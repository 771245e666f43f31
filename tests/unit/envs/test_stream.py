"""The sample stream: determinism under any batching, task mixes, config validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from envs.domains import DOMAIN_NAMES
from envs.sample import TASKS, Sample
from envs.stream import SampleStream, TaskMix, generate
from envs.tasks import EnvConfig

ALL = TaskMix.of(TASKS)


def same(a: Sample, b: Sample) -> bool:
    return a.to_record() == b.to_record() and np.array_equal(a.series, b.series)


@pytest.fixture(scope="module")
def first_24() -> list[Sample]:
    return generate(11, range(24), ALL)


def test_one_sample_alone_equals_it_in_a_batch(first_24: list[Sample]) -> None:
    assert [s.index for s in first_24] == list(range(24))
    for i in (0, 1, 7, 13, 23):
        assert same(generate(11, [i], ALL)[0], first_24[i])


def test_batch_size_and_order_do_not_matter(first_24: list[Sample]) -> None:
    back = generate(11, range(23, -1, -1), ALL)
    assert all(same(a, b) for a, b in zip(back[::-1], first_24, strict=True))
    middle = generate(11, [5, 17, 2, 5], ALL)
    assert [s.index for s in middle] == [5, 17, 2, 5]
    assert all(same(s, first_24[s.index]) for s in middle)


def test_stream_iteration_take_and_sample_agree(first_24: list[Sample]) -> None:
    it = list(itertools.islice(iter(SampleStream(11, TASKS, batch=5)), 24))
    assert all(same(a, b) for a, b in zip(it, first_24, strict=True))
    stream = SampleStream(11, TASKS, start=4)
    taken = stream.take(6) + stream.take(3)
    assert stream.position == 13
    assert all(same(s, first_24[s.index]) for s in taken)
    assert [s.index for s in taken] == list(range(4, 13))
    assert same(stream.sample(20), first_24[20])
    assert stream.position == 13  # sample() does not move the stream


def test_iteration_tracks_position() -> None:
    stream = SampleStream(3, ["entity"], batch=4)
    got = list(itertools.islice(iter(stream), 6))
    assert [s.index for s in got] == list(range(6))
    assert stream.position == 6


def test_different_seeds_give_different_samples(first_24: list[Sample]) -> None:
    other = generate(12, range(24), ALL)
    assert all(a.prompt() != b.prompt() for a, b in zip(other, first_24, strict=True))
    assert [s.task for s in other] != [s.task for s in first_24]


def test_ids_name_seed_index_and_task(first_24: list[Sample]) -> None:
    s = first_24[9]
    assert s.id == f"11-9-{s.task}" and s.seed == 11 and s.index == 9


def test_zero_weight_task_never_appears() -> None:
    mix = TaskMix.of({"entity": 1.0, "forecasting": 0.0, "root_cause": 2.0})
    picks = [mix.pick(0, i) for i in range(2000)]
    assert "forecasting" not in picks
    assert 0.6 < picks.count("root_cause") / len(picks) < 0.73
    assert {s.task for s in generate(0, range(30), mix)} == {"entity", "root_cause"}


def test_task_mix_from_comma_string() -> None:
    mix = TaskMix.of(" entity, correlation ,")
    assert mix.names == ("entity", "correlation") and mix.weights == (1.0, 1.0)


def test_task_mix_errors() -> None:
    with pytest.raises(ValueError, match="known tasks: etiological, entity"):
        TaskMix.of(["entity", "weather"])
    for empty in ([], "", {}, " , "):
        with pytest.raises(ValueError, match="empty"):
            TaskMix.of(empty)
    with pytest.raises(ValueError, match="weights"):
        TaskMix.of({"entity": -1.0, "correlation": 2.0})
    with pytest.raises(ValueError, match="weights"):
        TaskMix.of({"entity": 0.0})
    with pytest.raises(ValueError, match="unknown task"):
        SampleStream(0, "nope")


@pytest.mark.parametrize(("kw", "msg"), [
    ({"n_options": 1}, "n_options"), ({"n_options": 7}, "n_options"),
    ({"nodes": (2,)}, "node counts"), ({"nodes": (5, 2)}, "node counts"),
    ({"lengths": (30,)}, "lengths"), ({"horizons": (0, 3)}, "horizons"),
    ({"domains": ("mars",)}, "unknown domains"), ({"hardness": 1.5}, "hardness"),
])
def test_env_config_validation(kw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        EnvConfig(**kw)


def test_env_config_defaults_are_valid() -> None:
    cfg = EnvConfig()
    assert cfg.domains == DOMAIN_NAMES and 2 <= cfg.n_options <= 6


def test_negative_seed_or_index_raises() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        generate(-1, [0], ALL)
    with pytest.raises(ValueError, match="non-negative"):
        generate(0, [3, -2], ALL)


def test_configs_that_need_more_nodes_get_them() -> None:
    # six correlation options are six routes: a, b and five intermediates
    (s,) = generate(0, [0], TaskMix.of(["correlation"]), EnvConfig(nodes=(5,), n_options=6))
    assert s.series.shape[0] == 7 and len(s.options) == 6
    # entity's skeleton around the asked node has eight nodes
    assert {x.series.shape[0] for x in generate(
        0, range(20), TaskMix.of(["entity"]), EnvConfig(nodes=(3,)))} == {8}


def test_a_task_that_can_never_be_built_fails_with_an_actionable_error() -> None:
    from envs.tasks import TASK_REGISTRY, register_task
    from envs.tasks.etiological import Etiological

    @register_task
    class Never(Etiological):
        name = "never_buildable"

        def finish(self, rng, cfg, draft, noisy, clean):
            return None

    try:
        with pytest.raises(RuntimeError, match="'never_buildable' sample for seed 0.*widen"):
            generate(0, [0], TaskMix.of(["never_buildable"]))
    finally:
        del TASK_REGISTRY["never_buildable"]


def test_a_design_that_cannot_be_built_is_redrawn_deterministically() -> None:
    from envs.tasks import TASK_REGISTRY, register_task
    from envs.tasks.etiological import Etiological

    @register_task
    class Picky(Etiological):  # half of its question designs can never be realised
        name = "picky"

        def plan(self, rng, cfg, design):
            draft = super().plan(rng, cfg, design)
            draft.info["ok"] = design.random() < 0.5
            return draft

        def finish(self, rng, cfg, draft, noisy, clean):
            return super().finish(rng, cfg, draft, noisy, clean) if draft.info["ok"] else None

    try:
        stream = SampleStream(3, ["picky"])
        samples = stream.take(24)  # never raises
        redrawn = [s for s in samples if s.meta.get("redraws")]
        assert 0 < len(redrawn) < 24 and stream.redrawn == len(redrawn)
        again = generate(3, [s.index for s in redrawn], TaskMix.of(["picky"]))
        assert [a.prompt() for a in again] == [s.prompt() for s in redrawn]
        assert [a.meta["redraws"] for a in again] == [s.meta["redraws"] for s in redrawn]
    finally:
        del TASK_REGISTRY["picky"]


def test_the_tiny_presets_stream_reaches_past_the_index_that_used_to_crash() -> None:
    cfg = EnvConfig(nodes=(3,), lengths=(36,), n_options=3, precision=0,
                    domains=("transportation", "pollution", "agriculture", "climate"))
    (s,) = generate(11, [1966], TaskMix.of(["correlation"]), cfg)
    assert s.task == "correlation" and len(s.options) == 3


@pytest.mark.parametrize("task", TASKS)
def test_every_task_generates(task: str) -> None:
    samples = generate(5, range(3), TaskMix.of([task]))
    assert [s.task for s in samples] == [task] * 3
    assert all(s.answer and s.rationale for s in samples)
