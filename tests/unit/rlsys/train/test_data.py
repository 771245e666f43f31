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
