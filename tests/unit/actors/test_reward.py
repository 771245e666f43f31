"""RewardWorker without Ray: weighted totals, failures caught per completion, timeouts that
do not block later calls, config errors at start(); split_even and merge."""

from __future__ import annotations

import doctest
import logging
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.reward import RewardResult, RewardWorker, merge, split_even
from rewards import RewardConfigError, RewardSet, Target, load_module, unregister

RECORDS = [
    {"id": 0, "task": "entity", "answer": "B", "options": ["a", "b", "c", "d"]},
    {"id": 1, "task": "forecasting", "answer": [1.0, 2.0]},
    {"id": 2, "task": "path_description", "answer": "Node 0 -> Node 2"},
    {"id": 3, "task": "entity", "answer": "C", "options": ["a", "b", "c"]},
]
COMPLETIONS = [
    "<think>x</think><answer>B</answer>",
    "<think>x</think><answer>[1.0, 4.0]</answer>",
    "<answer>Node 0 -> Node 2</answer>",
    "<think>x</think><answer>A</answer>",
]
BUILTINS = [
    {"name": "format", "weight": 0.5},
    {"name": "exact_match", "weight": 1.0},
    {"name": "exp_mae", "weight": 2.0, "params": {"alpha": 0.1}},
]


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator:
    """Write a plug-in reward file; the names it registers are removed afterwards."""
    names: list[str] = []

    def write(name: str, body: str, kinds: str = "None") -> str:
        path = tmp_path / f"{name}.py"
        path.write_text(
            "import threading, time\n"
            "from rewards import reward\n"
            "release = threading.Event()\n"
            f"@reward({name!r}, kinds={kinds})\n"
            "def fn(completions, targets):\n" + body
        )
        names.append(name)
        return str(path)

    yield write
    for name in names:
        unregister(name)


def started(specs: list[dict], timeout_s: float = 30.0) -> RewardWorker:
    worker = RewardWorker(specs, timeout_s=timeout_s)
    worker.start()
    return worker


def test_builtins_weighted_sum_and_none_where_not_applicable() -> None:
    worker = RewardWorker(BUILTINS)
    assert worker.start() == ["format", "exact_match", "exp_mae"]
    res = worker.score(COMPLETIONS, RECORDS)
    e = math.exp(-0.1 * 1.0)  # MAE of [1, 4] vs [1, 2]
    assert res.components == {
        "format": [1.0, 1.0, 0.0, 1.0],
        "exact_match": [1.0, None, None, 0.0],
        "exp_mae": [None, pytest.approx(e), None, None],
    }
    assert res.total == pytest.approx([0.5 + 1.0, 0.5 + 2.0 * e, 0.0, 0.5])
    # The same numbers as the library's RewardSet scoring all rewards at once.
    targets = [Target.from_record(r) for r in RECORDS]
    assert res.total == RewardSet(BUILTINS).score(COMPLETIONS, targets).total
    assert res.errors == res.timeouts == {"format": 0, "exact_match": 0, "exp_mae": 0}
    assert res.seconds > 0


def test_raising_plugin_zeroes_only_failing_completions(
    plugin, caplog: pytest.LogCaptureFixture
) -> None:
    path = plugin(
        "t_boom",
        "    if any('BOOM' in c for c in completions):\n"
        "        raise ValueError('found BOOM')\n"
        "    return [1.0] * len(completions)\n",
    )
    worker = started([{"name": "format"}, {"name": "t_boom", "weight": 0.5, "module": path}])
    completions = ["ok", "BOOM", "<think>x</think><answer>B</answer>", "BOOM again"]
    with caplog.at_level(logging.WARNING, logger="actors.reward"):
        res = worker.score(completions, RECORDS)
    assert res.components["t_boom"] == [1.0, 0.0, 1.0, 0.0]
    assert res.total == [0.5, 0.0, 1.5, 0.0]
    assert res.errors == {"format": 0, "t_boom": 2}
    assert res.timeouts == {"format": 0, "t_boom": 0}
    # One warning for the failing reward, with the exception text.
    assert len(caplog.records) == 1
    assert "t_boom" in caplog.text and "found BOOM" in caplog.text


def test_garbage_results_count_as_errors(plugin) -> None:
    wrong_len = plugin("t_len", "    return [1.0] * (len(completions) + 1)\n")
    nan = plugin(
        "t_nan", "    return [float('nan') if 'x' in c else 1.0 for c in completions]\n"
    )
    worker = started([{"name": "t_len", "module": wrong_len}, {"name": "t_nan", "module": nan}])
    res = worker.score(["x", "y", "z", "x"], RECORDS)
    assert res.errors == {"t_len": 4, "t_nan": 2}
    assert res.components["t_len"] == [0.0] * 4
    assert res.components["t_nan"] == [0.0, 1.0, 1.0, 0.0]
    assert res.total == [0.0, 1.0, 1.0, 0.0]


