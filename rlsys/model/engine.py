"""Running a model on vLLM: the one place that prepares vLLM's process environment, and
the context length an engine runs a model directory with.

Every engine (the rollout actors, the judge, the Serve replicas, `strl eval`'s local
model, the benchmarks' baselines) calls `prepare_vllm` before importing vLLM, which reads
these variables at import time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def prepare_vllm(device: str, kv_cache_gib: float, in_process: bool = False) -> None:
    """Set vLLM's environment for an engine on `device` (cpu | cuda); a value the user set
    already is kept.

    - cpu: the KV cache is `kv_cache_gib` GiB of host memory (VLLM_CPU_KVCACHE_SPACE);
      on GPUs vLLM sizes it from `gpu_memory_utilization` instead.
    - `in_process`: the engine core runs in this process. With a core of its own, requests
      race its busy loop, batches form by timing, and the same seed samples other tokens
      (measured: 2 of 5 identical calls differed); in-process, a generation is a function
      of (weights, prompts, seed), which an exact resume needs. Throughput was no lower.
      The async Serve replicas keep vLLM's default (a core process of its own).
    """
    if device == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(int(kv_cache_gib)))
    if in_process:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def cpu_computes_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this machine's CPU computes bfloat16 natively (AVX512-BF16 or AMX). Without
    it PyTorch emulates bf16 matmuls: on an AVX2 CPU a bf16 forward and backward ran 25x
    slower than float32 (measured 2026-12-04, 7600x256 @ 256x1024, 2 threads: 3.6 s vs
    0.15 s). No /proc/cpuinfo (not Linux): False."""
    try:
        flags = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def local_device() -> str:
    """The device of an engine run in this process without Ray (`strl eval --checkpoint`,
    the benchmarks' baselines): cuda when this process sees a GPU."""
    import torch  # heavy: `strl` imports this module at start; torch only for an engine

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_checkpoint(path: str | Path) -> Path:
    """The model directory, or an error naming what is missing."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"checkpoint {p} is not a directory; give a model directory "
                                "such as runs/tiny/checkpoints/final")
    missing = [f for f in ("config.json", "tokenizer_config.json") if not (p / f).is_file()]
    if missing or not any(p.glob("*.safetensors")):
        what = ", ".join(missing + ([] if any(p.glob("*.safetensors")) else ["*.safetensors"]))
        raise FileNotFoundError(f"checkpoint {p} is not an HF model directory (missing {what})")
    return p


def model_context(model_dir: str | Path, limit: int | None) -> int:
    """The context the engine runs with: `limit`, else the model's own length."""
    if limit:
        return limit
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir} is not a model directory (no config.json)")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    return int(cfg.get("max_position_embeddings") or 2048)
