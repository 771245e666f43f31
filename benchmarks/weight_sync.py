"""Benchmark: weight-sync effective bandwidth against a raw broadcast, in the same run.

A sender and a receiver process join a fresh gloo group (as the learner and one engine
worker do). For a Qwen2-shaped state dict of at least 100 MB it times:
- `bucketed`: our protocol (`rlsys.weightsync`): pack into ~bucket_mb buffers, broadcast,
  unpack into named tensors on the receiver;
- `raw`: the baseline: one flat buffer of the same total size, one broadcast, into a
  receive buffer allocated once (pages already touched);
- `raw_fresh`: the same into a freshly allocated receive buffer every time;
- `per_tensor`: one broadcast per tensor (what a naive sync, e.g. OpenRLHF's, does).
It prints GB/s of each and the ratio bucketed / raw (target >= 0.8).

Run: `python benchmarks/weight_sync.py [--hidden 1024 --layers 8 --bucket-mb 64]`.
The tiny model's end-to-end sync time (into vLLM) is in every run's metrics (`time/sync`).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import torch

from rlsys.weightsync import connect, free_port, plan_for


def _state(hidden: int, layers: int, vocab: int) -> dict[str, torch.Tensor]:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 3,
                      num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                      num_key_value_heads=max(1, hidden // 256), tie_word_embeddings=True)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in Qwen2ForCausalLM(cfg).state_dict().items()}
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(s, generator=g).to(torch.bfloat16) for k, s in shapes.items()}


def _receiver(port: int, args: argparse.Namespace, q) -> None:
    state = _state(args.hidden, args.layers, args.vocab)
    plan = plan_for(state, args.bucket_mb)
    grp = connect("127.0.0.1", port, 1, 2, "gloo", 300.0)
    flat = torch.empty(plan.nbytes // 2, dtype=torch.bfloat16)
    for _ in range(args.repeat):
        for _ in grp.receive(plan):
            pass
        grp.broadcast(flat)
        grp.broadcast(torch.empty(plan.nbytes // 2, dtype=torch.bfloat16))
        for t in state.values():
            grp.broadcast(torch.empty_like(t))
    q.put("done")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--bucket-mb", type=float, default=64.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    state = _state(args.hidden, args.layers, args.vocab)
    plan = plan_for(state, args.bucket_mb)
    port = free_port("127.0.0.1")
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    peer = ctx.Process(target=_receiver, args=(port, args, q))
    peer.start()
    grp = connect("127.0.0.1", port, 0, 2, "gloo", 300.0)
    flat = torch.empty(plan.nbytes // 2, dtype=torch.bfloat16)
    times: dict[str, list[float]] = {"bucketed": [], "raw": [], "raw_fresh": [],
                                     "per_tensor": []}
    for _ in range(args.repeat):
        t = time.perf_counter()
        grp.send(plan, state)
        times["bucketed"].append(time.perf_counter() - t)
        t = time.perf_counter()
        grp.broadcast(flat)
        times["raw"].append(time.perf_counter() - t)
        t = time.perf_counter()
        grp.broadcast(flat)
        times["raw_fresh"].append(time.perf_counter() - t)
        t = time.perf_counter()
        for v in state.values():
            grp.broadcast(v.contiguous())
        times["per_tensor"].append(time.perf_counter() - t)
    q.get(timeout=300)
    peer.join(timeout=60)
    mb = plan.nbytes / 2**20
    print(f"state: {len(state)} tensors, {mb:.1f} MiB bf16 (tied lm_head sent explicitly), "
          f"{len(plan.buckets)} buckets of <= {args.bucket_mb:g} MiB; best of {args.repeat}")
    best = {k: min(v) for k, v in times.items()}
    for k, s in best.items():
        print(f"  {k:<10} {s * 1e3:8.1f} ms  {plan.nbytes / s / 1e9:6.2f} GB/s")
    print(f"ratio bucketed / raw broadcast: {best['raw'] / best['bucketed']:.2f} (target >= 0.8)")
    print(f"ratio bucketed / raw into fresh memory: {best['raw_fresh'] / best['bucketed']:.2f}")
    print(f"ratio per-tensor / raw broadcast: {best['raw'] / best['per_tensor']:.2f}")


if __name__ == "__main__":
    main()
