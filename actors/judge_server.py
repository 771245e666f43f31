"""Judge server: a vLLM engine behind a small OpenAI-compatible HTTP endpoint, run as a Ray
actor next to the rollout engines, so the `judge` reward reaches it exactly as it reaches
any external server (`POST {base_url}/chat/completions`).

`JudgeServerWorker` is a plain class (start it in a test or a subprocess); `JudgeServerActor` is its
Ray wrapper. Requests are queued and a dispatcher thread sends them to vLLM in batches (one
`LLM.chat` call per batch of equal sampling settings), so concurrent judge calls share the
engine. `response_format` of type `json_schema` (OpenAI's structured outputs) constrains
the reply to the schema: even a small judge then always answers in the rubric's shape.
Bad requests get a 400 with a message; nothing a client sends reaches a shell or `eval`.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import ray

from rlsys.config import Config
from rlsys.model.engine import prepare_vllm
from rlsys.openai_api import BadRequest, completion_body, load_json, parse_chat
from rlsys.sampling import Sampling

MAX_BATCH = 64
MAX_BODY = 1 << 20  # bytes of one request


@dataclass(frozen=True)
class JudgeServerSettings:
    """What the judge server is built from: the run's config (`judge_server`, the policy's
    dtype and seed, the engines' KV cache) and what the run decided (the model directory,
    the device, where to listen). The engine's own limits are not configurable."""

    model_path: str
    device: str
    host: str | None  # address to serve on; None: this Ray node's IP
    served_name: str
    dtype: str
    seed: int
    kv_cache_gib: int
    max_model_len: int = 2048
    gpu_memory_utilization: float = 0.3
    max_tokens_cap: int = 512

    @classmethod
    def from_config(cls, cfg: Config, model_path: str, device: str, dtype: str,
                    host: str | None = None, **engine: Any) -> JudgeServerSettings:
        """`model_path`: the policy's model (judge_server.model_path, when set, wins);
        `engine`: the engine's own limits (max_model_len, ...) where a test needs others."""
        j = cfg.judge_server
        return cls(j.model_path or model_path, device, host, j.model, dtype,
                   cfg.trainer.seed, cfg.rollout.kv_cache_gib, **engine)


@dataclass
class _Job:
    messages: list[dict[str, str]]
    sampling: Sampling
    result: Future


class JudgeServerWorker:
    def __init__(self, settings: JudgeServerSettings) -> None:
        self.s = settings
        self.llm = None
        self.server: ThreadingHTTPServer | None = None
        self.jobs: queue.Queue[_Job] = queue.Queue()
        self.served = 0

    def start(self) -> dict[str, Any]:
        """Build the engine and start serving; returns the base URL and start-up time."""
        t0 = time.perf_counter()
        prepare_vllm(self.s.device, self.s.kv_cache_gib)
        from vllm import LLM  # reads the environment prepare_vllm set: imported after it

        # Structured replies without free whitespace: a weak judge otherwise fills
        # max_tokens with spaces inside the braces (seen with the tiny model).
        self.llm = LLM(model=self.s.model_path, dtype=self.s.dtype, seed=self.s.seed,
                       max_model_len=self.s.max_model_len, enforce_eager=True,
                       gpu_memory_utilization=self.s.gpu_memory_utilization,
                       structured_outputs_config={"backend": "xgrammar",
                                                  "disable_any_whitespace": True})
        threading.Thread(target=self._dispatch, name="judge-dispatch", daemon=True).start()
        host = self.s.host or (ray.util.get_node_ip_address() if ray.is_initialized()
                               else "127.0.0.1")
        self.server = ThreadingHTTPServer((host, 0), _handler(self))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="judge-http", daemon=True).start()
        return {"base_url": f"http://{host}:{self.server.server_port}/v1",
                "start_s": time.perf_counter() - t0}

    def stats(self) -> dict[str, int]:
        return {"served": self.served}

    # ---- requests -----------------------------------------------------------------
    def parse(self, body: bytes) -> _Job:
        """A chat-completion request as a job, or BadRequest naming the field."""
        req = parse_chat(load_json(body, MAX_BODY), self.s.max_tokens_cap)
        if req.stream or req.stop or req.top_p != 1.0:
            raise BadRequest("stream, stop, top_p: not served by the judge (whole replies, "
                             "temperature and max_tokens only)")
        return _Job(req.messages, Sampling(n=1, temperature=req.temperature, top_p=1.0,
                                           max_tokens=req.max_tokens, schema=req.schema),
                    Future())

    def _dispatch(self) -> None:
        """Send queued jobs to vLLM in batches of equal sampling settings."""
        while True:
            batch = [self.jobs.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self.jobs.get_nowait())
                except queue.Empty:
                    break
            groups: dict[Sampling, list[_Job]] = {}
            for j in batch:
                groups.setdefault(j.sampling, []).append(j)
            for sampling, jobs in groups.items():
                try:
                    outs = self.llm.chat([j.messages for j in jobs],
                                         sampling.to_vllm(per_request_seed=False),
                                         use_tqdm=False)
                except Exception as e:  # engine boundary: fail these requests, keep serving
                    for j in jobs:
                        j.result.set_exception(e)
                    continue
                for j, o in zip(jobs, outs, strict=True):
                    self.served += 1
                    j.result.set_result((o.outputs[0].text, len(o.prompt_token_ids or []),
                                         len(o.outputs[0].token_ids)))


def _handler(worker: JudgeServerWorker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: Any) -> None:  # no per-request stderr lines
            return

        def _reply(self, status: int, obj: dict[str, Any]) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.rstrip("/") in ("/healthz", "/v1/models"):
                self._reply(200, {"object": "list", "data": [
                    {"id": worker.s.served_name, "object": "model"}]})
            else:
                self._reply(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:  # noqa: N802
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._reply(404, {"error": {"message": f"no route {self.path}"}})
                return
            size = int(self.headers.get("Content-Length") or 0)
            if not 0 < size <= MAX_BODY:
                self._reply(400, {"error": {"message": f"body of 1 to {MAX_BODY} bytes needed"}})
                return
            try:
                job = worker.parse(self.rfile.read(size))
            except BadRequest as e:
                self._reply(e.status, {"error": {"message": str(e)}})
                return
            worker.jobs.put(job)
            try:
                text, n_prompt, n_out = job.result.result(timeout=300)
            except Exception as e:  # the engine failed this batch: a 500 the client retries
                self._reply(500, {"error": {"message": f"{type(e).__name__}: {e}"}})
                return
            self._reply(200, completion_body(f"judge-{id(job)}", worker.s.served_name, text,
                                             "stop", n_prompt, n_out))

    return Handler


JudgeServerActor = ray.remote(JudgeServerWorker)
