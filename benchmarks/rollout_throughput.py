"""Benchmark: rollout tokens/s through the actors against vLLM's own offline throughput.

Same model, same prompts, same sampling, measured in the same run, batches interleaved:
- `offline`: plain `vllm.LLM.generate` in its own process (vLLM's offline throughput),
  with the same engine arguments and the same thread settings as a rollout actor gets;
- `actors`: the training path, `Trainer.generate`: prompts split over the rollout actors
  of the config's topology (placement groups, Ray calls), completions with logprobs turned
  into `Completion`s and regrouped per prompt in the driver.

It prints both in generated tokens per second and the plumbing cost,
1 - actors / offline (target < 15%).

Run: `python benchmarks/rollout_throughput.py [--config configs/tiny_cpu.yaml]
[--batches 6] [key=value ...]` (the model is built if missing, as `strl train` does).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
from pathlib import Path


def _offline(conn, settings, env: dict[str, str]) -> None:
    """Child process: one plain vLLM engine; answers (prompts, sampling) with (tokens, s)."""
    os.environ.update(env)
    from rlsys.model.engine import prepare_vllm

    r = settings.rollout
    prepare_vllm(settings.device, r.kv_cache_gib)
    from vllm import LLM, TokensPrompt

    llm = LLM(model=settings.model_path, dtype=settings.dtype, seed=settings.seed,
              max_model_len=r.context, tensor_parallel_size=r.tensor_parallel,
              enforce_eager=True, gpu_memory_utilization=r.gpu_memory_utilization)
    conn.send("ready")
    while (msg := conn.recv()) is not None:
        prompts, s = msg
        params = s.to_vllm(per_request_seed=False, logprobs=True)
        t = time.perf_counter()
        outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params,
                            use_tqdm=False)
        sec = time.perf_counter() - t
        conn.send((sum(len(c.token_ids) for o in outs for c in o.outputs), sec))


def _actor_env(num_cpus: float) -> dict[str, str]:
    """The thread settings Ray gives an actor with this CPU share."""
    import ray

    @ray.remote(num_cpus=num_cpus)
    def probe() -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k.endswith("_NUM_THREADS")}

    return ray.get(probe.remote())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/tiny_cpu.yaml")
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. rollout.n=8")
    args = ap.parse_args()

    import ray
    from transformers import AutoTokenizer

    from actors.rollout import EngineSettings
    from rlsys.config import load_config
    from rlsys.model.build import ensure_model
    from rlsys.train.cluster import build, cluster_gpus
    from rlsys.train.data import PromptSource
    from rlsys.train.topology import plan_topology
    from rlsys.train.trainer import Trainer

    cfg = load_config(args.config, args.overrides)
    model_path = str(ensure_model(cfg.model.path, cfg.model.preset or "tiny", cfg.model.seed)
                     if cfg.model.preset else Path(cfg.model.path))
    tok = AutoTokenizer.from_pretrained(model_path)
    source = PromptSource(cfg, tok)
    r = cfg.rollout
    batches = [source.next(r.prompts_per_step) for _ in range(args.batches + 1)]  # +1 warm-up

    ray.init(num_cpus=cfg.cluster.num_cpus, include_dashboard=False, log_to_driver=False)
    proc = None
    try:
        topo = plan_topology(cfg, cuda_available=cluster_gpus())
        engine_cpus = next(a.cpus for a in topo.actors if a.role == "rollout")
        # the same thread settings, and the same in-process engine core as the actors
        env = {**_actor_env(engine_cpus), "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        es = EngineSettings.from_config(cfg, model_path, topo.device, topo.dtype)
        # not a daemon: vLLM starts its own engine processes from it
        proc = ctx.Process(target=_offline, args=(child, es, env))
        proc.start()
        handles = build(cfg, topo, model_path)
        if not parent.poll(600) or parent.recv() != "ready":
            raise RuntimeError("the offline vLLM engine did not start (see its output above)")
        trainer = Trainer(cfg, handles, tok, source)
        sampling = r.sampling(trainer.stop_ids)
        rates: dict[str, list[float]] = {"offline": [], "actors": []}
        for i, batch in enumerate(batches):
            parent.send(([p.ids for p in batch], sampling))
            tokens, sec = parent.recv()
            t = time.perf_counter()
            groups = trainer.generate([p.ids for p in batch], sampling, seed=i)
            a_sec = time.perf_counter() - t
            a_tokens = sum(len(c.token_ids) for g in groups for c in g)
            if i == 0:
                continue  # warm-up
            rates["offline"].append(tokens / sec)
            rates["actors"].append(a_tokens / a_sec)
            print(f"batch {i}: offline {tokens} tok in {sec:.2f}s ({tokens / sec:.0f} tok/s); "
                  f"actors {a_tokens} tok in {a_sec:.2f}s ({a_tokens / a_sec:.0f} tok/s)",
                  flush=True)
    finally:
        if proc is not None and proc.is_alive():
            parent.send(None)
            proc.join(timeout=60)
            proc.kill()
        ray.shutdown()
    off, act = statistics.median(rates["offline"]), statistics.median(rates["actors"])
    n_engines = sum(a.role == "rollout" for a in topo.actors)
    print(f"model {model_path}; {len(topo.actors)} actors, {n_engines} engine(s); "
          f"batch {r.prompts_per_step} prompts x n={r.n}, max_tokens {r.max_tokens}; "
          f"thread env of an engine actor: {env}")
    print(f"median over {len(rates['actors'])} batches: offline vLLM {off:.0f} tok/s, "
          f"through the actors {act:.0f} tok/s")
    print(f"ratio actors / offline: {act / off:.2f}; plumbing cost {100 * (1 - act / off):.1f}% "
          f"(target < 15%)")


if __name__ == "__main__":
    main()
