"""Target construction from our sample records and from real ST-Test rows."""

from __future__ import annotations

import pickle

import pytest

from rewards.types import TASK_KINDS, Target, count_options


def test_st_test_rows_become_targets(st_rows: list[dict]) -> None:
    by_task = {row["category"]: Target.from_record(row) for row in st_rows}
    assert set(by_task) == {"etiological", "entity", "correlation", "forecasting"}
    for task in ("etiological", "entity", "correlation"):
        t = by_task[task]
        assert (t.kind, t.n_options, t.horizon) == ("choice", 4, 0)
    assert by_task["etiological"].gold_letter == "D"
    assert by_task["entity"].gold_letter == "C"
    assert by_task["entity"].question.startswith("Which (name, description) pair")
    f = by_task["forecasting"]
    assert (f.kind, f.horizon, f.answer) == ("sequence", 3, "[19.86, 19.97, 20.05]")
    assert f.gold_values == (19.86, 19.97, 20.05)
    assert f.scale == pytest.approx((19.86 + 19.97 + 20.05) / 3)


def test_sample_records_infer_kind() -> None:
    choice = Target.from_record(
        {"id": "s1", "task": "entity", "answer": "B", "options": ["a", "b", "c"]}
    )
    assert (choice.kind, choice.n_options, choice.gold_letter) == ("choice", 3, "B")
    seq = Target.from_record({"task": "forecasting", "answer": [1, 2.5], "scale": 4.0})
    assert (seq.kind, seq.horizon, seq.scale, seq.gold_values) == ("sequence", 2, 4.0, (1.0, 2.5))
    text = Target.from_record({"task": "my_plugin_task", "answer": "Node 0 -> Node 2"})
    assert text.kind == "text" and text.reference == "Node 0 -> Node 2"
    by_name = Target.from_record({"task": "forecasting", "answer": "[3.0, -1.0]"})
    assert by_name.kind == "sequence" and by_name.horizon == 2 and by_name.scale == 2.0
    explicit = Target.from_record(
        {"task": "x", "kind": "text", "answer": "A", "reference": "because A", "question": "Q?"}
    )
    assert (explicit.kind, explicit.reference, explicit.question) == ("text", "because A", "Q?")


def test_missing_keys_name_the_key_and_id() -> None:
    with pytest.raises(ValueError, match=r"record 'abc' is missing required key 'answer'"):
        Target.from_record({"id": "abc", "task": "entity"})
    with pytest.raises(ValueError, match=r"'sid'.*missing required key 'input'"):
        Target.from_record({"sample_id": "sid", "category": "entity", "output": "<answer>A"})


def test_bad_gold_is_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match="record 'r9'.*single letter"):
        Target.from_record({"id": "r9", "task": "entity", "answer": "AB", "options": ["x", "y"]})
    with pytest.raises(ValueError, match="out of range"):
        Target("entity", "choice", "E", n_options=4)
    with pytest.raises(ValueError, match="unusable"):
        Target("forecasting", "sequence", "[1, nan]")
    with pytest.raises(ValueError, match="horizon 3 != length 2"):
        Target("forecasting", "sequence", "[1, 2]", horizon=3)
    with pytest.raises(ValueError, match="kind must be one of"):
        Target("entity", "letter", "A")


def test_zero_scale_falls_back_to_one() -> None:
    assert Target.from_record({"task": "forecasting", "answer": [0, 0]}).scale == 1.0


def test_targets_pickle_with_cached_gold() -> None:
    t = Target("forecasting", "sequence", "[1.5, 2.5]")
    back = pickle.loads(pickle.dumps(t))
    assert back == t and back.gold_values == (1.5, 2.5) and back.horizon == 2


def test_count_options_counts_the_ordered_run() -> None:
    assert count_options("no options here") == 0
    assert count_options("Options: A. Washington D. C. area B. other C. third") == 3
    assert TASK_KINDS["forecasting"] == "sequence" and TASK_KINDS["path_description"] == "text"
