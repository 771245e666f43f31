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
from rlsys.model.chat import stop_ids
from rlsys.sampling import Sampling
from rlsys.stats import standard_error
from rlsys.train.data import Prompt, PromptSource, copy_drill, reference_ids

log = logging.getLogger(__name__)
T = TypeVar("T")

def generation_seed(seed: int, step: int, round_: int) -> int:
    """The sampler seed of one generation call of a GRPO step (engine i adds i): a pure
    function of where the call is in the run, so a resumed run draws the same tokens."""
    return (seed * 1_000_003 + step * 1_009 + round_ * 31) % (2**31 - 1024)


@dataclass
class Group:
    """One prompt's n completions in a GRPO step, as scored."""

    prompt: Prompt
    completions: list[Completion]
    result: RewardResult  # the scoring call that scored them (shared by a round's groups)
    rows: slice  # their rows in `result`
    rewards: np.ndarray  # what the advantages use: the totals, plus S-GRPO's bonus


@dataclass
class StepResult:
    """What a GRPO step returns to the loop."""

    metrics: dict[str, float]
    samples: list[dict[str, Any]]  # a few rollouts for the samples log
    prompt_ids: list[str]  # the prompts trained on (their groups were kept)


class ActorFailure(RuntimeError):
    """Actors kept dying past `trainer.max_actor_restarts`: the run stops."""


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

    # ---- resume ---------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The run-wide counters a checkpoint keeps, so that a resumed run continues them:
        skipped optimizer steps, actor restarts (the budget is per run), the judge's
        recent calls and failures."""
        return {"skipped_grad_steps": self.skipped_grad_steps,
                "restarts_rollout": self.restarts["rollout"],
                "restarts_reward": self.restarts["reward"],
                "judge_window": [list(x) for x in self.judge_window]}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from `state()` (missing keys: a fresh run's values)."""
        self.skipped_grad_steps = int(state.get("skipped_grad_steps", 0))
        self.restarts = {"rollout": int(state.get("restarts_rollout", 0)),
                         "reward": int(state.get("restarts_reward", 0))}
        self.judge_window.clear()
        self.judge_window.extend(tuple(x) for x in state.get("judge_window", []))

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
            self.sync_init()  # a new group with every engine, then the current weights
            self.sync()
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
        """Push the learner's weights to every engine (timeout: an error, not a hang)."""
        t0 = time.perf_counter()
        c = self.cfg.sync
        refs = [ln.sync_send.remote(self.wire) for ln in self.h.learners]
        refs += [e.sync_receive.remote(self.wire, c.timeout_s) for e in self.h.engines]
        out = ray.get(refs, timeout=c.timeout_s + 30)
        return {"time/sync": time.perf_counter() - t0, "sync_bytes": out[0]["bytes"]}

    # ---- generation and scoring ---------------------------------------------------
    def generate(self, ids: list[list[int]], sampling: Sampling,
                 seed: int, series: list | None = None) -> list[list[Completion]]:
        """n completions per prompt (token ids; `series[k]`: what prompt k's placeholders
        stand for, with the encoder), prompts split evenly across the engines; engine i
        samples with seed `seed + i`."""
        def call() -> list[list[Completion]]:
            chunks = split_even(len(ids), len(self.h.engines))
            live = [(i, e, sl) for i, (e, sl) in enumerate(zip(self.h.engines, chunks,
                                                                 strict=True))
                    if sl.stop > sl.start]
            refs = [e.generate.remote(ids[sl], sampling, seed + i, *(
                [series[sl]] if series is not None and any(series[sl]) else []))
                for i, e, sl in live]
            groups: list[list[Completion]] = [[] for _ in ids]
            for (_, _, sl), comps in zip(live, _get_all(refs), strict=True):
                for c in comps:
                    groups[sl.start + c.prompt_index].append(c)
            return groups

        return self._retrying("rollout", call)

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
        them (`copy_drill`)."""
        seqs, cut = self.references(prompts, answer_only)
        if drills:
            cut_from = [copy_drill(self.tok, p, s.input_ids[s.prompt_len:])
                        for p, s in zip(prompts, seqs, strict=True)]
            seqs += [Sequence(d, 1) for d in cut_from if d is not None][:drills]
        return {**self.train(seqs, sft=True, lr=lr), "truncated": float(cut)}

    def probe(self, prompts: list[Prompt], align: bool = False) -> dict[str, dict[str, float]]:
        """The token probe (`rlsys.evals.probe`) of the policy on `prompts`' references:
        per kind of rationale token, or (`align`) per ST-Align skill."""
        if not prompts:
            return {}
        seqs, _ = self.references(prompts)
        guesses = ray.get(self.h.learners[0].teacher_forced.remote(seqs))
        return token_probe(self.tok, prompts, guesses, align=align)

    def grpo_step(self, step: int) -> StepResult:
        """Generate, score (and with S-GRPO compare with the graph-free prompts), drop flat
        groups and top up with fresh prompts (dynamic sampling), train, sync."""
        a, r = self.cfg.algorithm, self.cfg.rollout
        want = r.prompts_per_step
        self.recover_s = 0.0
        t: dict[str, float] = defaultdict(float)
        seen: list[Group] = []
        free_results: list[RewardResult] = []  # S-GRPO's graph-free scoring (no gradient)
        helped: dict[str, list[float]] = defaultdict(list)
        kept: list[Group] = []
        topups, prompts = 0, self.source.next(want)
        while True:
            groups = self._rollout(prompts, step, topups, t, free_results, helped)
            seen += groups
            if a.dynamic_sampling:
                keep = dynamic_sampling_mask(
                    np.concatenate([g.rewards for g in groups]), r.n).tolist()
                kept += [g for g, k in zip(groups, keep, strict=True) if k]
            else:
                kept += groups
            more = topup_needed(len(kept), want)
            if not more or not a.dynamic_sampling or topups >= a.max_topups:
                break
            topups += 1
            prompts = self.source.next(more)
        kept = kept[:want]
        metrics = self._rollout_metrics(seen, free_results)
        metrics.update(t)
        metrics.update(kept_groups=len(kept), topups=topups)
        if a.spatial.enabled:
            every = [v for vals in helped.values() for v in vals]
            metrics["spatial/helped"] = float(np.mean(every)) if every else 0.0
            metrics.update({f"spatial/helped/{task}": float(np.mean(v))
                            for task, v in helped.items() if v})
        if kept:
            metrics.update(self.train(self._sequences(kept)))
            metrics.update(self._retrying("rollout", self.sync))
        else:
            metrics["empty_step"] = 1.0  # every group flat: nothing to learn from
        metrics.update({"time/recover": self.recover_s,
                        "restarts/rollout": float(self.restarts["rollout"]),
                        "restarts/reward": float(self.restarts["reward"])})
        samples = [{"task": g.prompt.task, "prompt": g.prompt.target["question"][:400],
                    "completion": g.completions[0].text, "answer": g.prompt.target["answer"],
                    "reward": g.result.total[g.rows.start]} for g in seen[:4]]
        return StepResult(metrics, samples, [g.prompt.id for g in kept])

    def _rollout(self, prompts: list[Prompt], step: int, round_: int, t: dict[str, float],
                 free_results: list[RewardResult],
                 helped: dict[str, list[float]]) -> list[Group]:
        """One generation round of a step: every prompt's group, scored (with S-GRPO's
        bonus from the same prompts without their graph added to the rewards)."""
        r, sp = self.cfg.rollout, self.cfg.algorithm.spatial
        sampling = r.sampling(self.stop_ids)
        seed = self.cfg.trainer.seed
        t0 = time.perf_counter()
        series = [p.series for p in prompts]
        comps = self.generate([p.ids for p in prompts], sampling,
                              generation_seed(seed, step, 2 * round_), series)
        t["time/generate"] += time.perf_counter() - t0
        if sp.enabled:
            t0 = time.perf_counter()
            free = self.generate([p.ids_no_graph for p in prompts], sampling,
                                 generation_seed(seed, step, 2 * round_ + 1), series)
            t["time/generate_no_graph"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        res = self.score(prompts, comps)
        res_free = None
        if sp.enabled:
            res_free = self.score(prompts, free)
            free_results.append(res_free)
        t["time/reward"] += time.perf_counter() - t0
        bonus_fn = spatial_bonus if sp.mode == "pair" else spatial_bonus_group_mean
        out, k, kf = [], 0, 0
        for i, (p, g) in enumerate(zip(prompts, comps, strict=True)):
            rows = slice(k, k + len(g))
            rewards = np.asarray(res.total[rows], dtype=float)
            if res_free is not None:
                compared = _compared(res, sp.component, rows)
                free_vals = _compared(res_free, sp.component, slice(kf, kf + len(free[i])))
                sb = bonus_fn(compared, free_vals, sp.threshold, sp.weight)
                rewards = rewards + sb.bonus
                helped[p.task] += sb.helped.astype(float).tolist()
                kf += len(free[i])
            out.append(Group(p, g, res, rows, rewards))
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

    def _rollout_metrics(self, seen: list[Group], more: list[RewardResult]) -> dict[str, float]:
        """Reward, accuracy and length metrics of the step's rollouts; failure counts
        and judge calls of every scoring call of the step (`more`: the graph-free ones)."""
        comps: dict[str, list[float]] = defaultdict(list)
        acc: dict[str, list[float]] = defaultdict(list)
        totals, lengths, errors, timeouts = [], [], 0, 0
        for g in seen:
            totals += g.result.total[g.rows]
            lengths += [len(c.token_ids) for c in g.completions]
            for name, col in g.result.components.items():
                vals = [v for v in col[g.rows] if v is not None]
                comps[name] += vals
                if name == "accuracy":
                    acc[g.prompt.task] += vals
        results = [*{id(g.result): g.result for g in seen}.values(), *more]  # every call
        for res in results:
            errors += sum(res.errors.values())
            timeouts += sum(res.timeouts.values())
        out = {"reward/mean": float(np.mean(totals)) if totals else 0.0,
               "response_len": float(np.mean(lengths)) if lengths else 0.0,
               "reward_errors": float(errors), "reward_timeouts": float(timeouts),
               "generated_tokens": float(sum(lengths))}
        judged = {k: sum(res.judge.get(k, 0.0) for res in results)
                  for k in ("calls", "failures", "latency_s")}
        # A judge batch cut off by reward.timeout_s scored 0 without the judge's counters
        # seeing it fail: those completions are failed judge calls too.
        cut = float(sum(res.timeouts.get("judge", 0) for res in results))
        judged["calls"] += cut
        judged["failures"] += cut
        if judged["calls"]:
            out.update({"judge/calls": judged["calls"], "judge/failures": judged["failures"],
                        "judge/latency_s": judged["latency_s"] / judged["calls"]})
            self.judge_window.append((judged["calls"], judged["failures"]))
        out.update({f"reward/{k}": float(np.mean(v)) for k, v in comps.items() if v})
        out.update({f"acc/{k}": float(np.mean(v)) for k, v in acc.items() if v})
        return out

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


def _compared(res: RewardResult, component: str | None, sl: slice) -> list[float]:
    """The rewards S-GRPO compares: the weighted total, or one reward's values (0 where it
    does not apply)."""
    if component is None:
        return res.total[sl]
    return [v or 0.0 for v in res.components[component][sl]]


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
