"""Rollout rounds in flight: what asynchronous GRPO (`algorithm.max_staleness` >= 1) keeps
between steps, and how a checkpoint keeps it.

A `Round` is one generation call of a GRPO step: its prompts, the engines' calls (with and,
under S-GRPO, without the graph), and the policy version of the weights that generate it.
With `max_staleness` k the loop launches the rounds of steps s+1 .. s+k before it trains step
s, so the engines sample while the learners train. The engines run their calls in order, so
a round launched after the weight sync of version v is sampled by version v: that is the
version its samples carry, and a batch trained at version u has staleness u - v <= k.

A round in flight when the run saves a checkpoint is finished first and written into the
checkpoint (`rounds.json`): its samples came from weights the checkpoint no longer holds, and
a resumed run trains on them exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from actors.reward import RewardResult
from actors.rollout import Completion
from rlsys.train.data import Prompt

ROUNDS_FILE = "rounds.json"


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
    version: int = 0  # policy version of the weights that sampled them


@dataclass
class Round:
    """One generation round launched on the engines (or already gathered)."""

    step: int  # the GRPO step it is for
    index: int  # 0 for the step's batch, 1, 2, ... for dynamic sampling's top-ups
    version: int  # policy version of the weights that sample it
    prompts: list[Prompt]
    calls: list[Any] = field(default_factory=list)  # Ray refs of the engines' calls
    free_calls: list[Any] = field(default_factory=list)  # S-GRPO: without the graph
    groups: list[list[Completion]] | None = None  # gathered completions, per prompt
    free: list[list[Completion]] | None = None

    @property
    def gathered(self) -> bool:
        return self.groups is not None

    def to_dict(self) -> dict[str, Any]:
        """A gathered round as plain data (a checkpoint's `rounds.json`)."""
        if not self.gathered:
            raise ValueError(f"round of step {self.step} is still in flight: gather it first")
        return {"step": self.step, "index": self.index, "version": self.version,
                "prompts": [asdict(p) for p in self.prompts],
                "groups": [[asdict(c) for c in g] for g in self.groups or []],
                "free": None if self.free is None else [[asdict(c) for c in g]
                                                         for g in self.free]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Round:
        def comps(gs: list | None) -> list[list[Completion]] | None:
            return None if gs is None else [[Completion(**c) for c in g] for g in gs]
        return cls(d["step"], d["index"], d["version"], [Prompt(**p) for p in d["prompts"]],
                   groups=comps(d["groups"]), free=comps(d["free"]))


def dumps(rounds: list[Round]) -> str:
    return json.dumps([r.to_dict() for r in rounds])


def loads(text: str) -> list[Round]:
    return [Round.from_dict(d) for d in json.loads(text)]


def staleness_metrics(ages: list[int], k: int) -> dict[str, float]:
    """The staleness histogram of a step's trained samples (`staleness/<age>`: the share of
    samples `age` versions old, 0..k), its mean and max.

    >>> staleness_metrics([0, 1, 1, 1], k=1)
    {'staleness/mean': 0.75, 'staleness/max': 1.0, 'staleness/0': 0.25, 'staleness/1': 0.75}
    """
    if not ages:
        return {}
    out = {"staleness/mean": sum(ages) / len(ages), "staleness/max": float(max(ages))}
    out.update({f"staleness/{a}": ages.count(a) / len(ages) for a in range(k + 1)})
    return out


def rollout_metrics(seen: list[Group], more: list[RewardResult]) -> dict[str, float]:
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
           "generated_tokens": float(sum(lengths)), "completions": float(len(lengths))}
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
    out.update({f"reward/{k}": float(np.mean(v)) for k, v in comps.items() if v})
    out.update({f"acc/{k}": float(np.mean(v)) for k, v in acc.items() if v})
    return out


def compared(res: RewardResult, component: str | None, sl: slice) -> list[float]:
    """The rewards S-GRPO compares: the weighted total, or one reward's values (0 where it
    does not apply)."""
    if component is None:
        return res.total[sl]
    return [v or 0.0 for v in res.components[component][sl]]
