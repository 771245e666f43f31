"""The gold side of a reward: :class:`Target`, built from our samples or from ST-Test rows.

A target carries what every reward needs to score one completion: the task, the answer
kind (``choice`` letter, ``sequence`` of numbers, free ``text``, a short exact ``value``),
the gold answer and the few numbers that go with it (option count, horizon, scale,
tolerance). Gold answers are parsed and validated once, at construction, so a malformed
data row fails where it is read, with its id, instead of as a zero reward deep inside a
training run.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from rewards.extract import parse_gold, parse_numbers
from rewards.facts import Facts

CHOICE = "choice"
SEQUENCE = "sequence"
TEXT = "text"
VALUE = "value"
KINDS: tuple[str, ...] = (CHOICE, SEQUENCE, TEXT, VALUE)

# Built-in task families and their answer kinds; a plug-in task states its kind instead.
TASK_KINDS: dict[str, str] = {
    "etiological": CHOICE,
    "entity": CHOICE,
    "correlation": CHOICE,
    "root_cause": CHOICE,
    "propagation": CHOICE,
    "forecasting": SEQUENCE,
    "path_description": TEXT,
    "intervention": CHOICE,
    "align": VALUE,
    "align_node": VALUE,
}

_LETTER_RE = re.compile(r"[A-Z]")
_OPTION_RE = re.compile(r"(?:^|\s)([A-Z])\.\s")
_QUESTION_MARKER = "answer the following question:"
_ID_KEYS = ("id", "sample_id", "index")


@dataclass(frozen=True)
class Target:
    """What a completion is scored against. Construct directly or with :meth:`from_record`.

    >>> Target("forecasting", "sequence", "[1.0, 2.0]").horizon
    2
    """

    task: str
    """Task family: a key of TASK_KINDS or any name a plug-in defines."""
    kind: str
    """Answer kind: "choice" | "sequence" | "text" | "value"."""
    answer: str
    """Gold: a letter "C", a JSON list "[1.0, 2.0]", a reference text, or a short exact
    value ("15", "up", "Node 1, Node 3", "none")."""
    n_options: int = 0
    """Number of options of a choice question; 0 when unknown (no range check)."""
    horizon: int = 0
    """Forecast length; 0 means "take it from the gold list"."""
    scale: float = 1.0
    """Typical magnitude of the forecast target, the divisor of normalised MAE."""
    tolerance: float = 0.0
    """How far a numeric value answer may be from the gold and still be right."""
    question: str = ""
    """Question text, shown to the AI judge."""
    reference: str = ""
    """Reference rationale for the judge; the judge falls back to ``answer`` when empty."""
    facts: Facts | None = field(default=None, compare=False, repr=False)
    """The question's data that a rationale's claims are checked against (departures,
    links and lags; ``rewards.facts``, checked by ``rewards.rationale``): built from a
    record's ``series`` and ``edges``; None where the record has none."""
    options: tuple[str, ...] = field(default=(), compare=False, repr=False)
    """A choice question's option texts in order (A first), where the record gives them:
    what ``rewards.rationale.concluded`` reads a rationale's conclusion against."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"target kind must be one of {KINDS}, got {self.kind!r}")
        if self.n_options < 0 or self.horizon < 0 or self.tolerance < 0:
            raise ValueError("n_options, horizon and tolerance must be >= 0")
        if self.kind == CHOICE:
            letter = self.gold_letter
            if self.n_options and ord(letter) - 65 >= self.n_options:
                raise ValueError(
                    f"gold letter {letter} is out of range for {self.n_options} options"
                )
        elif self.kind == SEQUENCE:
            n = len(self.gold_values)
            if self.horizon == 0:
                object.__setattr__(self, "horizon", n)  # frozen: the documented escape hatch
            elif self.horizon != n:
                raise ValueError(f"horizon {self.horizon} != length {n} of gold {self.answer!r}")

    @cached_property
    def gold_letter(self) -> str:
        """The gold letter of a choice target (upper case)."""
        letter = parse_gold(self.answer).strip().upper()
        if _LETTER_RE.fullmatch(letter) is None:
            raise ValueError(f"choice gold must be a single letter A-Z, got {self.answer!r}")
        return letter

    @cached_property
    def gold_values(self) -> tuple[float, ...]:
        """The gold numbers of a sequence target."""
        parsed = parse_numbers(parse_gold(self.answer))
        if parsed.reason is not None:
            raise ValueError(f"sequence gold {self.answer!r} is unusable: {parsed.reason}")
        return tuple(parsed.value)  # type: ignore[arg-type]

    @classmethod
    def from_record(cls, rec: Mapping) -> Target:
        """Build a target from one of our sample records or from an ST-Test row.

        Sample records: keys ``task``, ``answer`` (str, or a list of numbers), optional
        ``options`` (list of str), ``horizon``, ``scale``, ``tolerance``, ``question``,
        ``reference``, ``kind``. Without ``kind``: options -> choice, horizon > 0 ->
        sequence, else the task's kind in TASK_KINDS, else text.

        ST-Test rows (STReasoner): keys ``category``, ``output``, ``input``. A letter gold is
        a choice whose option count is read from ``Options: A. ... B. ...`` in the input;
        ``forecasting`` is a sequence whose horizon is the gold length. ``question`` is the
        input after "answer the following question:".

        Scale of a sequence when the record gives none: the mean absolute value of the
        gold list (1.0 if that is 0). It is only a magnitude for normalised MAE; ST-Test
        rows do not say which history window a forecast continues, so the gold itself is
        the one magnitude every row has.
        """
        if "category" in rec or "output" in rec:
            return cls._from_st_test(rec)
        _require(rec, ("task", "answer"))
        task = str(rec["task"])
        raw = rec["answer"]
        if isinstance(raw, str):
            answer = parse_gold(raw)
        elif isinstance(raw, list | tuple):
            answer = json.dumps([float(x) for x in raw])
        else:
            raise ValueError(f"record {_rid(rec)}: 'answer' must be a str or a list, got {raw!r}")
        options = rec.get("options") or ()
        horizon = int(rec.get("horizon") or 0)
        kind = rec.get("kind") or (
            CHOICE if options else SEQUENCE if horizon > 0 else TASK_KINDS.get(task, TEXT)
        )
        try:
            return cls(
                task=task,
                kind=kind,
                answer=answer,
                n_options=len(options),
                horizon=horizon,
                scale=_scale(rec.get("scale"), answer, kind),
                tolerance=float(rec.get("tolerance") or 0.0),
                question=str(rec.get("question") or ""),
                reference=str(rec.get("reference") or answer),
                facts=_facts(rec),
                options=tuple(str(o) for o in options),
            )
        except ValueError as e:
            raise ValueError(f"record {_rid(rec)}: {e}") from e

    @classmethod
    def _from_st_test(cls, rec: Mapping) -> Target:
        _require(rec, ("category", "output", "input"))
        task = str(rec["category"])
        text = str(rec["input"])
        answer = parse_gold(str(rec["output"]))
        if TASK_KINDS.get(task) == SEQUENCE:
            kind = SEQUENCE
        elif _LETTER_RE.fullmatch(answer.upper()):
            kind = CHOICE
        else:
            kind = TEXT
        marker = text.find(_QUESTION_MARKER)
        question = text[marker + len(_QUESTION_MARKER) :].strip() if marker >= 0 else text
        try:
            return cls(
                task=task,
                kind=kind,
                answer=answer,
                n_options=count_options(text) if kind == CHOICE else 0,
                scale=_scale(None, answer, kind),
                question=question,
                reference=answer,
            )
        except ValueError as e:
            raise ValueError(f"ST-Test row {_rid(rec)}: {e}") from e


def _facts(rec: Mapping) -> Facts | None:
    """A sample record's data for the rationale checker: None without series and edges,
    or when they are not a table of numbers and [from, to(, lag)] lists (the answer is
    still scored; only the claims go unchecked)."""
    if rec.get("series") is None or rec.get("edges") is None:
        return None
    try:
        return Facts.of(rec["series"], rec["edges"])
    except (ValueError, TypeError, KeyError, IndexError):
        return None


def count_options(text: str) -> int:
    """Number of lettered options after "Options:" (the run A, B, C, ... in order).

    >>> count_options("Which? Options: A. up B. down C. flat")
    3
    """
    at = text.find("Options:")
    if at < 0:
        return 0
    expected = 0
    for m in _OPTION_RE.finditer(text, at):
        # Option text may itself contain "X. " (an initial); only the ordered run counts.
        if ord(m.group(1)) - 65 == expected:
            expected += 1
    return expected


def _scale(given: object, answer: str, kind: str) -> float:
    if given is not None:
        return float(given)  # type: ignore[arg-type]
    if kind != SEQUENCE:
        return 1.0
    values = parse_numbers(answer).value or []
    m = math.fsum(abs(v) for v in values) / len(values) if values else 0.0  # type: ignore[union-attr]
    return m if m > 0 and math.isfinite(m) else 1.0


def _rid(rec: Mapping) -> str:
    for key in _ID_KEYS:
        if key in rec:
            return repr(rec[key])
    return "(no id)"


def _require(rec: Mapping, keys: tuple[str, ...]) -> None:
    for key in keys:
        if key not in rec:
            raise ValueError(f"record {_rid(rec)} is missing required key {key!r}")
