"""Benchmark: weight-sync effective bandwidth against a raw broadcast, in the same run.

A sender and a receiver process join a fresh gloo group (as the learner and one engine
worker do). For a Qwen2-shaped state dict of at least 100 MB it times:
- `flat`: our protocol (`rlsys.weightsync`) on the learner's real layout: under ZeRO-1/2
  the parameters are views into DeepSpeed's flat groups, under ZeRO-3 the learner gathers
  into one flat copy (`flat_copy`), so buckets are views of that memory, unpacked into
  named tensors on the receiver;
- `scattered`: the same protocol on separately allocated tensors (a plain module): small
  tensors packed into ~bucket_mb buffers, large ones sent alone;
- `raw`: the baseline: one flat buffer of the same total size (real data), one broadcast,
  into a receive buffer allocated once (pages already touched);
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

from rlsys.weightsync import connect, flat_copy, free_port, plan_for


def _state(hidden: int, layers: int, vocab: int) -> dict[str, torch.Tensor]:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 3,
                      num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                      num_key_value_heads=max(1, hidden // 256), tie_word_embeddings=True)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in Qwen2ForCausalLM(cfg).state_dict().items()}
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(s, generator=g).to(torch.bfloat16) for k, s in shapes.items()}


def _groups(ports: tuple[int, int], rank: int) -> tuple:
    """One sync group per layout: as in a run, each keeps the receive buffers of its plan."""
    return tuple(connect("127.0.0.1", p, rank, 2, "gloo", 300.0) for p in ports)


def _receiver(ports: tuple[int, int], args: argparse.Namespace, q) -> None:
    state = _state(args.hidden, args.layers, args.vocab)
    plan = plan_for(state, args.bucket_mb)
    flat_plan = plan_for(flat_copy(state), args.bucket_mb)
    grp, grp_scattered = _groups(ports, 1)
    flat = torch.empty(plan.nbytes // 2, dtype=torch.bfloat16)
    for _ in range(args.repeat):
        for g, p in ((grp, flat_plan), (grp_scattered, plan)):
            for _ in g.receive(p):
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
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    state = _state(args.hidden, args.layers, args.vocab)
    plan = plan_for(state, args.bucket_mb)
    flat_state = flat_copy(state)
    flat_plan = plan_for(flat_state, args.bucket_mb)
    ports = (free_port("127.0.0.1"), free_port("127.0.0.1"))
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    peer = ctx.Process(target=_receiver, args=(ports, args, q))
    peer.start()
    grp, grp_scattered = _groups(ports, 0)
    # the baseline's buffer holds real data: untouched pages would all read from the
    # kernel's shared zero page, which is cache-hot and flatters the baseline
    flat = torch.randn(plan.nbytes // 2).to(torch.bfloat16)
    times: dict[str, list[float]] = {"flat": [], "scattered": [], "raw": [], "raw_fresh": [],
                                     "per_tensor": []}
    for _ in range(args.repeat):
        t = time.perf_counter()
        grp.send(flat_plan, flat_state)
        times["flat"].append(time.perf_counter() - t)
        t = time.perf_counter()
        grp_scattered.send(plan, state)
        times["scattered"].append(time.perf_counter() - t)
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
    print(f"state: {len(state)} tensors, {mb:.1f} MiB bf16 (tied lm_head sent explicitly); "
          f"buckets of <= {args.bucket_mb:g} MiB: {len(flat_plan.buckets)} (flat), "
          f"{len(plan.buckets)} (scattered); best of {args.repeat}")
    best = {k: min(v) for k, v in times.items()}
    for k, s in best.items():
        print(f"  {k:<10} {s * 1e3:8.1f} ms  {plan.nbytes / s / 1e9:6.2f} GB/s")
    print(f"ratio flat (learner layout) / raw broadcast: {best['raw'] / best['flat']:.2f} "
          f"(target >= 0.8)")
    print(f"ratio scattered / raw broadcast: {best['raw'] / best['scattered']:.2f}")
    print(f"ratio flat / raw into fresh memory: {best['raw_fresh'] / best['flat']:.2f}")
    print(f"ratio per-tensor / raw broadcast: {best['raw'] / best['per_tensor']:.2f}")


if __name__ == "__main__":
    main()
