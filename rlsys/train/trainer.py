"""The GRPO loop over the actor handles: generate, score, compute advantages, train, sync.

`Trainer` holds the handles built by `rlsys.train.cluster.build` and does one thing per method;
`rlsys.train.run.run` is the entry point that reads top to bottom. A rollout engine or a reward
worker that dies mid-step is rebuilt in its bundle (engines re-join the weight-sync group
and receive the current weights) and the call is retried, up to
`trainer.max_actor_restarts` times per run; a learner rank that dies ends the run, which
then continues from its last checkpoint with `strl train --resume`.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import ray
from ray.exceptions import RayActorError

from actors.learner import MicroBatch, Sequence
from actors.reward import RewardResult, merge, split_even
from actors.rollout import Completion
from envs.tasks.align import skill_label
from rewards import Target, evaluate
from rewards.spatial import spatial_bonus, spatial_bonus_group_mean
from rlsys.algorithms import advantage_fn, dynamic_sampling_mask, topup_needed
from rlsys.config import Config
from rlsys.dataio import fresh_dir
from rlsys.evals.probe import probe as token_probe
from rlsys.evals.probe import series_reliance, time_reversed
from rlsys.model.chat import stop_ids
from rlsys.sampling import Sampling
from rlsys.stats import standard_error
from rlsys.train.data import Prompt, PromptSource, copy_drills, reference_ids
from rlsys.train.rounds import (
    Group,
    Round,
    compared,
    generation_seed,
    rollout_metrics,
    staleness_metrics,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

@dataclass
class StepResult:
    """What a GRPO step returns to the loop."""

    metrics: dict[str, float]
    samples: list[dict[str, Any]]  # a few rollouts for the samples log
    prompt_ids: list[str]  # the prompts trained on (their groups were kept)


class ActorFailure(RuntimeError):
    """Actors kept dying past `trainer.max_actor_restarts`: the run stops."""


class SyncFailure(RuntimeError):
    """A weight sync failed or did not finish within `sync.timeout_s`; names the actor."""


class Trainer:
    def __init__(self, cfg: Config, handles: Any, tokenizer: Any, source: PromptSource) -> None:
        self.cfg, self.h, self.tok, self.source = cfg, handles, tokenizer, source
        self.wire: list | None = None
        self.stop_ids = stop_ids(tokenizer)
        self.skipped_grad_steps = 0
        self.restarts: dict[str, int] = {"rollout": 0, "reward": 0}
        self.recover_s = 0.0  # time spent rebuilding actors in the current step
        # (calls, failures) of the AI judge over the last judge_server.window_steps steps
        self.judge_window: deque[tuple[float, float]] = deque(maxlen=cfg.judge_server.window_steps)
        self.version = 0  # GRPO updates applied to the policy (the engines get it at sync)
        self.flights: deque[Round] = deque()  # rounds of later steps, launched or gathered
        self.launched = 0  # the first step whose round is not launched yet
        self.engine_busy: list[float] = []  # each engine's busy seconds at the last look

    # ---- resume ---------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The run-wide counters a checkpoint keeps, so that a resumed run continues them:
        skipped optimizer steps, actor restarts (the budget is per run), the judge's
        recent calls and failures."""
        return {"skipped_grad_steps": self.skipped_grad_steps,
                "restarts_rollout": self.restarts["rollout"],
                "restarts_reward": self.restarts["reward"],
                "judge_window": [list(x) for x in self.judge_window],
                "policy_version": self.version}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from `state()` (missing keys: a fresh run's values)."""
        self.skipped_grad_steps = int(state.get("skipped_grad_steps", 0))
        self.restarts = {"rollout": int(state.get("restarts_rollout", 0)),
                         "reward": int(state.get("restarts_reward", 0))}
        self.judge_window.clear()
        self.judge_window.extend(tuple(x) for x in state.get("judge_window", []))
        self.version = int(state.get("policy_version", 0))

    def rounds(self) -> list[Round]:
        """The rounds of later steps, gathered (a checkpoint keeps them: `rounds.py`)."""
        return [self.gather(r) for r in self.flights]

    def restore_rounds(self, rounds: list[Round], step: int) -> None:
        """Continue with a checkpoint's rounds; `step` is the next GRPO step."""
        self.flights = deque(rounds)
        self.launched = max([step] + [r.step + 1 for r in rounds])

    # ---- surviving dead actors ----------------------------------------------------
    def _retrying(self, role: str, call: Callable[[], T]) -> T:
        """`call()`, rebuilding the dead actors of `role` and retrying when one died."""
        while True:
            try:
                return call()
            except RayActorError as e:
                used = sum(self.restarts.values())
                if used >= self.cfg.trainer.max_actor_restarts:
                    raise ActorFailure(
                        f"a {role} actor died ({type(e).__name__}) after {used} restarts "
                        f"this run (trainer.max_actor_restarts="
                        f"{self.cfg.trainer.max_actor_restarts}); resume from the last "
                        "checkpoint with `strl train --resume <run dir>`") from e
                self._recover(role)

    def _recover(self, role: str) -> None:
        t0 = time.perf_counter()
        pool = self.h.engines if role == "rollout" else self.h.rewards
        dead = [i for i, ok in enumerate(_alive(pool)) if not ok]
        gone = [r for r, ok in enumerate(_alive(self.h.learners)) if not ok]
        if gone:  # a learner rank cannot rejoin its DeepSpeed group
            raise ActorFailure(f"learner rank {gone[0]} died; its DeepSpeed group cannot be "
                               "rebuilt mid-run: resume from the last checkpoint with "
                               "`strl train --resume <run dir>`")
        for i in dead:
            log.warning("%s actor %d died; rebuilding it in its bundle", role, i)
            self.h.replace(role, i)
        # A failure whose actor answers again (unreachable for a moment) costs a retry too,
        # so a flapping actor cannot keep a step retrying forever.
        self.restarts[role] += max(1, len(dead))
        if role == "rollout" and dead:
            self._settle()  # the live engines finish the rounds queued on them first
            self.sync_init()  # a new group with every engine, then the current weights
            self.sync()
            for rnd in self.flights:  # rounds ahead that the dead engines held: again
                if any(i in dead for i, *_ in rnd.calls + rnd.free_calls):
                    self._relaunch(rnd)
        self.recover_s += time.perf_counter() - t0
        log.warning("rebuilt %d %s actor(s) in %.1fs; retrying", len(dead), role,
                    time.perf_counter() - t0)

    # ---- weight sync --------------------------------------------------------------
    def sync_init(self) -> None:
        """(Re-)form the weight-sync group of learner rank 0 and every engine worker."""
        c, tp = self.cfg.sync, self.cfg.rollout.tensor_parallel
        host, port = ray.get(self.h.learners[0].address.remote())
        world = 1 + tp * len(self.h.engines)
        backend = self.h.topo.sync_backend  # decided once, in plan_topology
        refs = [e.sync_init.remote(host, port, 1 + i * tp, world, backend, c.timeout_s)
                for i, e in enumerate(self.h.engines)]
        refs += [ln.sync_init.remote(host, port, world, backend, c.timeout_s)
                 for ln in self.h.learners]
        ray.get(refs, timeout=c.timeout_s + 30)
        if self.wire is None:
            # every rank: under ZeRO-3 building the plan gathers the shards collectively
            plans = ray.get([ln.sync_plan.remote(c.bucket_mb) for ln in self.h.learners])
            self.wire = plans[0]

    def sync(self) -> dict[str, float]:
        """Push the learner's weights to every engine. One that has not finished within
        `sync.timeout_s` (plus a margin for the call itself) or fails is a `SyncFailure`
        naming it, never a hang; a dead engine is left to the caller's `_retrying`."""
        t0 = time.perf_counter()
        c = self.cfg.sync
        sent = [ln.sync_send.remote(self.wire) for ln in self.h.learners]
        got = [e.sync_receive.remote(self.wire, c.timeout_s) for e in self.h.engines]
        # engines first: a dead engine's RayActorError reaches `_retrying` (which rebuilds
        # it) before a learner's error about the broadcast the engine left
        names = [f"rollout engine {i}" for i in range(len(got))] + \
            [f"learner rank {r}" for r in range(len(sent))]
        refs = got + sent
        # the collectives time out after sync.timeout_s on their own; the margin is for
        # the calls around them
        limit = c.timeout_s + min(30.0, c.timeout_s)
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=limit)
        late = [n for n, ref in zip(names, refs, strict=True) if ref not in ready]
        if late:
            raise SyncFailure(f"weight sync did not finish within {limit:g}s "
                              f"(sync.timeout_s={c.timeout_s:g}): {', '.join(late)} did not "
                              "answer; check that actor's log, or raise sync.timeout_s")
        out = []
        for n, ref in zip(names, refs, strict=True):
            try:
                out.append(ray.get(ref))
            except ray.exceptions.RayTaskError as e:
                raise SyncFailure(f"weight sync failed on {n}: {e.cause!r}") from e
        return {"time/sync": time.perf_counter() - t0, "sync_bytes": out[len(got)]["bytes"]}

    # ---- generation and scoring ---------------------------------------------------
    def generate(self, ids: list[list[int]], sampling: Sampling,
                 seed: int, series: list | None = None) -> list[list[Completion]]:
        """n completions per prompt (token ids; `series[k]`: what prompt k's placeholders
        stand for, with the encoder), prompts split evenly across the engines; engine i
        samples with seed `seed + i`."""
        return self._retrying("rollout", lambda: self._gather_calls(
            self._engine_calls(ids, sampling, seed, series), len(ids)))

    def _engine_calls(self, ids: list[list[int]], sampling: Sampling, seed: int,
                      series: list | None) -> list[tuple[int, slice, Any]]:
        """Send the prompts, split evenly, to the engines; each call's engine, the slice of
        prompts it got, and its Ray ref."""
        chunks = split_even(len(ids), len(self.h.engines))
        return [(i, sl, e.generate.remote(ids[sl], sampling, seed + i, *(
                    [series[sl]] if series is not None and any(series[sl]) else [])))
                for i, (e, sl) in enumerate(zip(self.h.engines, chunks, strict=True))
                if sl.stop > sl.start]

    @staticmethod
    def _gather_calls(calls: list[tuple[int, slice, Any]], n: int) -> list[list[Completion]]:
        groups: list[list[Completion]] = [[] for _ in range(n)]
        for (_, sl, _), comps in zip(calls, _get_all([ref for *_, ref in calls]), strict=True):
            for c in comps:
                groups[sl.start + c.prompt_index].append(c)
        return groups

    def launch(self, prompts: list[Prompt], step: int, index: int) -> Round:
        """Send a round of a GRPO step to the engines (and under S-GRPO the same prompts
        without their graph), tagged with the policy version that will sample it."""
        r, sp = self.cfg.rollout, self.cfg.algorithm.spatial
        sampling, seed = r.sampling(self.stop_ids), self.cfg.trainer.seed
        series = [p.series for p in prompts]
        rnd = Round(step, index, self.version, prompts)
        rnd.calls = self._engine_calls([p.ids for p in prompts], sampling,
                                       generation_seed(seed, step, 2 * index), series)
        if sp.enabled:
            rnd.free_calls = self._engine_calls([p.ids_no_graph for p in prompts], sampling,
                                                generation_seed(seed, step, 2 * index + 1),
                                                series)
        return rnd

    def gather(self, rnd: Round, t: dict[str, float] | None = None) -> Round:
        """Wait for a round's completions. An engine that died with the round in flight is
        rebuilt (`_retrying`) and the round is sampled again, by the current weights and
        tagged with their version: no round is lost."""
        t = defaultdict(float) if t is None else t
        tries = 0

        def call() -> tuple[list[list[Completion]], list[list[Completion]] | None]:
            nonlocal tries
            if tries and all(r is not rnd for r in self.flights):  # `_recover` did flights
                self._relaunch(rnd)
            tries += 1
            t0 = time.perf_counter()
            groups = self._gather_calls(rnd.calls, len(rnd.prompts))
            t["time/generate"] += time.perf_counter() - t0
            if not rnd.free_calls:
                return groups, None
            t0 = time.perf_counter()
            free = self._gather_calls(rnd.free_calls, len(rnd.prompts))
            t["time/generate_no_graph"] += time.perf_counter() - t0
            return groups, free

        if not rnd.gathered:
            rnd.groups, rnd.free = self._retrying("rollout", call)
            rnd.calls, rnd.free_calls = [], []
        return rnd

    def _relaunch(self, rnd: Round) -> None:
        """Sample a round again (its engine died), by the current weights."""
        again = self.launch(rnd.prompts, rnd.step, rnd.index)
        rnd.calls, rnd.free_calls, rnd.version = again.calls, again.free_calls, again.version

    def fill(self, step: int) -> None:
        """Launch the rounds of steps up to `step + algorithm.max_staleness` (within
        `trainer.steps`) that are not launched yet."""
        upto = min(step + self.cfg.algorithm.max_staleness, self.cfg.trainer.steps - 1)
        self.launched = max(self.launched, step)
        while self.launched <= upto:
            want = self.cfg.rollout.prompts_per_step
            self.flights.append(self.launch(self.source.next(want), self.launched, 0))
            self.launched += 1

    def _settle(self) -> None:
        """Wait until the engines have run every call in flight (not fetching results): a
        weight sync queued behind a long generation must not spend its timeout there."""
        refs = [ref for r in self.flights for *_, ref in r.calls + r.free_calls]
        if refs:
            ray.wait(refs, num_returns=len(refs), fetch_local=False)

    def _busy_delta(self) -> list[float]:
        """Each engine's busy seconds since the last look (a rebuilt engine starts at 0)."""
        now = ray.get([e.busy.remote() for e in self.h.engines])
        last = self.engine_busy if len(self.engine_busy) == len(now) else [0.0] * len(now)
        self.engine_busy = now
        return [b - a if b >= a else b for a, b in zip(last, now, strict=True)]

    def score(self, prompts: list[Prompt], groups: list[list[Completion]]) -> RewardResult:
        texts = [c.text for g in groups for c in g]
        targets = [p.target for p, g in zip(prompts, groups, strict=True) for _ in g]

        def call() -> RewardResult:
            chunks = split_even(len(texts), len(self.h.rewards))
            refs = [w.score.remote(texts[sl], targets[sl])
                    for w, sl in zip(self.h.rewards, chunks, strict=True) if sl.stop > sl.start]
            return merge(_get_all(refs))

        return self._retrying("reward", call)

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
        pad = Sequence(seqs[0].input_ids, seqs[0].prompt_len, seqs[0].old_logprobs, 0.0, 0.0,
                       seqs[0].series)
        for b in batches:  # ZeRO reduces collectively: every rank runs as many micro-batches
            b += [MicroBatch([pad]) for _ in range(most - len(b))]
        tokens = sum((len(s.input_ids) - s.prompt_len) * s.weight for s in seqs)
        outs = ray.get([ln.train_step.remote(b, int(tokens), sft, lr, len(seqs))
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

    def references(self, prompts: list[Prompt],
                   answer_only: bool = False) -> tuple[list[Sequence], int]:
        """Each prompt followed by its reference completion (or its answer alone), and how
        many references were cut at `rollout.max_tokens` (`reference_ids`)."""
        seqs, cut = [], 0
        for p in prompts:
            ids, was_cut = reference_ids(self.tok, p, self.cfg.rollout.max_tokens, answer_only)
            cut += was_cut
            seqs.append(Sequence(p.ids + ids, len(p.ids), series=p.series))
        return seqs, cut

    def sft_step(self, prompts: list[Prompt], answer_only: bool, lr: float,
                 drills: int = 0) -> dict[str, float]:
        """One supervised step on `prompts`' references, plus `drills` copy drills cut from
        them (`copy_drills`)."""
        seqs, cut = self.references(prompts, answer_only)
        if drills:
            refs = [s.input_ids[s.prompt_len:] for s in seqs]
            seqs += [Sequence(d, 1) for d in copy_drills(self.tok, prompts, refs, drills)]
        return {**self.train(seqs, sft=True, lr=lr), "truncated": float(cut)}

    def fit_onset(self, batches: list[list[Prompt]], lr: float) -> dict[str, float]:
        """The encoder's onset head fitted alone, one optimizer step per batch of
        questions (their series split over the learner ranks, the same number of steps
        on each): the first and the last losses, or {} when the policy has no onset head."""
        ranks = len(self.h.learners)
        per_rank = [[[x for p in b[r::ranks] for x in p.series or []] for b in batches]
                    for r in range(ranks)]
        outs = ray.get([ln.fit_onset.remote(part, lr)
                        for ln, part in zip(self.h.learners, per_rank, strict=True)])
        return {k: sum(o[k] for o in outs) / len(outs) for k in outs[0]} if outs[0] else {}

    def probe(self, prompts: list[Prompt], align: bool = False
              ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
        """The token probe (`rlsys.evals.probe`) of the policy on `prompts`' references:
        per kind of rationale token, or (`align`) per ST-Align skill; and, when the policy
        reads series through the encoder, its series reliance on the same readings."""
        if not prompts:
            return {}, {}
        seqs, _ = self.references(prompts)
        learner = self.h.learners[0]
        guesses = ray.get(learner.teacher_forced.remote(seqs))
        table = token_probe(self.tok, prompts, guesses, align=align)
        if self.cfg.model.series != "encoder":
            return table, {}
        flipped = ray.get(learner.teacher_forced.remote(
            [replace(s, series=time_reversed(s.series)) for s in seqs]))
        return table, series_reliance(self.tok, prompts, guesses, flipped, align=align)

    def grpo_step(self, step: int) -> StepResult:
        """Generate, score (and with S-GRPO compare with the graph-free prompts), drop flat
        groups and top up with fresh prompts (dynamic sampling), train, sync.

        With `algorithm.max_staleness` k >= 1 the step's first round was launched k steps
        earlier (`fill`, after that step's weight sync), so the engines sample it while the
        learners train the steps between; groups more than k versions old are dropped
        (`stale_dropped`: only when k was lowered on a resume). Top-ups are sampled by the
        current weights, once the engines have finished the rounds ahead of them."""
        a, r = self.cfg.algorithm, self.cfg.rollout
        want, k = r.prompts_per_step, a.max_staleness
        t_start = time.perf_counter()
        self.recover_s = 0.0
        t: dict[str, float] = defaultdict(float)
        seen: list[Group] = []
        free_results: list[RewardResult] = []  # S-GRPO's graph-free scoring (no gradient)
        helped: dict[str, list[float]] = defaultdict(list)
        kept: list[Group] = []
        self.fill(step)
        rnd = self.flights.popleft()
        if rnd.step != step:  # the loop and the rounds went out of step: a bug, say so
            raise RuntimeError(f"GRPO step {step} found the round of step {rnd.step}")
        topups = 0
        while True:
            groups = self._score_round(self.gather(rnd, t), t, free_results, helped)
            seen += groups
            if a.dynamic_sampling:
                keep = dynamic_sampling_mask(
                    np.concatenate([g.rewards for g in groups]), r.n).tolist()
                kept += [g for g, k_ in zip(groups, keep, strict=True) if k_]
            else:
                kept += groups
            more = topup_needed(len(kept), want)
            if not more or not a.dynamic_sampling or topups >= a.max_topups:
                break
            topups += 1
            rnd = self.launch(self.source.next(more), step, topups)
        kept = kept[:want]
        fresh = [g for g in kept if self.version - g.version <= k]
        metrics = rollout_metrics(seen, free_results)
        if "judge/calls" in metrics:
            self.judge_window.append((metrics["judge/calls"], metrics["judge/failures"]))
        metrics.update(t)
        metrics.update(kept_groups=len(fresh), topups=topups,
                       stale_dropped=float(len(kept) - len(fresh)),
                       **staleness_metrics([self.version - g.version for g in fresh
                                            for _ in g.completions], k))
        kept = fresh
        if a.spatial.enabled:
            every = [v for vals in helped.values() for v in vals]
            metrics["spatial/helped"] = float(np.mean(every)) if every else 0.0
            metrics.update({f"spatial/helped/{task}": float(np.mean(v))
                            for task, v in helped.items() if v})
        if kept:
            metrics.update(self.train(self._sequences(kept)))
            self.version += 1
            t0 = time.perf_counter()
            self._settle()
            metrics["time/wait_engines"] = time.perf_counter() - t0
            metrics.update(self._retrying("rollout", self.sync))
        else:
            metrics["empty_step"] = 1.0  # every group flat: nothing to learn from
        wall = time.perf_counter() - t_start
        busy = self._busy_delta()
        learner = metrics.get("time/train", 0.0) + metrics.get("time/reference", 0.0) \
            + metrics.get("time/sync", 0.0)
        metrics.update({"time/recover": self.recover_s,
                        "restarts/rollout": float(self.restarts["rollout"]),
                        "restarts/reward": float(self.restarts["reward"]),
                        "policy_version": float(self.version),
                        "idle/engine": max(0.0, 1.0 - sum(busy) / len(busy) / wall),
                        "idle/learner": max(0.0, 1.0 - learner / wall)})
        if k:
            self.fill(step + 1)  # sampled by the weights just synced, while step + 1 trains
        samples = [{"task": g.prompt.task, "prompt": g.prompt.target["question"][:400],
                    "completion": g.completions[0].text, "answer": g.prompt.target["answer"],
                    "reward": g.result.total[g.rows.start]} for g in seen[:4]]
        return StepResult(metrics, samples, [g.prompt.id for g in kept])

    def _score_round(self, rnd: Round, t: dict[str, float], free_results: list[RewardResult],
                     helped: dict[str, list[float]]) -> list[Group]:
        """A gathered round's groups, scored (with S-GRPO's bonus from the same prompts
        without their graph added to the rewards)."""
        sp = self.cfg.algorithm.spatial
        prompts, comps, free = rnd.prompts, rnd.groups or [], rnd.free
        t0 = time.perf_counter()
        res = self.score(prompts, comps)
        res_free = None
        if free is not None:
            res_free = self.score(prompts, free)
            free_results.append(res_free)
        t["time/reward"] += time.perf_counter() - t0
        bonus_fn = spatial_bonus if sp.mode == "pair" else spatial_bonus_group_mean
        out, k, kf = [], 0, 0
        for i, (p, g) in enumerate(zip(prompts, comps, strict=True)):
            rows = slice(k, k + len(g))
            rewards = np.asarray(res.total[rows], dtype=float)
            if res_free is not None:
                with_graph = compared(res, sp.component, rows)
                free_vals = compared(res_free, sp.component, slice(kf, kf + len(free[i])))
                sb = bonus_fn(with_graph, free_vals, sp.threshold, sp.weight)
                rewards = rewards + sb.bonus
                helped[p.task] += sb.helped.astype(float).tolist()
                kf += len(free[i])
            out.append(Group(p, g, res, rows, rewards, rnd.version))
            k += len(g)
        return out

    def _sequences(self, kept: list[Group]) -> list[Sequence]:
        """The training sequences of the kept groups, each with its group-relative advantage
        (empty completions carry no tokens to train on)."""
        estimate, n = advantage_fn(self.cfg.algorithm.advantage), self.cfg.rollout.n
        seqs = []
        for g in kept:
            adv = estimate(g.rewards, n).tolist()
            seqs += [Sequence(g.prompt.ids + c.token_ids, len(g.prompt.ids), c.logprobs, av,
                              series=g.prompt.series)
                     for c, av in zip(g.completions, adv, strict=True) if c.token_ids]
        return seqs

    def judge_failing(self) -> str | None:
        """Why the run must stop because the judge keeps failing, or None."""
        calls = sum(c for c, _ in self.judge_window)
        failures = sum(f for _, f in self.judge_window)
        limit = self.cfg.judge_server.max_failure_fraction
        if calls and failures / calls > limit:
            where = f" at {self.h.judge_url}" if self.h.judge_url else ""
            return (f"the AI judge{where} failed {failures:g} of {calls:g} calls "
                    f"over the last {len(self.judge_window)} steps (more than "
                    f"judge_server.max_failure_fraction={limit:g}); check that it is up and "
                    "reachable, then resume")
        return None

    # ---- evaluation ---------------------------------------------------------------
    def evaluate(self, prompts: list[Prompt]) -> dict[str, dict[str, Any]]:
        """Metrics of the answers on held-out prompts, per task (TimeOmni-1's convention)."""
        return held_out_metrics(*self.answers(prompts)) if prompts else {}

    def objective(self, prompts: list[Prompt]) -> dict[str, Any]:
        """GRPO's objective on held-out prompts: `trainer.objective_samples` completions
        each at the rollout's sampling settings, scored by the run's rewards. Returns the
        mean reward, its standard error over prompts, each reward's mean, and the
        per-prompt means (a later point's difference is paired on them)."""
        sampling = self.cfg.objective_sampling(self.stop_ids)
        groups = self.generate([p.ids for p in prompts], sampling, sampling.seed,
                               [p.series for p in prompts])
        res = self.score(prompts, groups)
        per, k = [], 0
        for g in groups:
            per.append(float(np.mean(res.total[k:k + len(g)])))
            k += len(g)
        comps = {name: float(np.mean([v or 0.0 for v in vals]))
                 for name, vals in res.components.items()}
        return {"mean": float(np.mean(per)), "se": standard_error(per),
                "n_prompts": len(per), "n_samples": sampling.n, "components": comps,
                "per_prompt": per}

    def answers(self, prompts: list[Prompt]) -> tuple[list[str], list[Any]]:
        """The policy's answers to held-out prompts (greedy unless
        `trainer.eval_temperature` > 0), and their targets. Sampling is seeded the same way
        every time, so a before/after difference is the model's, not the dice's."""
        sampling = self.cfg.eval_sampling(self.stop_ids)
        groups = self.generate([p.ids for p in prompts], sampling, sampling.seed,
                               [p.series for p in prompts])
        return [g[0].text for g in groups], [Target.from_record(p.target) for p in prompts]


def held_out_metrics(texts: list[str], targets: list[Any]) -> dict[str, dict[str, Any]]:
    """`rewards.evaluate`'s metrics per task, as plain dicts (a checkpoint keeps them)."""
    return {k: asdict(v) for k, v in evaluate(texts, targets).items()}


def by_skill(prompts: list[Prompt], texts: list[str],
             targets: list[Any]) -> tuple[list[str], list[Any]]:
    """Perception answers and their targets, each target named by its skill label
    ("departure (one node)", "lag", ...: `envs.tasks.align.skill_label` of the sample's
    meta) so that `held_out_metrics` groups by skill."""
    named = [replace(t, task=skill_label(json.loads(p.target.get("meta") or "{}")) or t.task)
             for p, t in zip(prompts, targets, strict=True)]
    return texts, named


def _get_all(refs: list) -> list:
    """`ray.get(refs)`; when one fails, first let the others finish (their actors are then
    free for the recovery's calls, which would otherwise queue behind them)."""
    try:
        return ray.get(refs)
    except RayActorError:
        ray.wait(refs, num_returns=len(refs), timeout=600)
        raise


def _alive(actors: list) -> list[bool]:
    """Which actors still answer (a dead one fails at once; a busy one counts as alive)."""
    probes = [a.__ray_ready__.remote() for a in actors]
    ray.wait(probes, num_returns=len(probes), timeout=30)
    out = []
    for p in probes:
        try:
            ray.get(p, timeout=0)
            out.append(True)
        except RayActorError:
            out.append(False)
        except ray.exceptions.GetTimeoutError:
            out.append(True)
    return out


def unique_run_dir(cfg: Config) -> Path:
    """runs/<name>, or runs/<name>-2, -3, ... when it exists (a finished run is never
    overwritten; resuming one is `strl train --resume`)."""
    return fresh_dir(cfg.run_dir)
