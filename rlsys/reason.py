"""Questions from clients (`POST /v1/reason`, `strl eval` on files): checked, turned into
the prompt training used, and the model's completion read back.

A question arrives in one of two shapes:

* **ours**: `series` (one list of numbers per node; node k is "Node k"), `edges`
  (`[from, to]`, `[from, to, lag]` or `{"from", "to", "lag"}`), `question`, and either
  `options` (multiple choice), `horizon` (a forecast), or neither (a free-text answer);
  optional `answer` (the gold, to be told whether the model was right), `node_names` (for
  display), `with_graph` (false: the S-GRPO graph-free prompt);
* **an ST-Test row**: `input` with `<ts><ts/>` placeholders, `timeseries`, and optionally
  `output` (the gold) and `category` (the task), exactly as in the public ST-Test files.

Both become a `Question`, whose `prompt` is built by `envs.prompt.build_prompt` with the
numbers inline at the checkpoint's precision: the same text, character for character,
that the simulator wrote for training (tested on every task family). Lags are checked
and, as training prompts write them, shown in the graph clause (`Node 0->Node 1 (lag 2)`).

Every check names the field it refuses (`series[2][7]: not a finite number`), and raises
`BadRequest`; nothing a client sends is evaluated or executed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from envs.prompt import PLACEHOLDER, build_prompt, format_options, parse_prompt, split_options
from envs.sample import Sample
from rewards.builtin import mean_abs_error
from rewards.extract import answer_text, parse_choice, parse_gold, parse_sequence
from rewards.types import CHOICE, SEQUENCE, TEXT, Target
from rlsys.config import RequestLimits
from rlsys.openai_api import BadRequest
from rlsys.sampling import REQUEST_FIELDS

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_HORIZON_RE = re.compile(r"for the next (\d+) (?:time )?steps")
_THINK_RE = re.compile(r"<think>(.*?)(?:</think>|\Z)", re.DOTALL)
MAX_ABS = 1e12  # larger magnitudes would not print faithfully at the prompt's precision
OURS = ("series", "edges", "question", "options", "horizon", "answer", "task",
        "node_names", "with_graph", "id")
"""Fields of our question shape (the request may also carry sampling fields)."""
ST_TEST = ("input", "timeseries", "output", "category")
"""Fields of an ST-Test row (other fields, the rows' own metadata, are ignored)."""
SAMPLING = (*REQUEST_FIELDS, "model")
LIMITS = RequestLimits()
"""What one question may hold unless told otherwise (`strl serve` passes its `limits`)."""


@dataclass
class Question:
    series: np.ndarray  # (nodes, steps)
    edges: list[tuple[int, int, int | None]]  # (from, to, lag or None)
    question: str  # without its options
    options: list[str] = field(default_factory=list)
    horizon: int = 0
    kind: str = TEXT
    task: str = ""
    gold: str | None = None
    node_names: list[str] | None = None
    with_graph: bool = True
    id: str | None = None  # the client's own id of the question, echoed back

    @property
    def full_question(self) -> str:
        return f"{self.question} {format_options(self.options)}" if self.options else self.question

    def prompt(self, precision: int, with_graph: bool | None = None) -> str:
        """The training-shaped prompt, numbers inline at `precision` decimals. Without edges
        (or with `with_graph` false) it is the graph-free prompt."""
        graph = self.with_graph if with_graph is None else with_graph
        rounded = np.round(self.series, precision)
        return build_prompt(rounded, self.edges, self.full_question,
                            precision=precision, with_graph=graph and bool(self.edges))

    def target(self) -> Target | None:
        """The gold as a reward target, when the question carries one."""
        if self.gold is None:
            return None
        return Target(self.task or self.kind, self.kind, self.gold,
                      n_options=len(self.options), horizon=self.horizon,
                      question=self.full_question)

    def to_json(self) -> dict[str, Any]:
        """The question in our shape (what `/v1/reason` accepts), e.g. for the browser view."""
        out: dict[str, Any] = {
            "series": self.series.tolist(),
            "edges": [[u, v] if lag is None else [u, v, lag] for u, v, lag in self.edges],
            "question": self.question}
        if self.options:
            out["options"] = list(self.options)
        if self.horizon:
            out["horizon"] = self.horizon
        for key, value in (("answer", self.gold), ("task", self.task),
                           ("node_names", self.node_names), ("id", self.id)):
            if value:
                out[key] = value
        if not self.with_graph:
            out["with_graph"] = False
        return out


def parse_question(req: dict[str, Any], limits: RequestLimits = LIMITS) -> Question:
    """A `Question` from a request in either shape, or BadRequest naming the field."""
    if "input" in req or "timeseries" in req:
        return _st_test(req, limits)
    unknown = sorted(set(req) - set(OURS) - set(SAMPLING))
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r} (fields: {', '.join(OURS)}; sampling: "
                         f"{', '.join(SAMPLING)}; or an ST-Test row: input, timeseries)")
    series = _series(req.get("series"), "series", limits)
    edges = _edges(req.get("edges", []), *series.shape)
    question = _text(req.get("question"), "question", limits.max_question_chars)
    options = req.get("options")
    if options is None and " Options: A. " in question:
        question, options = split_options(question)
    horizon = req.get("horizon")
    if options is not None and horizon is not None:
        raise BadRequest("options, horizon: give options (multiple choice) or a horizon "
                         "(a forecast), not both")
    q = Question(series, edges, question, task=_task(req.get("task")),
                 node_names=_names(req.get("node_names"), series.shape[0]),
                 with_graph=_bool(req.get("with_graph", True), "with_graph"),
                 id=_id(req.get("id")))
    if options is not None:
        q.options, q.kind = _options(options, limits), CHOICE
    elif horizon is not None:
        q.horizon, q.kind = _horizon(horizon, "horizon", limits), SEQUENCE
    if req.get("answer") is not None:
        q.gold = _gold(req["answer"], q, "answer")
    return q


