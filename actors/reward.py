"""Reward worker: scores a batch of completions with the configured rewards, each under a
timeout, and is the one place where a reward that raises is caught, counted and scored 0.

`RewardWorker` is a plain class (construct it in a test); the Ray actor is `RewardActor`.
`start()` builds the rewards (imports and validates plug-in files), so a bad config fails
there, before training, and not in `__init__`, which cannot be retried. `split_even` and
`merge` let the trainer chunk one batch across several workers and join the chunk results.

Failure policy of `score()`, per reward:
- the batch call raises (or returns a malformed list, which `RewardSet` turns into a
  `RewardError`): the completions are retried one by one, so only those that fail score 0
  and are counted in `errors`;
- the batch call runs past `timeout_s`: every completion it applies to scores 0 and is
  counted in `timeouts`, without a retry one by one (a hung reward would make each
  completion wait `timeout_s`). A timeout during the one-by-one retry likewise zeroes the
  completions not yet retried.
A timed-out call cannot be stopped: its thread is abandoned and the worker continues on a
fresh executor, so later calls are not queued behind it. A truly hung thread leaks until
the process ends; Python waits for executor threads at interpreter exit, so a plain-class
user whose reward never returns must exit with `os._exit` (a Ray actor is killed anyway).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray

from rewards import RewardConfigError, RewardSet, RewardSpec, ScoreResult, Target
from rewards.judge import JudgeReward

log = logging.getLogger(__name__)


@dataclass
class RewardResult:
    """Scores of one batch: weighted totals, per-reward values and failure counts.

    Every configured reward has a key in `components`, `errors` and `timeouts`.
    """

    total: list[float]
    """Per completion: sum of weight * value over rewards (a failed reward adds 0)."""
    components: dict[str, list[float | None]]
    """Per reward, per completion: its value; None where it does not apply to the target's
    kind; 0.0 where it failed."""
    errors: dict[str, int]
    """Per reward: completions scored 0 because the reward raised or returned garbage."""
    timeouts: dict[str, int]
    """Per reward: completions scored 0 because the reward ran past the timeout."""
    seconds: float
    """Wall time of the call (of the slowest chunk, after `merge`)."""
    judge: dict[str, float] = field(default_factory=dict)
    """AI-judge calls of this batch: `calls`, `failures`, `latency_s` (summed); empty when
    no judge reward is configured."""


class RewardWorker:
    """Scores batches with the rewards of `specs` (config mappings for `RewardSpec`)."""

    def __init__(self, specs: Sequence[Mapping[str, Any]], timeout_s: float = 30.0) -> None:
        self.specs = [dict(s) for s in specs]
        self.timeout_s = float(timeout_s)
        self.sets: dict[str, RewardSet] = {}
        self._pool: cf.ThreadPoolExecutor | None = None
        self._judge_seen: dict[str, float] = {}

    def start(self) -> list[str]:
        """Build every reward (importing plug-in modules); returns the reward names.

        Raises RewardConfigError for an unknown name, bad params, a plug-in that does not
        load (naming the file), a duplicate name or an empty list; ValueError for a
        timeout that is not positive.
        """
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s!r}")
        specs = [RewardSpec.from_mapping(s) for s in self.specs]
        if not specs:
            raise RewardConfigError("the reward worker needs at least one reward")
        names = [s.name for s in specs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise RewardConfigError(f"rewards {dup} appear twice; components are keyed by name")
        # One set per reward, so that each is timed and its failures are counted on its own.
        self.sets = {s.name: RewardSet([s]) for s in specs}
        if self._pool is not None:  # started again: let the old executor's threads finish
            self._pool.shutdown(wait=False)
        self._pool = _new_pool()
        return names

    def score(
        self, completions: Sequence[str], targets: Sequence[Mapping[str, Any]]
    ) -> RewardResult:
        """Score `completions` against `targets` (records for `Target.from_record`).

        A malformed target record raises ValueError (a data bug, not a reward failure).
        """
        if not self.sets:
            raise RuntimeError("RewardWorker.start() must be called before score()")
        t0 = time.perf_counter()
        n = len(completions)
        if len(targets) != n:
            raise ValueError(f"{n} completions but {len(targets)} targets")
        completions = list(completions)
        tgts = [Target.from_record(r) for r in targets]
        total = [0.0] * n
        components: dict[str, list[float | None]] = {}
        errors: dict[str, int] = {}
        timeouts: dict[str, int] = {}
        for name, rs in self.sets.items():
            column, errors[name], timeouts[name] = self._score_reward(rs, completions, tgts)
            weight = rs.specs[0].weight
            for i, v in enumerate(column):
                if v is not None:
                    total[i] += weight * v
            components[name] = column
        return RewardResult(total, components, errors, timeouts, time.perf_counter() - t0,
                            self._judge_delta())

    def _judge_delta(self) -> dict[str, float]:
        """Judge calls since the previous batch, from the judge reward's own counters."""
        out: dict[str, float] = {}
        for rs in self.sets.values():
            fn = rs.rewards[0].fn
            if isinstance(fn, JudgeReward):
                st = fn.stats()
                now = {"calls": float(st["items"]), "failures": float(st["failures"]),
                       "latency_s": st["mean_latency_s"] * st["items"]}
                before = self._judge_seen
                out = {k: now[k] - before.get(k, 0.0) for k in now}
                self._judge_seen = now
        return out

    def _score_reward(
        self, rs: RewardSet, completions: list[str], targets: list[Target]
    ) -> tuple[list[float | None], int, int]:
        """One reward's column, its error count and its timeout count."""
        name = rs.specs[0].name
        rew = rs.rewards[0]
        idx = [i for i, t in enumerate(targets) if rew.applies(t.kind)]
        column: list[float | None] = [None] * len(completions)
        if not idx:
            return column, 0, 0
        try:
            res = self._run(rs, completions, targets)
        except Exception as e:  # the reward-worker boundary (STYLE rule 10): count, score 0
            return self._score_items(rs, completions, targets, idx, e)
        if res is None:
            for i in idx:
                column[i] = 0.0
            log.warning(
                "reward '%s' ran past %gs on %d completions; scored 0 (its thread is abandoned)",
                name, self.timeout_s, len(idx),
            )
            return column, 0, len(idx)
        return res.components[name], 0, 0

    def _score_items(
        self,
        rs: RewardSet,
        completions: list[str],
        targets: list[Target],
        idx: list[int],
        batch_error: Exception,
    ) -> tuple[list[float | None], int, int]:
        """Retry a failed batch one completion at a time: only the failing ones score 0."""
        name = rs.specs[0].name
        column: list[float | None] = [None] * len(completions)
        errors = timeouts = 0
        for k, i in enumerate(idx):
            try:
                res = self._run(rs, [completions[i]], [targets[i]])
            except Exception:  # same boundary; the batch's message is the one logged
                column[i] = 0.0
                errors += 1
                continue
            if res is None:
                # Hung on this completion: retrying the rest would cost timeout_s each.
                for j in idx[k:]:
                    column[j] = 0.0
                timeouts = len(idx) - k
                break
            column[i] = res.components[name][0]
        log.warning(
            "reward '%s' failed on a batch of %d completions (%s); retried one by one: "
            "%d scored 0 for errors, %d for timeouts",
            name, len(idx), batch_error, errors, timeouts,
        )
        return column, errors, timeouts

    def _run(
        self, rs: RewardSet, completions: list[str], targets: list[Target]
    ) -> ScoreResult | None:
        """`rs.score` in the worker thread: its result, None past the timeout, or its error."""
        assert self._pool is not None  # set by start(), checked in score()
        fut = self._pool.submit(rs.score, completions, targets)
        # wait() rather than result(timeout=...): a reward may raise TimeoutError itself.
        done, _ = cf.wait([fut], timeout=self.timeout_s)
        if not done:
            # The thread cannot be interrupted; later calls go to a fresh executor.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = _new_pool()
            return None
        return fut.result()


