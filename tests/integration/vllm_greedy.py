"""Greedy generation with vLLM in a process of its own, for the integration tests and for
measuring throughput. `LLM(...)` spawns processes, so it must run under `__main__`.

    python tests/integration/vllm_greedy.py MODEL_DIR REQUEST.json RESULT.json

REQUEST.json: {"conversations": [[{"role": ..., "content": ...}, ...], ...],
               "max_tokens": 16, "dtype": "float32", "max_model_len": 4096,
               "prompt_logprobs": false, "ignore_eos": false}
RESULT.json:  {"start_s": engine start seconds, "generate_s": generation seconds,
               "outputs": [{"prompt_token_ids": [...], "token_ids": [...],
                            "logprobs": [...], "prompt_logprobs": [...] or null}, ...]}
(`prompt_logprobs`: of prompt tokens 1.., when the request sets "prompt_logprobs": true)

Set VLLM_CPU_KVCACHE_SPACE (GiB) before starting it on CPU.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(model_dir: str, request_path: str, result_path: str) -> None:
    from vllm import LLM, SamplingParams

    req = json.loads(Path(request_path).read_text())
    t0 = time.perf_counter()
    llm = LLM(model=model_dir, dtype=req.get("dtype", "float32"), seed=0,
              max_model_len=req.get("max_model_len", 4096),
              gpu_memory_utilization=req.get("gpu_memory_utilization", 0.3),
              enforce_eager=True)
    t1 = time.perf_counter()
    # logprobs=0: only the chosen token's log-probability, for every generated token and
    # (prompt_logprobs=0) every prompt token after the first.
    params = SamplingParams(temperature=0.0, max_tokens=req["max_tokens"], logprobs=0,
                            prompt_logprobs=0 if req.get("prompt_logprobs") else None,
                            ignore_eos=req.get("ignore_eos", False))
    outs = llm.chat(req["conversations"], params, add_generation_prompt=True, use_tqdm=False)
    t2 = time.perf_counter()
    Path(result_path).write_text(json.dumps({
        "start_s": t1 - t0, "generate_s": t2 - t1,
        "outputs": [{"prompt_token_ids": list(o.prompt_token_ids),
                     "token_ids": list(o.outputs[0].token_ids),
                     "logprobs": _chosen(o.outputs[0].token_ids, o.outputs[0].logprobs),
                     "prompt_logprobs": _chosen(o.prompt_token_ids[1:],
                                                (o.prompt_logprobs or [None])[1:])}
                    for o in outs],
    }))


def _chosen(ids, logprobs) -> list[float] | None:
    """The log-probability of each token in `ids` (vLLM returns one dict per position)."""
    if not logprobs or logprobs[0] is None:
        return None
    return [lp[t].logprob for t, lp in zip(ids, logprobs, strict=True)]


if __name__ == "__main__":
    main(*sys.argv[1:4])