def _st_test(req: dict[str, Any], limits: RequestLimits) -> Question:
    mixed = sorted(set(req) & (set(OURS) - {"with_graph", "id"}))
    if mixed:
        raise BadRequest(f"{mixed[0]}: an ST-Test row (input, timeseries, output, category) "
                         "or our fields (series, edges, question, ...), not both")
    text = _text(req.get("input"), "input", limits.max_input_chars)
    ts = req.get("timeseries")
    if PLACEHOLDER in text and ts is None:
        raise BadRequest("timeseries: required when input has <ts><ts/> placeholders")
    if ts is not None:
        _series(ts, "timeseries", limits)  # checked before parse_prompt reads it
    n_slots = text.count(PLACEHOLDER)
    if ts is not None and n_slots != len(ts):
        raise BadRequest(f"timeseries: {len(ts)} series for {n_slots} <ts><ts/> placeholders "
                         "in input")
    try:
        parsed = parse_prompt(text, ts)
    except (ValueError, TypeError, OverflowError) as e:
        raise BadRequest(f"input: {e}") from None
    series = _series(parsed.series.tolist(), "input (series)", limits)
    edges = _edges([[u, v, parsed.lags[(u, v)]] if (u, v) in parsed.lags else [u, v]
                    for u, v in parsed.edges or []], *series.shape)
    task = _task(req.get("category"))
    q = Question(series, edges, parsed.question, task=task,
                 with_graph=_bool(req.get("with_graph", True), "with_graph"),
                 id=_id(req.get("id") or req.get("sample_id")))
    if parsed.options:
        q.options, q.kind = _options(parsed.options, limits), CHOICE
    gold = req.get("output")
    if gold is not None and not isinstance(gold, str):
        raise BadRequest(f"output: the gold answer as a string, got {gold!r}")
    said = _HORIZON_RE.search(parsed.question)
    if task == "forecasting" or (not parsed.options and said):
        q.kind = SEQUENCE
        if said:
            q.horizon = _horizon(int(said.group(1)), "input (the forecast horizon)", limits)
        elif gold is not None:
            q.horizon = _horizon(len(_numbers(parse_gold(gold), "output")), "output", limits)
        else:
            raise BadRequest("input: a forecast question must say 'for the next N steps' "
                             "(or the row must carry its output)")
    if gold is not None:
        q.gold = _gold(parse_gold(gold), q, "output")
    return q


