"""The token probe's spans, its scoring against hand-made guesses, and its tables."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from transformers import AutoTokenizer

from rlsys.evals.probe import (
    char_kinds,
    completion_offsets,
    decision,
    markdown,
    probe,
    rationale_hits,
    series_reliance,
    spans,
    summarise,
)
from rlsys.model.build import ensure_model

ROOT = ("<think>Node 3 receives links from Node 0, Node 1. Node 0 departs at step 22. "
        "Node 0->Node 3 (lag 5), so 22 + 5 = 27: too late. Node 1 leaves its baseline of 52 "
        "at step 15 (peak -42%). So option A.</think><answer>A</answer>")


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = ensure_model(tmp_path_factory.mktemp("m") / "tiny", "tiny", 0, progress=False)
    return AutoTokenizer.from_pretrained(path)


def _spans(tok, text):
    ids, offsets = completion_offsets(tok, text)
    return ids, offsets, [(s.kind, tok.decode([ids[i] for i in s.tokens]).strip())
                          for s in spans(text, offsets) if s.kind != "template"]


def test_every_kind_is_found_where_the_rationale_writes_it(tok) -> None:
    _, _, found = _spans(tok, ROOT)
    assert found == [("step", "22"), ("lag", "5"), ("sum", "27"), ("verdict", "too late"),
                     ("level", "52"), ("step", "15"), ("level", "-42"), ("option", "A"),
                     ("answer", "A")]


def test_a_span_claims_its_characters_once() -> None:
    kinds = char_kinds("22 + 5 = 27 at step 27")
    assert "".join(k[0] for k in kinds[9:11]) == "ss" and kinds[9] == "sum"
    assert kinds[-2:] == ["step", "step"]


def test_a_number_is_right_only_when_all_its_digits_are(tok) -> None:
    ids, offsets, _ = _spans(tok, ROOT)
    perfect = rationale_hits(ROOT, offsets, ids, list(ids))
    assert all(all(v) for v in perfect.values())
    # corrupt the last digit of the sum 27: the sum span is wrong, every other span right
    sums = [s for s in spans(ROOT, offsets) if s.kind == "sum"]
    guess = list(ids)
    guess[sums[0].tokens[-1]] = ids[sums[0].tokens[0]]
    hits = rationale_hits(ROOT, offsets, ids, guess)
    assert hits["sum"] == [False] and all(hits["lag"]) and all(hits["step"])
    table = summarise(hits)
    assert table["sum"] == {"share": 0.0, "n": 1} and table["step"] == {"share": 1.0, "n": 2}
    assert list(table)[0] == "step"  # KINDS order


def test_align_decisions_are_scored_within_their_tolerance(tok) -> None:
    text = "<think>Node 0 departs at step 14.</think><answer>14</answer>"
    lo, hi = decision(text, "14")
    assert text[lo:hi] == "14" and lo < text.index("</think>")
    ids, offsets = completion_offsets(tok, text)
    digit = {tok.decode([i]): i for i in ids}

    def probe_with(guessed: str, tolerance: float) -> float:
        guess = list(ids)
        at = [i for i, (a, b) in enumerate(offsets) if a >= lo and b <= hi]
        for i, ch in zip(at, guessed, strict=True):
            guess[i] = tok.convert_tokens_to_ids(ch) if ch not in digit else digit[ch]
        p = SimpleNamespace(completion=text, task="align",
                            target={"answer": "14", "tolerance": tolerance,
                                    "meta": json.dumps({"skill": "departure"})})
        return probe(tok, [p], [guess], align=True)["departure"]["share"]

    assert probe_with("14", 0) == 1.0
    assert probe_with("13", 1) == 1.0  # a step within one
    assert probe_with("13", 0) == 0.0
    assert probe_with("11", 1) == 0.0


def test_markdown_puts_points_side_by_side() -> None:
    lines = markdown({"after sft_align": {"lag": {"share": 0.5, "n": 4}},
                      "after grpo": {"lag": {"share": 0.75, "n": 4},
                                     "sum": {"share": 1.0, "n": 2}}}, "rationale token")
    assert lines[0] == "| rationale token | n | after sft_align | after grpo |"
    assert lines[2] == "| lag | 4 | 0.500 | 0.750 |"
    assert lines[3] == "| sum | 2 | - | 1.000 |"
    assert markdown({}, "x") == []


def test_series_reliance_counts_the_readings_that_change_with_the_series(tok) -> None:
    """A series reading (a step, a level; an ST-Align series skill's decision) counts as
    relied on when the guess there changes with the reversed series; the other tokens
    never count."""
    ids, offsets, _ = _spans(tok, ROOT)
    p = SimpleNamespace(completion=ROOT, target={})
    steps = [s for s in spans(ROOT, offsets) if s.kind == "step"]
    lags = [s for s in spans(ROOT, offsets) if s.kind == "lag"]
    moved = list(ids)
    moved[steps[0].tokens[0]] = ids[lags[0].tokens[0]]  # the first step reads otherwise
    moved[lags[0].tokens[0]] = ids[steps[0].tokens[0]]  # a lag is no series reading
    table = series_reliance(tok, [p], [list(ids)], [moved])
    assert table == {"step": {"share": 0.5, "n": 2}, "level": {"share": 0.0, "n": 2}}
    assert series_reliance(tok, [p], [list(ids)], [list(ids)])["step"]["share"] == 0.0

    text = "<think>Node 0 moves up.</think><answer>up</answer>"
    a_ids, _ = completion_offsets(tok, text)
    down = tok("<think>Node 0 moves down.</think><answer>up</answer>",
               add_special_tokens=False)["input_ids"]
    align = [SimpleNamespace(completion=text, target={"answer": "up", "meta": json.dumps(
        {"skill": skill, "alone": True})}) for skill in ("direction", "lag")]
    flipped = down[:len(a_ids)]
    table = series_reliance(tok, align, [a_ids, a_ids], [flipped, flipped], align=True)
    assert table == {"direction (one node)": {"share": 1.0, "n": 1}}  # lag: not a series skill
