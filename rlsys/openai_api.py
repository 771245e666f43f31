"""The OpenAI chat-completions wire format, shared by the judge server and the Serve app.

`parse_chat` checks a request body field by field and returns a `ChatRequest`, or raises
`BadRequest` naming the field and what it must be; `completion_body` and `chunk_body`
write the replies (a whole completion, or one server-sent-events chunk of a stream).
Nothing in a request is evaluated or executed: it is JSON, read as data.

A message's content is a string, or a list of parts (OpenAI's form):

    {"type": "text", "text": "Node 0 time series with length of 48: "}
    {"type": "timeseries", "timeseries": [20.1, 20.4, ...]}

A `timeseries` part (only where the server reads series: `series_limits`) becomes the
ST-Test placeholder `<ts><ts/>` in the message's text, its numbers `ChatRequest.series`,
in order; the server then writes them inline or hands them to its encoder. Raw embeddings
(`prompt_embeds`, an `input_embeds` part) are refused: a client's tensors would go to the
engine unchecked, and the encoder is the one way series reach the model.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from envs.prompt import PLACEHOLDER

ROLES = ("system", "user", "assistant")
NOT_SERVED = ("logprobs", "top_logprobs", "tools", "tool_choice", "functions", "function_call",
              "logit_bias")
"""OpenAI fields that would change what a reply holds and that these servers do not honour:
refused when set (not silently ignored, which would hand back a reply the client did not
ask for)."""


class BadRequest(ValueError):
    """A request the server refuses, with the HTTP status and the reason (naming the field)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, str]]
    temperature: float
    top_p: float
    max_tokens: int
    schema: str | None = None  # a JSON schema (response_format json_schema), as JSON text
    stream: bool = False
    stop: tuple[str, ...] = ()
    model: str | None = None
    series: tuple[tuple[float, ...], ...] = ()
    """The `timeseries` parts, in order; each is a `<ts><ts/>` in `messages`."""


RAW_EMBEDDINGS = ("prompt_embeds", "input_embeds", "embeds")
"""Request fields and part types that would carry raw embedding rows: always refused."""


