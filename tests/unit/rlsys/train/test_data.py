"""`PromptSource`: over-long prompts are skipped and counted, never looped on forever; its
counters survive a resume through `state()` / `restore()`."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from rlsys.config import load_config
from rlsys.train.data import PromptSource


def _tokenizer():
    """One id per character of the conversation: prompt length is text length."""
    def apply_chat_template(messages, add_generation_prompt, tokenize):
        return list(range(sum(len(m["content"]) for m in messages)))
    return SimpleNamespace(apply_chat_template=apply_chat_template)


def _source(tmp_path: Path, prompts: list[str], limit: int) -> PromptSource:
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"id": f"r{i}", "task": "entity", "prompt": p,
                                        "answer": "A"}) + "\n"
                            for i, p in enumerate(prompts)))
    cfg = load_config(None, ["data.source=file", f"data.file={rows}",
                             f"rollout.max_prompt_tokens={limit}"])
    return PromptSource(cfg, _tokenizer())


def test_over_long_prompts_are_skipped_and_counted(tmp_path: Path) -> None:
    system = len(_source(tmp_path, ["x"], 10_000).next(1)[0].ids) - 1  # the instruction
    src = _source(tmp_path, ["short", "x" * 500, "short too"], system + 20)
    got = src.next(4)
    assert [p.id for p in got] == ["r0", "r2", "r0", "r2"]
    assert src.state() == {"skipped_long_prompts": 2, "redrawn_samples": 0}
    assert src.position == 6


def test_a_stream_where_nothing_fits_stops_with_a_clear_error(tmp_path: Path) -> None:
    src = _source(tmp_path, ["x" * 500, "y" * 600], 16)
    with pytest.raises(ValueError, match=r"prompts in a row are longer than "
                                         r"rollout.max_prompt_tokens=16; raise it"):
        src.next(2)


def test_counters_round_trip_through_state(tmp_path: Path) -> None:
    src = _source(tmp_path, ["short"], 10_000)
    src.restore({"skipped_long_prompts": 7, "redrawn_samples": 3, "other": 1})
    assert src.state() == {"skipped_long_prompts": 7, "redrawn_samples": 3}
    src.restore({})  # a checkpoint from before the counters: zeros
    assert src.state() == {"skipped_long_prompts": 0, "redrawn_samples": 0}


def test_a_copy_drill_is_the_references_tail_before_its_answer_tag() -> None:
    from rlsys.train.data import Prompt, copy_drill

    names = {"<answer>": 1}
    tok = SimpleNamespace(convert_tokens_to_ids=lambda name: names[name])
    p = Prompt("q", "entity", ids=[90, 91, 92], target={})
    ref = [5, 6, 10, 11, 12, 13, 14, 15, 16, 17, 1, 40, 2, 3]  # <think>, ..., <answer> C </answer>
    assert copy_drill(tok, p, ref, keep=3) == [90, 5, 6, 15, 16, 17, 1, 40, 2, 3]
    assert copy_drill(tok, p, [5, 6, 7, 1, 40, 2], keep=6) == [90, 5, 6, 7, 1, 40, 2]
    assert copy_drill(tok, p, [5, 6, 7], keep=3) is None  # cut before its tag: no drill


def test_copy_drills_cut_each_reference_at_successive_lengths_up_to_n() -> None:
    from rlsys.train.data import DRILL_KEEPS, Prompt, copy_drill, copy_drills

    names = {"<answer>": 1}
    tok = SimpleNamespace(convert_tokens_to_ids=lambda name: names[name])
    ps = [Prompt(f"q{i}", "entity", ids=[90 + i], target={}) for i in range(3)]
    long = [5, 6, *range(100, 120), 1, 40, 2]
    refs = [long, [5, 6, 7], long]  # the second was cut before its tag: no drill from it
    drills = copy_drills(tok, ps, refs, 5)
    assert drills == [copy_drill(tok, ps[0], long, DRILL_KEEPS[0]),
                      copy_drill(tok, ps[2], long, DRILL_KEEPS[0]),
                      copy_drill(tok, ps[0], long, DRILL_KEEPS[1]),
                      copy_drill(tok, ps[2], long, DRILL_KEEPS[1]),
                      copy_drill(tok, ps[0], long, DRILL_KEEPS[2])]
    assert len({len(d) for d in drills}) == 3  # three lengths, each ending in the tag
    assert all(d[-3:] == [1, 40, 2] for d in drills)
    assert len(copy_drills(tok, ps, refs, 100)) == 2 * len(DRILL_KEEPS)  # no more to cut


def test_the_align_curriculum_draws_one_node_questions_first() -> None:
    """`align(..., one_node=True)`: `align_node` questions only (one node, series
    skills); the full mix otherwise. Both from the same ST-Align split."""
    cfg = load_config(None, ["data.env.nodes=[3]", "data.env.lengths=[36]"])
    source = PromptSource(cfg, _tokenizer())
    first = [json.loads(p.target["meta"]) for p in source.align(0, 12, one_node=True)]
    assert {p.task for p in source.align(0, 12, one_node=True)} == {"align_node"}
    assert all(m["alone"] for m in first)
    full = source.align(0, 40)
    assert {p.task for p in full} == {"align"}
    assert not all(json.loads(p.target["meta"])["alone"] for p in full)


def test_the_align_stage_follows_its_curriculum_then_keeps_a_one_node_share() -> None:
    """`align_step`: one-node questions for the first `one_node_steps`, then the full mix
    with `node_share` of each batch on one node alone; the later stages' rehearsal
    (`align_mix`) keeps the same share."""
    cfg = load_config(None, ["data.env.nodes=[3]", "data.env.lengths=[36]",
                             "trainer.align.batch_size=8", "trainer.align.one_node_steps=2",
                             "trainer.align.node_share=0.25"])
    source = PromptSource(cfg, _tokenizer())
    tasks = [[p.task for p in source.align_step(8 * k, k)] for k in range(3)]
    assert tasks[0] == tasks[1] == ["align_node"] * 8
    assert sorted(tasks[2]) == ["align"] * 6 + ["align_node"] * 2
    assert [p.task for p in source.align_mix(0, 4)].count("align_node") == 1
    cfg.trainer.align.node_share = 0.0  # the full mix alone, as before the share
    assert {p.task for p in source.align_step(16, 2)} == {"align"}


def test_the_align_held_out_split_is_stratified_by_skill_label() -> None:
    """Every skill label measured on as many questions (n / 15, the first n % 15 labels
    one more), the same questions every time."""
    from collections import Counter

    from envs.tasks.align import LABELS, skill_label

    cfg = load_config(None, ["data.env.nodes=[3]", "data.env.lengths=[36]"])
    source = PromptSource(cfg, _tokenizer())
    held = source.align_held_out(35)
    count = Counter(skill_label(json.loads(p.target["meta"])) for p in held)
    assert len(LABELS) == 15 and set(count) == set(LABELS)
    assert [count[x] for x in LABELS] == [3] * 5 + [2] * 10
    assert [p.id for p in source.align_held_out(35)] == [p.id for p in held]
    assert source.align_held_out(0) == []