def test_timeout_zeroes_the_batch_and_does_not_block_the_next_call(plugin) -> None:
    path = plugin(
        "t_slow",
        "    if any('SLOW' in c for c in completions):\n"
        "        release.wait(2.0)\n"
        "    return [1.0] * len(completions)\n",
        kinds="('choice',)",
    )
    worker = started([{"name": "format"}, {"name": "t_slow", "module": path}], timeout_s=0.2)
    try:
        t0 = time.perf_counter()
        res = worker.score(["SLOW", "a", "b", "c"], RECORDS)
        assert time.perf_counter() - t0 < 1.0
        assert res.components["t_slow"] == [0.0, None, None, 0.0]  # choice targets only
        assert res.timeouts == {"format": 0, "t_slow": 2}
        assert res.errors == {"format": 0, "t_slow": 0}
        # The stuck thread is still waiting; the next call must not queue behind it.
        t0 = time.perf_counter()
        res = worker.score(["a", "b", "c", "d"], RECORDS)
        assert time.perf_counter() - t0 < 1.0
        assert res.components["t_slow"] == [1.0, None, None, 1.0]
        assert res.timeouts == {"format": 0, "t_slow": 0}
    finally:
        load_module(path).release.set()


def test_timeout_while_retrying_one_by_one_zeroes_the_rest(plugin) -> None:
    path = plugin(
        "t_flaky",
        "    if len(completions) > 1:\n"
        "        raise RuntimeError('batch bug')\n"
        "    if 'SLOW' in completions[0]:\n"
        "        release.wait(2.0)\n"
        "    return [1.0]\n",
    )
    worker = started([{"name": "t_flaky", "module": path}], timeout_s=0.2)
    try:
        t0 = time.perf_counter()
        res = worker.score(["a", "SLOW", "b", "c"], RECORDS)
        assert time.perf_counter() - t0 < 1.0
        assert res.components["t_flaky"] == [1.0, 0.0, 0.0, 0.0]
        assert res.errors == {"t_flaky": 0} and res.timeouts == {"t_flaky": 3}
    finally:
        load_module(path).release.set()


def test_broken_plugin_fails_at_start_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken_rewards.py"
    path.write_text("def broken(:\n")
    worker = RewardWorker([{"name": "whatever", "module": str(path)}])  # no work yet
    with pytest.raises(RewardConfigError, match=re.escape(str(path))):
        worker.start()


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([{"name": "no_such_reward"}], "unknown reward 'no_such_reward'"),
        ([{"name": "format"}, {"name": "format", "weight": 2}], "appear twice"),
        ([], "at least one reward"),
        ([{"name": "format", "wieght": 1}], "unknown keys"),
    ],
)
def test_bad_config_fails_at_start(specs: list[dict], message: str) -> None:
    worker = RewardWorker(specs)
    with pytest.raises(RewardConfigError, match=message):
        worker.start()


def test_misuse_is_an_error_for_the_caller() -> None:
    with pytest.raises(RuntimeError, match="start"):
        RewardWorker(BUILTINS).score(COMPLETIONS, RECORDS)
    worker = started(BUILTINS)
    with pytest.raises(ValueError, match="4 completions but 3 targets"):
        worker.score(COMPLETIONS, RECORDS[:3])
    with pytest.raises(ValueError, match="missing required key 'answer'"):
        worker.score(["x"], [{"id": 9, "task": "entity"}])
    assert worker.score([], []).total == []


@pytest.mark.parametrize(
    ("n_items", "n_workers", "sizes"),
    [(10, 3, [4, 3, 3]), (6, 2, [3, 3]), (2, 4, [1, 1, 0, 0]), (0, 2, [0, 0]), (5, 1, [5])],
)
def test_split_even(n_items: int, n_workers: int, sizes: list[int]) -> None:
    slices = split_even(n_items, n_workers)
    assert [s.stop - s.start for s in slices] == sizes
    assert [i for s in slices for i in range(n_items)[s]] == list(range(n_items))


def test_split_even_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        split_even(3, 0)
    with pytest.raises(ValueError):
        split_even(-1, 2)


def test_merge_of_chunks_equals_whole_batch() -> None:
    worker = started(BUILTINS)
    records, completions = RECORDS * 3, COMPLETIONS * 3
    whole = worker.score(completions, records)
    parts = [worker.score(completions[s], records[s]) for s in split_even(len(records), 3)]
    merged = merge(parts)
    assert (merged.total, merged.components) == (whole.total, whole.components)
    assert (merged.errors, merged.timeouts) == (whole.errors, whole.timeouts)
    assert merged.seconds == max(p.seconds for p in parts)


def test_docstring_examples() -> None:
    import actors.reward

    result = doctest.testmod(actors.reward)
    assert result.attempted > 0 and result.failed == 0


def test_merge_sums_counters_and_checks_names() -> None:
    a = RewardResult([1.0], {"r": [1.0]}, {"r": 1}, {"r": 0}, 0.5)
    b = RewardResult([0.0, 2.0], {"r": [None, 2.0]}, {"r": 2}, {"r": 3}, 0.25)
    m = merge([a, b])
    assert m == RewardResult([1.0, 0.0, 2.0], {"r": [1.0, None, 2.0]}, {"r": 3}, {"r": 3}, 0.5)
    with pytest.raises(ValueError, match="different rewards"):
        merge([a, RewardResult([1.0], {"q": [1.0]}, {"q": 0}, {"q": 0}, 0.1)])
    with pytest.raises(ValueError):
        merge([])