def load_json(body: bytes, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object, or BadRequest (413 when it is too large)."""
    if len(body) > max_bytes:
        raise BadRequest(f"body: {len(body)} bytes, more than the limit of {max_bytes}", 413)
    try:
        req = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"body: not JSON ({e})") from None
    except RecursionError:
        raise BadRequest("body: JSON nested too deeply") from None
    if not isinstance(req, dict):
        raise BadRequest("body: must be a JSON object")
    return req


def number(req: dict[str, Any], key: str, default: float, lo: float, hi: float,
           lo_open: bool = False) -> float:
    """A finite number field within [lo, hi] ((lo, hi] with lo_open)."""
    v = req.get(key, default)
    if v is None:
        v = default
    ok = (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
          and (v > lo if lo_open else v >= lo) and v <= hi)
    if not ok:
        raise BadRequest(f"{key}: a number in {'(' if lo_open else '['}{lo:g}, {hi:g}], "
                         f"got {v!r}")
    return float(v)


def integer(req: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    v = req.get(key, default)
    if v is None:
        v = default
    if not (isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi):
        raise BadRequest(f"{key}: an integer in [{lo}, {hi}], got {v!r}")
    return v


def parse_chat(req: dict[str, Any], max_tokens_cap: int, default_max_tokens: int = 256,
               default_temperature: float = 0.0,
               series_limits: tuple[int, int] | None = None) -> ChatRequest:
    """A chat-completion request, checked field by field. `series_limits` = (max series,
    max steps) where the server reads `timeseries` content parts; None: text only."""
    for key in RAW_EMBEDDINGS:
        if key in req:
            raise BadRequest(f"{key}: raw embeddings are not accepted; send each series as "
                             'a content part {"type": "timeseries", "timeseries": [numbers]}')
    for key in NOT_SERVED:
        if req.get(key) not in (None, False, [], {}):
            raise BadRequest(f"{key}: not served here (replies carry text only: no logprobs, "
                             "no tool calls, no logit bias); leave it out")
    msgs = req.get("messages")
    if not (isinstance(msgs, list) and msgs and all(
            isinstance(m, dict) and m.get("role") in ROLES
            and isinstance(m.get("content"), str | list) for m in msgs)):
        raise BadRequest("messages: a non-empty list of {role: system|user|assistant, "
                         "content: string or list of parts}")
    series: list[tuple[float, ...]] = []
    texts = [_content(m["content"], f"messages[{i}].content", series, series_limits)
             for i, m in enumerate(msgs)]
    n = req.get("n", 1)
    if n not in (1, None):
        raise BadRequest(f"n: only 1 completion per request is served, got {n!r}")
    key = "max_completion_tokens" if "max_completion_tokens" in req else "max_tokens"
    max_tokens = integer(req, key, min(default_max_tokens, max_tokens_cap), 1, max_tokens_cap)
    schema = None
    fmt = req.get("response_format")
    if fmt is not None:
        if not (isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "text")):
            raise BadRequest("response_format: {type: json_schema, json_schema: {schema}} "
                             "or {type: text}")
        if fmt["type"] == "json_schema":
            spec = fmt.get("json_schema")
            if not (isinstance(spec, dict) and isinstance(spec.get("schema"), dict)):
                raise BadRequest("response_format.json_schema.schema: a JSON schema object")
            schema = json.dumps(spec["schema"], sort_keys=True)
    stop = req.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and not (isinstance(stop, list) and len(stop) <= 4 and all(
            isinstance(s, str) and s for s in stop)):
        raise BadRequest("stop: a string or a list of at most 4 non-empty strings")
    stream = req.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest(f"stream: true or false, got {stream!r}")
    model = req.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest(f"model: a string, got {model!r}")
    return ChatRequest(
        messages=[{"role": m["role"], "content": t} for m, t in zip(msgs, texts, strict=True)],
        temperature=number(req, "temperature", default_temperature, 0.0, 2.0),
        top_p=number(req, "top_p", 1.0, 0.0, 1.0, lo_open=True),
        max_tokens=max_tokens, schema=schema, stream=stream, stop=tuple(stop or ()),
        model=model, series=tuple(series))


def _content(content: str | list[Any], where: str, series: list[tuple[float, ...]],
             limits: tuple[int, int] | None) -> str:
    """One message's text; its `timeseries` parts appended to `series`, each written as
    the placeholder."""
    if isinstance(content, str):
        return content
    kinds = "text" if limits is None else "text or timeseries"
    text = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in RAW_EMBEDDINGS:
            raise BadRequest(f"{at}: raw embeddings are not accepted; send each series as "
                             '{"type": "timeseries", "timeseries": [numbers]}')
        if kind == "text" and isinstance(part.get("text"), str):
            text.append(part["text"])
        elif kind == "timeseries" and limits is not None:
            text.append(PLACEHOLDER)
            series.append(_series(part.get("timeseries"), f"{at}.timeseries", limits[1]))
            if len(series) > limits[0]:
                raise BadRequest(f"{at}: more than {limits[0]} series in one request")
        elif kind == "timeseries":
            raise BadRequest(f"{at}: this server reads text only; timeseries parts go to "
                             "strl serve")
        else:
            raise BadRequest(f"{at}: a part {{type: {kinds}, ...}} ({{type: text, text: "
                             f"string}}), got {_short(part)}")
    return "".join(text)


def _series(v: Any, where: str, max_steps: int) -> tuple[float, ...]:
    if not (isinstance(v, list) and 1 <= len(v) <= max_steps and all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
            for x in v)):
        raise BadRequest(f"{where}: a list of 1 to {max_steps} finite numbers, got "
                         f"{_short(v)}")
    return tuple(float(x) for x in v)


def _short(v: Any) -> str:
    s = json.dumps(v) if not isinstance(v, float) or math.isfinite(v) else repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def completion_body(rid: str, model: str, text: str, finish_reason: str, n_prompt: int,
                    n_out: int) -> dict[str, Any]:
    """A whole `chat.completion` reply."""
    return {"id": rid, "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": finish_reason,
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_out,
                      "total_tokens": n_prompt + n_out}}


def chunk_body(rid: str, model: str, delta: dict[str, str],
               finish_reason: str | None = None) -> str:
    """One `chat.completion.chunk` as a server-sent event line."""
    obj = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()),
           "model": model,
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
    return f"data: {json.dumps(obj)}\n\n"


def error_body(message: str, status: int) -> dict[str, Any]:
    """OpenAI's error shape."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "code": status}}