def from_sample(sample: Sample) -> Question:
    """A simulator `Sample` as the `Question` a client sending it would get, gold answer
    and node names included. The simulator's own output needs no checks: it is copied,
    in the normal form `parse_question` gives (a forecast's gold as a JSON list of floats)."""
    kind = CHOICE if sample.options else SEQUENCE if sample.kind == SEQUENCE else TEXT
    if kind == SEQUENCE:
        gold = json.dumps([float(x) for x in json.loads(sample.answer)])
    else:
        gold = sample.answer.strip().upper() if kind == CHOICE else sample.answer.strip()
    return Question(np.array(sample.series, dtype=float),
                    [(u, v, lag) for u, v, lag in sample.edges], sample.question.strip(),
                    options=[o.strip() for o in sample.options],
                    horizon=sample.horizon if kind == SEQUENCE else 0, kind=kind,
                    task=sample.task, gold=gold,
                    node_names=list(sample.meta.get("node_names") or []) or None)


# ---- field checks -------------------------------------------------------------------

def _series(value: Any, name: str, limits: RequestLimits) -> np.ndarray:
    if not isinstance(value, list) or not value:
        raise BadRequest(f"{name}: a non-empty list with one list of numbers per node")
    if len(value) > limits.max_nodes:
        raise BadRequest(f"{name}: {len(value)} nodes, more than the limit of "
                         f"{limits.max_nodes}")
    length = None
    for i, row in enumerate(value):
        if not isinstance(row, list) or not row:
            raise BadRequest(f"{name}[{i}]: a non-empty list of numbers")
        if len(row) > limits.max_steps:
            raise BadRequest(f"{name}[{i}]: {len(row)} steps, more than the limit of "
                             f"{limits.max_steps}")
        for t, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise BadRequest(f"{name}[{i}][{t}]: a number, got {v!r}")
            if isinstance(v, float) and not math.isfinite(v):
                raise BadRequest(f"{name}[{i}][{t}]: not a finite number ({v!r}); send "
                                 "finite values (fill gaps before sending)")
            if abs(v) > MAX_ABS:
                raise BadRequest(f"{name}[{i}][{t}]: larger than {MAX_ABS:.0e} in magnitude; "
                                 "rescale the series (change its unit)")
        if length is None:
            length = len(row)
        elif len(row) != length:
            raise BadRequest(f"{name}: every node needs the same number of steps; node 0 "
                             f"has {length}, node {i} has {len(row)}")
    return np.asarray(value, dtype=float)


def _edges(value: Any, n: int, steps: int) -> list[tuple[int, int, int | None]]:
    """Edges of an n-node graph whose series have `steps` steps: a lag is at most that (a
    disturbance that takes longer to cross a link never shows in the series)."""
    if not isinstance(value, list):
        raise BadRequest("edges: a list of [from, to], [from, to, lag] or "
                         "{from, to, lag} items")
    out: list[tuple[int, int, int | None]] = []
    seen: dict[tuple[int, int], int] = {}
    for k, e in enumerate(value):
        where = f"edges[{k}]"
        if isinstance(e, dict):
            extra = sorted(set(e) - {"from", "to", "lag"})
            if extra or "from" not in e or "to" not in e:
                raise BadRequest(f"{where}: an object with from, to and an optional lag")
            u, v, lag = e["from"], e["to"], e.get("lag")
        elif isinstance(e, list) and len(e) in (2, 3):
            u, v, lag = e[0], e[1], e[2] if len(e) == 3 else None
        else:
            raise BadRequest(f"{where}: [from, to], [from, to, lag] or {{from, to, lag}}, "
                             f"got {e!r}")
        for end, node in (("from", u), ("to", v)):
            if isinstance(node, bool) or not isinstance(node, int):
                raise BadRequest(f"{where}.{end}: a node index (integer), got {node!r}")
            if not 0 <= node < n:
                raise BadRequest(f"{where}.{end}: node {node} is not one of the {n} nodes "
                                 f"(0-{n - 1})")
        if u == v:
            raise BadRequest(f"{where}: an edge from node {u} to itself")
        if lag is not None and (isinstance(lag, bool) or not isinstance(lag, int)
                                or not 1 <= lag <= steps):
            raise BadRequest(f"{where}.lag: an integer number of steps from 1 to the series' "
                             f"length {steps}, got {lag!r}")
        if (u, v) in seen:
            raise BadRequest(f"{where}: the same edge {u}->{v} as edges[{seen[(u, v)]}]")
        seen[(u, v)] = k
        out.append((u, v, lag))
    return out


def _text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{name}: a non-empty string")
    if len(value) > limit:
        raise BadRequest(f"{name}: {len(value)} characters, more than the limit of {limit}")
    return value.strip()


