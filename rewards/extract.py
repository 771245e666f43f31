"""Answer extraction: pull a letter, a list of numbers or free text out of a completion.

Completions follow ``<think>...</think><answer>...</answer>``. Every parser here reads the
content of the LAST ``<answer>`` block and returns an :class:`Extraction`: the parsed
``value`` and, when the answer is unusable, a short machine-readable ``reason``.

Reason codes (module constants, stable: metrics and logs count them):

=====================  ================================================================
``no_answer_tag``      the text holds no ``<answer>`` opening tag
``empty_answer``       the answer block is empty (or only whitespace/markup, or ``[]``)
``not_a_letter``       a choice answer that is not one unambiguous letter (``"A or B"``)
``letter_out_of_range`` a letter at or beyond ``n_options`` (``"E"`` with 4 options)
``not_a_list``         a sequence answer with no number in it (``"increasing"``)
``bad_number``         a list where some item is not a number (``"[1, two, 3]"``)
``non_finite``         a list holding nan/inf; the floats are still returned as ``value``
``wrong_length``       a finite list whose length differs from ``horizon``; value returned
=====================  ================================================================

Decisions worth knowing:

* Tags are matched in lower case exactly as the prompt prescribes (``<answer>``).
* A completion with no ``<answer>`` tag whose whole text is one bracketed list is read as
  that list: ST-Test writes its forecasting gold that way (``[19.86, 19.97, 20.05]``), and
  models trained on it answer so. Any other untagged text (a bare letter included) is
  ``no_answer_tag``; the ``format`` reward still scores a bare list 0.
* An ``<answer>`` block left open at the end of the text is accepted (its content runs to
  the end): generation stopped on the stop string ``</answer>`` strips the closing tag.
  The ``format`` reward still demands the closing tag.
* Thousands separators in sequences: a list whose items are separated by a comma followed
  by whitespace (``"[1,234.5, 2,000]"``) reads a comma *without* whitespace between digit
  groups of exactly three as a thousands separator (``1234.5, 2000``). A list with no comma
  followed by whitespace is compact JSON (``"[100,200,300]"``): commas separate items,
  except before a group with a leading zero, which no JSON number has (``"[1,050]"`` is
  1050). ``"[1,234.5]"`` stays ambiguous: it reads as two numbers, unless a ``horizon``
  is given, the two-number reading has the wrong length and the thousands reading has the
  right one.

>>> parse_choice("<think>...</think><answer>**C.** Node 3</answer>").value
'C'
>>> parse_sequence("<answer>[1,234.5, 2,000, -3e-1]</answer>").value
[1234.5, 2000.0, -0.3]
>>> parse_sequence("<answer>[1, nan]</answer>").reason
'non_finite'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from envs.values import same_value

NO_ANSWER_TAG = "no_answer_tag"
EMPTY_ANSWER = "empty_answer"
NOT_A_LETTER = "not_a_letter"
LETTER_OUT_OF_RANGE = "letter_out_of_range"
NOT_A_LIST = "not_a_list"
BAD_NUMBER = "bad_number"
NON_FINITE = "non_finite"
WRONG_LENGTH = "wrong_length"
REASONS: tuple[str, ...] = (
    NO_ANSWER_TAG,
    EMPTY_ANSWER,
    NOT_A_LETTER,
    LETTER_OUT_OF_RANGE,
    NOT_A_LIST,
    BAD_NUMBER,
    NON_FINITE,
    WRONG_LENGTH,
)

ANSWER_FORMAT_RE = re.compile(r"\s*<think>.*?</think>\s*<answer>.*?</answer>\s*", re.DOTALL)

_THINK_TO_ANSWER_RE = re.compile(r"</think>\s*<answer>")
_OPEN = "<answer>"
_CLOSE = "</answer>"
_THINK_BLOCK_RE = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL)

# Markup a model wraps around a letter: emphasis, code ticks, quotes, brackets.
_WRAP = "*_`\"'([{"
_WRAP_END = "*_`\"')]}"
_CHOICE_RE = re.compile(
    r"(?:(?:option|answer|choice)\s*[:\-]?\s*)?"  # "Option C", "Answer: C"
    r"[*_`\"'(\[{]*"
    r"(?P<letter>[A-Za-z])"
    r"[*_`\"')\]}]*"
    # Either nothing follows, or a punctuation separator then the option's text
    # ("C. Node 3", "C) ...", "C: ..."), or a spaced dash ("C - Node 3"). A bare space
    # followed by text ("A or B", "I think C") is not accepted: it is ambiguous.
    r"(?:|\s*[.:)]\s*.*|\s+[-\u2013\u2014]\s+.*)",
    re.IGNORECASE | re.DOTALL,
)
_SPACED_COMMA_RE = re.compile(r",\s")
_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?(?:[eE][+-]?\d+)?")
_ITEM_QUOTES = "\"'`"
_BARE_LIST_RE = re.compile(r"\[[^\[\]<>]*\]")


@dataclass(frozen=True, slots=True)
class Extraction:
    """A parsed answer: ``value`` (None when nothing usable) and ``reason`` (None if ok)."""

    value: object | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """True when the answer is usable as is."""
        return self.reason is None


_NO_TAG = Extraction(None, NO_ANSWER_TAG)
_EMPTY = Extraction(None, EMPTY_ANSWER)
_NOT_LETTER = Extraction(None, NOT_A_LETTER)


def answer_text(text: str) -> Extraction:
    """Content of the last ``<answer>`` block, stripped; an unclosed last block runs to the end.

    >>> answer_text("<answer>A</answer> then <answer> B </answer>").value
    'B'
    >>> answer_text("no tags").reason
    'no_answer_tag'
    >>> answer_text(" [19.86, 19.97] ").value
    '[19.86, 19.97]'
    """
    start = text.rfind(_OPEN)
    if start < 0:
        bare = text.strip()
        return Extraction(bare) if _BARE_LIST_RE.fullmatch(bare) else _NO_TAG
    start += len(_OPEN)
    end = text.find(_CLOSE, start)
    content = (text[start:] if end < 0 else text[start:end]).strip()
    if not content:
        return _EMPTY
    return Extraction(content)


def is_well_formed(text: str) -> bool:
    """Whether ``ANSWER_FORMAT_RE`` fullmatches ``text``, in linear time.

    The regex's two lazy ``.*?`` backtrack against each other: on a degenerate completion
    that repeats ``</think><answer>x</answer>`` it costs milliseconds. The earliest
    ``</think>\\s*<answer>`` after the opening tag is the best split, so one search decides.

    >>> is_well_formed(" <think>a</think>\\n<answer>B</answer> ")
    True
    >>> is_well_formed("<answer>B</answer>")
    False
    """
    s = text.strip()
    if not (s.startswith("<think>") and s.endswith(_CLOSE)):
        return False
    m = _THINK_TO_ANSWER_RE.search(s, 7)
    return m is not None and m.end() <= len(s) - len(_CLOSE)


_STRICT_RE = re.compile(
    r"\s*<think>(?:(?!</?think>|</?answer>).)*</think>\s*"
    r"<answer>(?:(?!</?think>|</?answer>).)*\S(?:(?!</?think>|</?answer>).)*</answer>\s*",
    re.DOTALL)


def is_strictly_formed(text: str) -> bool:
    """One think block, then one non-empty answer block, and no stray tags inside either.

    The seed regex (``is_well_formed``) lets ``.*?`` run across tags, so text that merely
    starts with ``<think>`` and ends with ``</answer>`` passes; a small policy learns to
    emit exactly that (seen in training). The strict form closes that hole.

    >>> is_strictly_formed("<think>a</think> <answer>B</answer>")
    True
    >>> is_strictly_formed("<think></think></answer> x<think></think><answer>B</answer>")
    False
    >>> is_strictly_formed("<think>a</think><answer> </answer>")
    False
    """
    return _STRICT_RE.fullmatch(text) is not None


def strip_think(text: str) -> str:
    """The text without its ``<think>`` blocks (an unclosed one runs to the end).

    >>> strip_think("<think>hmm</think> The path is 0->2.")
    'The path is 0->2.'
    """
    return _THINK_BLOCK_RE.sub("", text).strip()


def parse_choice(text: str, n_options: int | None = None) -> Extraction:
    """The upper-case letter answered in the last ``<answer>`` block.

    ``n_options`` (None or 0: unknown) bounds the letter: with 4 options only A-D are valid.

    >>> [parse_choice(f"<answer>{a}</answer>", 4).value
    ...  for a in ("C", " c ", "(C)", "C.", "**C**", "Option C", "[C]", "C. Node 3 leads")]
    ['C', 'C', 'C', 'C', 'C', 'C', 'C', 'C']
    >>> parse_choice("<answer>A or B</answer>").reason
    'not_a_letter'
    >>> parse_choice("<answer>E</answer>", 4).reason
    'letter_out_of_range'
    """
    found = answer_text(text)
    if found.reason is not None:
        return found
    content: str = found.value  # type: ignore[assignment]
    m = _CHOICE_RE.fullmatch(content)
    if m is None:
        if not content.strip(_WRAP + _WRAP_END + " .:"):
            return _EMPTY
        return _NOT_LETTER
    letter = m.group("letter").upper()
    if n_options and ord(letter) - 65 >= n_options:
        return Extraction(letter, LETTER_OUT_OF_RANGE)
    return Extraction(letter)


def _list_body(content: str) -> str:
    """The inside of the outermost brackets (one redundant level of nesting removed)."""
    body = content.strip(" \t\r\n`*")
    left, right = body.find("["), body.rfind("]")
    if 0 <= left < right:
        body = body[left + 1 : right].strip()
        if body.startswith("[") and body.endswith("]"):
            body = body[1:-1].strip()
    elif body.startswith("(") and body.endswith(")"):
        body = body[1:-1].strip()
    return body


def _split_items(body: str, thousands: bool | None) -> list[str]:
    """Split a list body into item strings following the thousands-separator rule above.

    ``thousands``: None decides from the spacing; True forces the spaced-list reading.
    Items keep surrounding whitespace (``float`` ignores it). str.split, not a regex
    split: this runs once per forecast reward and the regex costs ~10x more.
    """
    if ";" in body:
        body = body.replace(";", ", ")
    if "," not in body:
        return body.split()
    pieces = body.split(",")
    if thousands is None:
        thousands = _SPACED_COMMA_RE.search(body) is not None
    items = [pieces[0]]
    for piece in pieces[1:]:
        if thousands:
            glued = bool(piece) and not piece[0].isspace()
        else:
            glued = piece[:1] == "0" and piece[1:2].isdigit()
        if glued:  # a thousands group, checked against _THOUSANDS_RE when parsed
            items[-1] += "," + piece
        else:
            items.append(piece)
    return items


def _parse_item(item: str) -> float | None:
    """One item the fast path rejected: quoted, with thousands separators, or not a number."""
    item = item.strip().strip(_ITEM_QUOTES)
    if "_" in item:  # float() accepts "1_000"; a model writing that is confused
        return None
    if "," in item:
        if _THOUSANDS_RE.fullmatch(item) is None:
            return None
        item = item.replace(",", "")
    try:
        return float(item)
    except ValueError:
        return None


def parse_numbers(content: str) -> Extraction:
    """Numbers from an answer's content (no tags): the sequence rules without a horizon.

    >>> parse_numbers("1, 2.5, -3").value
    [1.0, 2.5, -3.0]
    """
    return _parse_numbers(_body(content), None)


def _body(content: str) -> str:
    # A trailing separator ("1, 2, 3,") is a harmless slip; an empty item inside is not.
    return _list_body(content).rstrip(",; \t\r\n")


def _parse_numbers(body: str, thousands: bool | None) -> Extraction:
    if not body:
        return _EMPTY
    items = _split_items(body, thousands)
    values: list[float] | None = None
    if "_" not in body:
        try:
            values = [float(item) for item in items]
        except ValueError:
            values = None
    if values is None:
        parsed = [_parse_item(item) for item in items]
        values = [x for x in parsed if x is not None]
        if len(values) != len(parsed):
            return Extraction(None, BAD_NUMBER if values else NOT_A_LIST)
    if not all(map(math.isfinite, values)):
        return Extraction(values, NON_FINITE)
    return Extraction(values)


def parse_sequence(text: str, horizon: int | None = None) -> Extraction:
    """The list of numbers in the last ``<answer>`` block; ``horizon`` (None/0: any) checks length.

    >>> parse_sequence("<answer>[1, 2.5E+04, -3]</answer>", horizon=3).value
    [1.0, 25000.0, -3.0]
    >>> parse_sequence("<answer>[1, 2]</answer>", horizon=3)
    Extraction(value=[1.0, 2.0], reason='wrong_length')
    >>> parse_sequence("<answer>[1,234.5]</answer>", horizon=1).value
    [1234.5]
    """
    found = answer_text(text)
    if found.reason is not None:
        return found
    body = _body(found.value)  # type: ignore[arg-type]
    parsed = _parse_numbers(body, None)
    if parsed.reason is None and horizon and len(parsed.value) != horizon:  # type: ignore[arg-type]
        if "," in body:
            # The compact reading missed the horizon; the thousands reading may hit it.
            alt = _parse_numbers(body, True)
            if alt.reason is None and len(alt.value) == horizon:  # type: ignore[arg-type]
                return alt
        return Extraction(parsed.value, WRONG_LENGTH)
    return parsed


def value_matches(completion: str, gold: str, tolerance: float = 0.0) -> bool:
    """Whether the completion's last ``<answer>`` says the gold value
    (`envs.values.same_value`: numbers within ``tolerance``, node sets equal, words equal).

    >>> value_matches("<answer>step 16</answer>", "15", 1)
    True
    >>> value_matches("<answer>Node 2, Node 1</answer>", "Node 1, Node 2")
    True
    """
    found = answer_text(completion)
    return found.reason is None and same_value(found.value, gold, tolerance)  # type: ignore[arg-type]


def parse_gold(output: str) -> str:
    """The gold answer's text, with or without ``<answer>`` tags around it.

    >>> parse_gold("<answer>D</answer>"), parse_gold(" [19.86, 19.97] ")
    ('D', '[19.86, 19.97]')
    """
    if _OPEN in output:
        found = answer_text(output)
        return found.value if found.reason is None else ""  # type: ignore[return-value]
    return output.strip()
