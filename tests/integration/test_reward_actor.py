"""RewardActor on a real local Ray: two workers score chunks of one batch concurrently and
the merged result equals the plain class on the whole batch; config errors surface from
start(); a killed worker raises RayActorError (replacing it is the trainer's job)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

ray = pytest.importorskip("ray")

from actors.reward import RewardActor, RewardWorker, merge, split_even  # noqa: E402
from rewards import RewardConfigError, unregister  # noqa: E402

RECORDS = [
    {"id": 0, "task": "entity", "answer": "B", "options": ["a", "b", "c", "d"]},
    {"id": 1, "task": "forecasting", "answer": [1.0, 2.0]},
    {"id": 2, "task": "path_description", "answer": "Node 0 -> Node 2"},
] * 4
COMPLETIONS = [
    "<think>x</think><answer>B</answer>",
    "<think>x</think><answer>[1.0, 4.0]</answer>",
    "BOOM <answer>Node 0</answer>",
    "<think>x</think><answer>A</answer>",
    "BOOM",
    "<think>x</think><answer>Node 0 -> Node 2</answer>",
] * 2


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict]]:
    """Built-ins plus a plug-in file that each Ray worker imports on its own at start()."""
    path = tmp_path_factory.mktemp("plugins") / "it_rewards.py"
    path.write_text(
        "from rewards import reward\n"
        "@reward('it_boom')\n"
        "def boom(completions, targets):\n"
        "    if any('BOOM' in c for c in completions):\n"
        "        raise ValueError('found BOOM')\n"
        "    return [1.0] * len(completions)\n"
    )
    yield [
        {"name": "format", "weight": 0.5},
        {"name": "accuracy", "weight": 1.0},
        {"name": "it_boom", "weight": 0.25, "module": str(path)},
    ]
    unregister("it_boom")  # registered in this process by the plain-class reference


def test_two_actors_merge_to_the_plain_result(ray_local: None, specs: list[dict]) -> None:
    actors = [RewardActor.remote(specs, timeout_s=10.0) for _ in range(2)]
    names = ray.get([a.start.remote() for a in actors])
    assert names == [["format", "accuracy", "it_boom"]] * 2
    slices = split_even(len(RECORDS), len(actors))
    refs = [
        a.score.remote(COMPLETIONS[s], RECORDS[s]) for a, s in zip(actors, slices, strict=True)
    ]
    merged = merge(ray.get(refs))

    plain = RewardWorker(specs, timeout_s=10.0)
    plain.start()
    whole = plain.score(COMPLETIONS, RECORDS)
    assert merged.total == whole.total
    assert merged.components == whole.components
    assert merged.errors == whole.errors == {"format": 0, "accuracy": 0, "it_boom": 4}
    assert merged.timeouts == whole.timeouts
    for a in actors:
        ray.kill(a)


def test_bad_config_fails_at_start_in_the_actor(ray_local: None) -> None:
    actor = RewardActor.remote([{"name": "no_such_reward"}])
    with pytest.raises(RewardConfigError, match="unknown reward"):
        ray.get(actor.start.remote())
    ray.kill(actor)


def test_killed_worker_raises_actor_error(ray_local: None, specs: list[dict]) -> None:
    # The trainer catches this and starts a replacement; that part is not tested here.
    actor = RewardActor.remote(specs)
    ray.get(actor.start.remote())
    ray.kill(actor)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(actor.score.remote(COMPLETIONS[:2], RECORDS[:2]), timeout=30)

