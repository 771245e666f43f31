"""The AI judge (ST-R1): an LLM behind an OpenAI-compatible HTTP API scores free-text answers.

:class:`JudgeClient` sends ``POST {base_url}/chat/completions`` with a rubric: each aspect
(default: route/path, timing, logic) is an integer 0-5; the score is ``mean / 5`` in [0, 1].
It is stdlib only (``http.client`` + a thread pool) and never raises for a failed call:
a failure is a :class:`JudgeResult` with ``score == 0.0`` and ``error`` set, and is counted
in :meth:`JudgeClient.stats`.

Error codes: ``timeout``, ``connection_refused``, ``connection_error``, ``http_<status>``,
``bad_response`` (body is not a chat completion), ``unparseable`` (no integer for every
aspect in the reply), ``out_of_range`` (an aspect outside 0-5). All are retried with
exponential back-off and jitter, up to ``max_retries`` times, except HTTP 4xx other than
429: a request the server rejects will be rejected again.

``timeout_s`` bounds each connect and each socket read (``http.client`` semantics), so an
attempt against a silent server ends after about ``timeout_s``; a server that drips bytes
slower than that still times out, one that drips faster is not cut off.

:class:`JudgeReward` is the registered ``judge`` reward for ``text`` targets. It pickles
without its client (the client, with its lock and semaphore, is rebuilt on first use).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rewards.extract import EMPTY_ANSWER, answer_text, strip_think
from rewards.registry import reward
from rewards.types import TEXT, Target

DEFAULT_ASPECTS: tuple[str, ...] = ("path", "timing", "logic")

ASPECT_RUBRIC: dict[str, str] = {
    "path": (
        "route/path correctness: are the right nodes and edges named, in the order the "
        "signal travelled? 0 = wrong or no route; 5 = exactly the reference route."
    ),
    "timing": (
        "timing correctness: are onsets, lags and durations right? 0 = no or wrong "
        "timing; 5 = every timing matches the reference (within one time step)."
    ),
    "logic": (
        "logical coherence: does the explanation follow from the data and hold together? "
        "0 = contradictory or irrelevant; 5 = coherent, every claim supported."
    ),
}

_NO_RETRY_4XX = "http_4"  # prefix of codes that are not worth retrying (429 excepted)
_JSON_OBJECT_RE = re.compile(r"\{[^{}]*\}")
_ASPECT_NAME_RE = re.compile(r"\w+")


@dataclass(frozen=True)
class JudgeConfig:
    """Where the judge is and how hard to try."""

    base_url: str
    """API root including the version, e.g. "http://127.0.0.1:8000/v1"."""
    model: str
    """Model name sent in the request."""
    api_key: str | None = field(default=None, repr=False)
    """Bearer token; when None it is read from the environment variable ``api_key_env``."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the key when ``api_key`` is None."""
    aspects: tuple[str, ...] = DEFAULT_ASPECTS
    """Rubric aspects, each scored 0-5; known ones have a built-in description."""
    timeout_s: float = 30.0
    """Bound on each connect and each socket read of one attempt."""
    max_retries: int = 2
    """Extra attempts after the first on retryable errors."""
    backoff_s: float = 0.5
    """First back-off; doubles per retry, times a jitter factor in [0.5, 1.5)."""
    max_concurrency: int = 8
    """Most requests in flight at once for this client, across all callers."""
    temperature: float = 0.0
    """Sampling temperature of the judge."""
    max_tokens: int = 256
    """Reply length limit."""
    structured: bool = False
    """Ask the server to constrain the reply to the rubric's JSON shape (OpenAI
    `response_format` json_schema; vLLM and strl's judge actor honour it)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "aspects", tuple(self.aspects))  # YAML gives a list
        if not self.aspects or not all(_ASPECT_NAME_RE.fullmatch(a) for a in self.aspects):
            raise ValueError(f"aspects must be non-empty identifiers, got {self.aspects!r}")
        if urllib.parse.urlsplit(self.base_url).scheme not in ("http", "https"):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if self.timeout_s <= 0 or self.backoff_s < 0:
            raise ValueError("timeout_s must be > 0 and backoff_s >= 0")
        if self.max_retries < 0 or self.max_concurrency < 1 or self.max_tokens < 1:
            raise ValueError("need max_retries >= 0, max_concurrency >= 1, max_tokens >= 1")


@dataclass(frozen=True)
class JudgeResult:
    """One judged answer: score in [0, 1] (0.0 on failure), aspect scores, error code."""

    score: float
    aspects: dict[str, int] | None
    error: str | None
    attempts: int
    latency_s: float


def build_messages(
    question: str, answer: str, reference: str, aspects: Sequence[str] = DEFAULT_ASPECTS
) -> list[dict[str, str]]:
    """The rubric as chat messages: system = how to grade, user = the three texts."""
    template = "{" + ", ".join(f'"{a}": <0-5>' for a in aspects) + "}"
    lines = [
        f"- {a}: {ASPECT_RUBRIC.get(a, f'{a}: 0 = entirely wrong; 5 = matches the reference.')}"
        for a in aspects
    ]
    system = (
        "You grade answers to questions about networks of time series (sensors, nodes, "
        "edges with delays). Compare the candidate answer with the reference answer and "
        "give each aspect an integer score from 0 to 5:\n"
        + "\n".join(lines)
        + f"\nReply with only a JSON object of the form {template}."
    )
    user = (
        f"Question:\n{question}\n\nReference answer:\n{reference}\n\n"
        f"Candidate answer:\n{answer}\n\nScore the candidate. Reply with {template}."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def rubric_schema(aspects: Sequence[str] = DEFAULT_ASPECTS) -> dict[str, Any]:
    """JSON schema of a reply: every aspect one of the integers 0-5, nothing else (an enum:
    grammar engines enforce it exactly, where some ignore integer bounds).

    >>> rubric_schema(("path",))["properties"]["path"]
    {'type': 'integer', 'enum': [0, 1, 2, 3, 4, 5]}
    """
    return {"type": "object",
            "properties": {a: {"type": "integer", "enum": list(range(6))} for a in aspects},
            "required": list(aspects), "additionalProperties": False}


def _as_score(v: Any) -> int | str:
    """An aspect value as an int 0-5, or the error code saying why it is not one."""
    if isinstance(v, bool):  # JSON true is an int in Python, not a score
        return "unparseable"
    if isinstance(v, str):
        v = v.strip()
        try:
            v = float(v)
        except ValueError:
            return "unparseable"
    if isinstance(v, int | float) and float(v).is_integer():
        return int(v) if 0 <= v <= 5 else "out_of_range"
    return "unparseable"


def parse_judge_reply(text: str, aspects: Sequence[str] = DEFAULT_ASPECTS) -> dict[str, int] | str:
    """Aspect scores from the judge's reply, or an error code ("unparseable", "out_of_range").

    Accepts the last JSON object holding every aspect, else lines like ``path: 4``.
    Thinking blocks are dropped first: drafts in them are not the verdict.

    >>> parse_judge_reply('Sure. {"path": 4, "timing": 3, "logic": 5}')
    {'path': 4, 'timing': 3, 'logic': 5}
    >>> parse_judge_reply("**Path**: 4\\ntiming = 3\\n- logic: 5")
    {'path': 4, 'timing': 3, 'logic': 5}
    >>> parse_judge_reply('{"path": 7, "timing": 3, "logic": 5}')
    'out_of_range'
    """
    text = strip_think(text)
    raw: dict[str, Any] | None = None
    for chunk in reversed(_JSON_OBJECT_RE.findall(text)):
        try:
            obj = json.loads(chunk)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            lowered = {str(k).strip().lower(): v for k, v in obj.items()}
            if all(a in lowered for a in aspects):
                raw = {a: lowered[a] for a in aspects}
                break
    if raw is None:
        raw = {}
        for a in aspects:
            pattern = rf"^[^\w\n]*{re.escape(a)}[^\w\n:=]*[:=]\s*([-+]?\d+(?:\.\d+)?)"
            found = re.findall(pattern, text, re.IGNORECASE | re.MULTILINE)
            if not found:
                return "unparseable"
            raw[a] = found[-1]
    scores: dict[str, int] = {}
    for a, v in raw.items():
        s = _as_score(v)
        if isinstance(s, str):
            return s
        scores[a] = s
    return scores


class JudgeClient:
    """Thread-safe judge client; holds no connection at rest (one per attempt)."""

    def __init__(self, cfg: JudgeConfig) -> None:
        self.cfg = cfg
        parts = urllib.parse.urlsplit(cfg.base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port
        self._path = parts.path.rstrip("/") + "/chat/completions"
        self._slots = threading.BoundedSemaphore(cfg.max_concurrency)
        self._lock = threading.Lock()
        self._items = self._requests = self._retries = self._failures = 0
        self._latency_sum = 0.0
        self._by_error: Counter[str] = Counter()

    def score_batch(
        self, questions: Sequence[str], answers: Sequence[str], references: Sequence[str]
    ) -> list[JudgeResult]:
        """Judge each (question, answer, reference) triple, at most max_concurrency at once."""
        if not len(questions) == len(answers) == len(references):
            raise ValueError("questions, answers and references must have the same length")
        n = len(answers)
        if n == 0:
            return []
        if n == 1:
            return [self.score_one(questions[0], answers[0], references[0])]
        with ThreadPoolExecutor(max_workers=min(n, self.cfg.max_concurrency)) as pool:
            return list(pool.map(self.score_one, questions, answers, references))

    def score_one(self, question: str, answer: str, reference: str) -> JudgeResult:
        """Judge one answer, retrying as the module docstring says; never raises on I/O."""
        cfg = self.cfg
        request: dict[str, Any] = {
            "model": cfg.model,
            "messages": build_messages(question, answer, reference, cfg.aspects),
            "temperature": cfg.temperature,
            "max_tokens": cfg.max_tokens,
        }
        if cfg.structured:
            request["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "rubric", "schema": rubric_schema(cfg.aspects)}}
        body = json.dumps(request).encode()
        t0 = time.perf_counter()
        outcome: dict[str, int] | str = "unparseable"
        attempts = 0
        for attempt in range(cfg.max_retries + 1):
            if attempt:
                time.sleep(cfg.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()))
            attempts += 1
            with self._slots:
                outcome = self._attempt(body)
            if not isinstance(outcome, str) or not _retryable(outcome):
                break
        latency = time.perf_counter() - t0
        error = outcome if isinstance(outcome, str) else None
        with self._lock:
            self._items += 1
            self._requests += attempts
            self._retries += attempts - 1
            self._latency_sum += latency
            if error is not None:
                self._failures += 1
                self._by_error[error] += 1
        if error is not None:
            return JudgeResult(0.0, None, error, attempts, latency)
        scores: dict[str, int] = outcome  # type: ignore[assignment]
        return JudgeResult(
            sum(scores.values()) / (5 * len(scores)), scores, None, attempts, latency
        )

    def stats(self) -> dict[str, Any]:
        """Counters since construction: items judged, HTTP requests, retries, failures."""
        with self._lock:
            return {
                "items": self._items,
                "requests": self._requests,
                "retries": self._retries,
                "failures": self._failures,
                "by_error": dict(self._by_error),
                "mean_latency_s": self._latency_sum / self._items if self._items else 0.0,
            }

    def _attempt(self, body: bytes) -> dict[str, int] | str:
        cfg = self.cfg
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = cfg.api_key or os.environ.get(cfg.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        conn_cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = conn_cls(self._host, self._port, timeout=cfg.timeout_s)
        try:
            conn.request("POST", self._path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
        except TimeoutError:
            return "timeout"
        except ConnectionRefusedError:
            return "connection_refused"
        except (OSError, http.client.HTTPException):
            return "connection_error"
        finally:
            conn.close()
        if status != 200:
            return f"http_{status}"
        try:
            content = json.loads(data)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return "bad_response"
        if not isinstance(content, str):
            return "bad_response"
        return parse_judge_reply(content, cfg.aspects)


def _retryable(error: str) -> bool:
    return not (error.startswith(_NO_RETRY_4XX) and error != "http_429")


def candidate_text(completion: str) -> str:
    """What the judge reads: the answer block, or the completion minus thinking if untagged."""
    ex = answer_text(completion)
    if ex.reason is None:
        return ex.value  # type: ignore[return-value]
    if ex.reason == EMPTY_ANSWER:
        return ""
    return strip_think(completion)


@reward("judge", kinds=(TEXT,))
class JudgeReward:
    """The AI-judge reward: params are :class:`JudgeConfig`'s fields; 0.0 for empty answers."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        aspects: Sequence[str] = DEFAULT_ASPECTS,
        timeout_s: float = 30.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        max_concurrency: int = 8,
        temperature: float = 0.0,
        max_tokens: int = 256,
        structured: bool = False,
    ) -> None:
        self.cfg = JudgeConfig(
            base_url=base_url,
            model=model,
            api_key=api_key,
            api_key_env=api_key_env,
            aspects=tuple(aspects),
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_concurrency=max_concurrency,
            temperature=temperature,
            max_tokens=max_tokens,
            structured=structured,
        )
        self._client: JudgeClient | None = None
        self._init_lock = threading.Lock()

    @property
    def client(self) -> JudgeClient:
        """The HTTP client, built on first use (so the reward pickles into Ray workers)."""
        with self._init_lock:
            if self._client is None:
                self._client = JudgeClient(self.cfg)
            return self._client

    def __getstate__(self) -> dict[str, Any]:
        return {"cfg": self.cfg}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.cfg = state["cfg"]
        self._client = None
        self._init_lock = threading.Lock()

    def __call__(self, completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
        answers = [candidate_text(c) for c in completions]
        todo = [i for i, a in enumerate(answers) if a]
        scores = [0.0] * len(answers)
        if todo:
            results = self.client.score_batch(
                [targets[i].question for i in todo],
                [answers[i] for i in todo],
                [targets[i].reference or targets[i].answer for i in todo],
            )
            for i, r in zip(todo, results, strict=True):
                scores[i] = r.score
        return scores

    def stats(self) -> dict[str, Any]:
        """The client's counters (empty counts before the first call)."""
        return self.client.stats()