def _new_pool() -> cf.ThreadPoolExecutor:
    return cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="reward")


def split_even(n_items: int, n_workers: int) -> list[slice]:
    """`n_workers` consecutive slices covering `range(n_items)`, sizes differing by at most
    one (the first ones larger). With fewer items than workers the last slices are empty:
    one slice per worker, so a caller can zip them strictly and skip the empty ones.

    >>> split_even(5, 2)
    [slice(0, 3, None), slice(3, 5, None)]
    >>> split_even(1, 3)
    [slice(0, 1, None), slice(1, 1, None), slice(1, 1, None)]
    """
    if n_items < 0 or n_workers < 1:
        raise ValueError(f"need n_items >= 0 and n_workers >= 1, got {n_items}, {n_workers}")
    size, extra = divmod(n_items, n_workers)
    out = []
    start = 0
    for w in range(n_workers):
        stop = start + size + (1 if w < extra else 0)
        out.append(slice(start, stop))
        start = stop
    return out


def merge(results: Sequence[RewardResult]) -> RewardResult:
    """Join chunk results in order: lists concatenated, counters summed.

    `seconds` is the max over chunks, not the sum: the chunks ran in parallel, so the
    slowest one is how long the batch took.
    """
    if not results:
        raise ValueError("merge needs at least one result")
    names = list(results[0].components)
    for r in results[1:]:
        if list(r.components) != names:
            raise ValueError(f"results score different rewards: {names} vs {list(r.components)}")
    return RewardResult(
        total=[v for r in results for v in r.total],
        components={n: [v for r in results for v in r.components[n]] for n in names},
        errors={n: sum(r.errors[n] for r in results) for n in names},
        timeouts={n: sum(r.timeouts[n] for r in results) for n in names},
        seconds=max(r.seconds for r in results),
        judge={k: sum(r.judge.get(k, 0.0) for r in results)
               for k in sorted({k for r in results for k in r.judge})},
    )


RewardActor = ray.remote(RewardWorker)
