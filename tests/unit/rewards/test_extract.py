"""Answer extraction: tags, letters, number lists, reason codes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.extract import (
    ANSWER_FORMAT_RE,
    BAD_NUMBER,
    EMPTY_ANSWER,
    LETTER_OUT_OF_RANGE,
    NO_ANSWER_TAG,
    NON_FINITE,
    NOT_A_LETTER,
    NOT_A_LIST,
    REASONS,
    WRONG_LENGTH,
    Extraction,
    answer_text,
    is_well_formed,
    parse_choice,
    parse_gold,
    parse_sequence,
    strip_think,
)


def wrap(inner: str) -> str:
    return f"<think>reasoning</think><answer>{inner}</answer>"


def test_reason_codes_are_distinct_strings() -> None:
    assert len(set(REASONS)) == len(REASONS) == 8
    assert Extraction("C").ok and not Extraction(None, NOT_A_LETTER).ok


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("<think>a</think><answer>B</answer>", True),
        ("  \n<think>multi\nline</think>\n\n<answer>[1, 2]</answer>\n", True),
        ("<answer>B</answer>", False),
        ("<think>a</think>", False),
        ("<think>a</think><answer>B</answer> trailing words", False),
        ("preamble <think>a</think><answer>B</answer>", False),
        ("<think>a</think><answer>B", False),
    ],
)
def test_format_regex(text: str, ok: bool) -> None:
    assert (ANSWER_FORMAT_RE.fullmatch(text) is not None) is ok


@settings(deadline=None)  # shared CI cores make per-example timing noisy
@given(
    st.lists(
        st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", " ", "\n", "x", "\u2003"]),
        max_size=12,
    ).map("".join)
)
def test_linear_format_check_agrees_with_the_regex(text: str) -> None:
    assert is_well_formed(text) == (ANSWER_FORMAT_RE.fullmatch(text) is not None)


def test_format_check_is_linear_on_degenerate_completions() -> None:
    text = "<think>" + "</think><answer>a</answer>x" * 2000
    assert not is_well_formed(text)
    assert is_well_formed(text + "</think><answer>a</answer>")


def test_answer_text_takes_the_last_block() -> None:
    assert answer_text("<answer>A</answer> no wait <answer>  D </answer>").value == "D"


def test_answer_text_tolerates_an_unclosed_last_block() -> None:
    # vLLM stopping on "</answer>" strips the closing tag from the output.
    assert answer_text("<think>x</think><answer>C").value == "C"
    assert answer_text("<answer>A</answer><answer>[1, 2").value == "[1, 2"


@pytest.mark.parametrize(
    ("text", "reason"),
    [("no tag at all", NO_ANSWER_TAG), ("<answer>   </answer>", EMPTY_ANSWER), ("", NO_ANSWER_TAG)],
)
def test_answer_text_failures(text: str, reason: str) -> None:
    ex = answer_text(text)
    assert ex.reason == reason and ex.value is None


def test_strip_think_removes_closed_and_dangling_blocks() -> None:
    assert strip_think("<think>a</think>Answer <think>b") == "Answer"


@pytest.mark.parametrize(
    "inner",
    [
        "C",
        " c ",
        "(C)",
        "C.",
        "**C**",
        "Option C",
        "option: c",
        "Answer: C",
        "[C]",
        "`C`",
        "C. Node 3 is the terminal hub",
        "C) Node 3",
        "**C.** Node 3",
        "C - Node 3",
        "'C'",
    ],
)
def test_parse_choice_tolerates_markup(inner: str) -> None:
    ex = parse_choice(wrap(inner), 4)
    assert ex == Extraction("C")


@pytest.mark.parametrize(
    ("inner", "reason"),
    [
        ("A or B", NOT_A_LETTER),
        ("A, B", NOT_A_LETTER),
        ("I think C", NOT_A_LETTER),
        ("Urban pollution network", NOT_A_LETTER),
        ("CD", NOT_A_LETTER),
        ("3", NOT_A_LETTER),
        ("**", EMPTY_ANSWER),
    ],
)
def test_parse_choice_rejects_ambiguous(inner: str, reason: str) -> None:
    assert parse_choice(wrap(inner), 4).reason == reason


def test_parse_choice_range_and_missing_tag() -> None:
    out = parse_choice(wrap("E"), 4)
    assert out.reason == LETTER_OUT_OF_RANGE and out.value == "E"
    assert parse_choice(wrap("E")).ok  # n_options unknown: no range check
    assert parse_choice(wrap("D"), 4).ok
    assert parse_choice("The answer is C").reason == NO_ANSWER_TAG


@pytest.mark.parametrize(
    ("inner", "values"),
    [
        ("[1, 2.5, -3]", [1.0, 2.5, -3.0]),
        ("1, 2, 3", [1.0, 2.0, 3.0]),
        ("[1,2,3]", [1.0, 2.0, 3.0]),
        ("[100,200,300]", [100.0, 200.0, 300.0]),  # compact JSON: commas separate
        ("[1,234.5, 2,000]", [1234.5, 2000.0]),  # spaced list: "1,234.5" is one number
        ("[1,234,567.25, -8]", [1234567.25, -8.0]),
        ("[1e-3, 2.5E+04, -.5, +7.]", [0.001, 25000.0, -0.5, 7.0]),
        ("1 2 3", [1.0, 2.0, 3.0]),
        ("1; 2; 3", [1.0, 2.0, 3.0]),
        ("[1,\n 2,\n 3]", [1.0, 2.0, 3.0]),
        ("[1, 2, 3,]", [1.0, 2.0, 3.0]),
        ('["1.5", "2"]', [1.5, 2.0]),
        ("[[1, 2, 3]]", [1.0, 2.0, 3.0]),
        ("(1, 2)", [1.0, 2.0]),
        ("Node 2: [19.86, 19.97]", [19.86, 19.97]),
        ("```[4, 5]```", [4.0, 5.0]),
    ],
)
def test_parse_sequence_forms(inner: str, values: list[float]) -> None:
    ex = parse_sequence(wrap(inner))
    assert ex.ok, ex
    assert ex.value == values


@pytest.mark.parametrize(
    ("inner", "reason"),
    [
        ("[1, two, 3]", BAD_NUMBER),
        ("[1, 2.3.4]", BAD_NUMBER),
        ("[1,2, 3]", BAD_NUMBER),  # spaced list, "1,2" is not a thousands group
        ("[1,, 2]", BAD_NUMBER),
        ("[1_000, 2]", BAD_NUMBER),
        ("[[1, 2], [3, 4]]", BAD_NUMBER),
        ("increasing", NOT_A_LIST),
        ("C", NOT_A_LIST),
        ("[]", EMPTY_ANSWER),
    ],
)
def test_parse_sequence_failures(inner: str, reason: str) -> None:
    ex = parse_sequence(wrap(inner))
    assert ex.reason == reason and ex.value is None


@pytest.mark.parametrize("inner", ["[1, nan, 3]", "[NaN, 1]", "[inf, 1]", "[-Infinity]", "[1e999]"])
def test_parse_sequence_non_finite_keeps_value(inner: str) -> None:
    ex = parse_sequence(wrap(inner))
    assert ex.reason == NON_FINITE
    assert isinstance(ex.value, list) and not all(math.isfinite(v) for v in ex.value)


def test_parse_sequence_horizon() -> None:
    short = parse_sequence(wrap("[1, 2]"), horizon=3)
    assert short == Extraction([1.0, 2.0], WRONG_LENGTH)
    assert parse_sequence(wrap("[1, 2, 3]"), horizon=3).ok
    assert parse_sequence(wrap("[1, 2]"), horizon=None).ok
    # non-finite is reported before length: the list is unusable either way
    assert parse_sequence(wrap("[nan]"), horizon=3).reason == NON_FINITE


def test_compact_thousands_rules() -> None:
    # "050" is no JSON number, so that comma can only be a thousands separator.
    assert parse_sequence(wrap("[1,050, 7]")).value == [1050.0, 7.0]
    assert parse_sequence(wrap("[1,050]")).value == [1050.0]
    assert parse_sequence(wrap("[0,0,0]")).value == [0.0, 0.0, 0.0]
    # Genuinely ambiguous: two numbers, unless the horizon says one.
    assert parse_sequence(wrap("[1,234.5]")).value == [1.0, 234.5]
    assert parse_sequence(wrap("[1,234.5]"), horizon=1) == Extraction([1234.5])
    assert parse_sequence(wrap("[1,234.5]"), horizon=2) == Extraction([1.0, 234.5])
    assert parse_sequence(wrap("[1,234]"), horizon=3).reason == WRONG_LENGTH


def test_parse_gold_with_and_without_tags() -> None:
    assert parse_gold("<answer>D</answer>") == "D"
    assert parse_gold("[19.86, 19.97, 20.05]") == "[19.86, 19.97, 20.05]"
    assert parse_gold("  Node 0 -> Node 2  ") == "Node 0 -> Node 2"


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(deadline=None)  # shared CI cores make per-example timing noisy
@given(st.lists(finite, min_size=1, max_size=40))
def test_repr_lists_round_trip_exactly(xs: list[float]) -> None:
    text = wrap("[" + ", ".join(repr(x) for x in xs) + "]")
    assert parse_sequence(text, horizon=len(xs)).value == xs


@settings(deadline=None)  # shared CI cores make per-example timing noisy
@given(st.lists(st.floats(min_value=-1e12, max_value=1e12), min_size=1, max_size=20))
def test_thousands_formatted_lists_round_trip(xs: list[float]) -> None:
    text = wrap("[" + ", ".join(f"{x:,.3f}" for x in xs) + "]")
    ex = parse_sequence(text, horizon=len(xs))
    assert ex.ok, (text, ex)
    assert ex.value == [float(f"{x:.3f}") for x in xs]


@settings(deadline=None)  # shared CI cores make per-example timing noisy
@given(st.lists(finite, min_size=1, max_size=20))
def test_compact_json_lists_round_trip(xs: list[float]) -> None:
    text = wrap("[" + ",".join(repr(x) for x in xs) + "]")
    assert parse_sequence(text).value == xs


@settings(deadline=None)  # shared CI cores make per-example timing noisy
@given(st.text(max_size=200))
def test_parsers_never_raise(s: str) -> None:
    for ex in (parse_choice(s, 4), parse_sequence(s, 3), answer_text(s), parse_choice(wrap(s))):
        assert ex.reason is None or ex.reason in REASONS
    assert parse_sequence(wrap(s)).reason in (None, *REASONS)