def _task(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 64:
        raise BadRequest(f"task: a task name (string), got {value!r}")
    return value


def _id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int) or len(str(value)) > 200:
        raise BadRequest(f"id: a string or an integer of at most 200 characters, got "
                         f"{str(value)[:40]!r}")
    return str(value)


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{name}: true or false, got {value!r}")
    return value


def _names(value: Any, n: int) -> list[str] | None:
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == n
            and all(isinstance(x, str) and len(x) <= 200 for x in value)):
        raise BadRequest(f"node_names: a list of {n} strings, one per node")
    return value


def _options(value: Any, limits: RequestLimits) -> list[str]:
    if not (isinstance(value, list) and 2 <= len(value) <= limits.max_options):
        raise BadRequest(f"options: a list of 2 to {limits.max_options} option texts")
    for i, o in enumerate(value):
        if not isinstance(o, str) or not o.strip():
            raise BadRequest(f"options[{i}]: a non-empty string")
        if len(o) > limits.max_question_chars:
            raise BadRequest(f"options[{i}]: longer than {limits.max_question_chars} "
                             "characters")
    return [o.strip() for o in value]


def _horizon(value: Any, name: str, limits: RequestLimits) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not (
            1 <= value <= limits.max_horizon):
        raise BadRequest(f"{name}: an integer number of steps in [1, {limits.max_horizon}], "
                         f"got {value!r}")
    return value


def _numbers(text: str, name: str) -> list[float]:
    try:
        values = json.loads(text)
    except ValueError:
        values = None
    if not (isinstance(values, list) and values and all(
            isinstance(x, int | float) and not isinstance(x, bool) and abs(x) <= MAX_ABS
            and math.isfinite(x) for x in values)):
        raise BadRequest(f"{name}: a list of finite numbers, got {text!r}")
    return [float(x) for x in values]


def _gold(value: Any, q: Question, name: str) -> str:
    if q.kind == CHOICE:
        letter = str(value).strip().upper()
        if len(letter) != 1 or letter not in _LETTERS[:len(q.options)]:
            raise BadRequest(f"{name}: one of the option letters "
                             f"{_LETTERS[0]}-{_LETTERS[len(q.options) - 1]}, got {value!r}")
        return letter
    if q.kind == SEQUENCE:
        text = json.dumps(value) if isinstance(value, list) else str(value)
        values = _numbers(text, name)
        if len(values) != q.horizon:
            raise BadRequest(f"{name}: {len(values)} values for a horizon of {q.horizon}")
        return json.dumps(values)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{name}: a reference text")
    return value.strip()


# ---- reading the completion ---------------------------------------------------------

@dataclass(frozen=True)
class Reading:
    """What the model answered, read the way training scored it."""

    reasoning: str
    answer: str | list[float] | None
    valid: bool
    invalid_reason: str | None
    correct: bool | None = None  # choice with a gold answer
    mae: float | None = None  # forecast with a gold answer

    def to_json(self) -> dict[str, Any]:
        return {"reasoning": self.reasoning, "answer": self.answer, "valid": self.valid,
                "invalid_reason": self.invalid_reason, "correct": self.correct,
                "mae": self.mae}


def reasoning_of(text: str) -> str:
    """The `<think>` block's text (an unclosed one runs to the end), else what comes
    before the answer."""
    m = _THINK_RE.search(text)
    if m:
        return m.group(1).strip()
    return text.split("<answer>", 1)[0].strip()


def read(text: str, q: Question) -> Reading:
    """Reasoning, answer and validity of a completion (as `rewards.metrics` counts them)."""
    thinking = reasoning_of(text)
    if q.kind == CHOICE:
        ex = parse_choice(text, len(q.options))
        correct = None if q.gold is None else ex.ok and ex.value == q.gold
        return Reading(thinking, ex.value if ex.ok else _raw(text), ex.ok, ex.reason, correct)
    if q.kind == SEQUENCE:
        ex = parse_sequence(text, q.horizon)
        mae = None
        if ex.ok and q.gold is not None:
            mae = mean_abs_error(ex.value, json.loads(q.gold))  # type: ignore[arg-type]
        value = list(ex.value) if ex.ok else _raw(text)  # type: ignore[arg-type]
        return Reading(thinking, value, ex.ok, ex.reason, None, mae)
    ex = answer_text(text)
    return Reading(thinking, ex.value if ex.ok else None, ex.ok, ex.reason)  # type: ignore[arg-type]


def _raw(text: str) -> str | None:
    found = answer_text(text)
    return found.value if found.ok else None  # type: ignore[return-value]
