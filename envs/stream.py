"""The sample stream: an endless, deterministic supply of questions for a task mix.

Sample `index` of stream `seed` is a pure function of (seed, index, task mix, config):
its task comes from `default_rng([seed, index, 0])`, its world from
`default_rng([seed, index, 1])` and its question design from `default_rng([seed, index,
2])`. A design that no world realises within `MAX_ATTEMPTS` is redrawn: round r > 0 uses
`[seed, index, 1, r]` and `[seed, index, 2, r]`, so the fallback is still a pure function
of (seed, index), and the sample records `meta["redraws"] = r`. The stream never raises
on one unlucky design; only a config under which no design of a task can be built in
`MAX_ROUNDS` rounds is an error, named with the config. So training can resume at any
index, `strl show` can rebuild any sample, and generation can be batched and split
across workers freely.
Batching is only a speed-up: worlds are simulated together (see `envs.sde`) but never
influence each other.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from envs.sample import Sample
from envs.sde import simulate, split
from envs.tasks import TASK_REGISTRY, EnvConfig, Task, get_task

MAX_ATTEMPTS = 60
"""Worlds tried for one question design before the design is redrawn."""
MAX_ROUNDS = 20
"""Designs tried for one sample before the config is declared unbuildable."""


@dataclass(frozen=True)
class TaskMix:
    """Task names and their sampling weights."""

    names: tuple[str, ...]
    weights: tuple[float, ...]

    @classmethod
    def of(cls, tasks: Sequence[str] | Mapping[str, float] | str) -> TaskMix:
        """From a list of names, a {name: weight} mapping, or "a,b,c" / "all" (every
        reasoning task: perception families such as `align` are named explicitly)."""
        if isinstance(tasks, str):
            tasks = ([n for n, t in TASK_REGISTRY.items() if not t.perception]
                     if tasks.strip() == "all"
                     else [t.strip() for t in tasks.split(",") if t.strip()])
        if isinstance(tasks, Mapping):
            names, weights = tuple(tasks), tuple(float(w) for w in tasks.values())
        else:
            names, weights = tuple(tasks), (1.0,) * len(tasks)
        if not names:
            raise ValueError("the task mix is empty; name at least one task")
        for n in names:
            get_task(n)  # unknown names fail here, with the list of known ones
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"task weights must be >= 0 with a positive sum, got {weights}")
        return cls(names, weights)

    def pick(self, seed: int, index: int) -> str:
        p = np.asarray(self.weights) / sum(self.weights)
        u = np.random.default_rng([seed, index, 0]).random()
        return self.names[min(int(np.searchsorted(np.cumsum(p), u, side="right")),
                              len(self.names) - 1)]


def generate(seed: int, indices: Sequence[int], tasks: TaskMix,
             cfg: EnvConfig | None = None) -> list[Sample]:
    """Build the samples at `indices` (in order), simulating their worlds in batches."""
    cfg = cfg or EnvConfig()
    if seed < 0 or any(i < 0 for i in indices):
        raise ValueError("seed and indices must be non-negative integers")
    done: dict[int, Sample] = {}
    todo = list(dict.fromkeys(indices))
    for r in range(MAX_ROUNDS):
        todo = _attempt(seed, todo, tasks, cfg, r, done)
        if not todo:
            return [done[i] for i in indices]
    i = todo[0]
    raise RuntimeError(
        f"could not build a '{tasks.pick(seed, i)}' sample for seed {seed} index {i} in "
        f"{MAX_ROUNDS} designs of {MAX_ATTEMPTS} worlds each; widen the config (more "
        f"nodes, longer series, fewer options) — config: {cfg}")


def redrawn(samples: Sequence[Sample]) -> int:
    """How many of `samples` were built from a redrawn question design."""
    return sum(bool(s.meta.get("redraws")) for s in samples)


def _rngs(seed: int, index: int, r: int) -> tuple[np.random.Generator, list[int]]:
    """The world generator and the design seed of round r of a sample."""
    if r == 0:
        return np.random.default_rng([seed, index, 1]), [seed, index, 2]
    return np.random.default_rng([seed, index, 1, r]), [seed, index, 2, r]


def _attempt(seed: int, indices: list[int], tasks: TaskMix, cfg: EnvConfig, r: int,
             done: dict[int, Sample]) -> list[int]:
    """Round r of building `indices` into `done`; returns the indices still missing."""
    todo: dict[int, tuple[Task, np.random.Generator, list[int]]] = {}
    for i in indices:
        rng, design = _rngs(seed, i, r)
        todo[i] = (get_task(tasks.pick(seed, i)), rng, design)
    for _ in range(MAX_ATTEMPTS):
        if not todo:
            break
        # `design` restarts every attempt: see envs.tasks.common on why.
        drafts = {i: task.plan(rng, cfg, np.random.default_rng(design))
                  for i, (task, rng, design) in todo.items()}
        by_len: dict[int, list[int]] = {}
        for i, d in drafts.items():
            by_len.setdefault(d.world.length, []).append(i)
        for group in by_len.values():
            arrays = [drafts[i].world.arrays for i in group]
            for i, ys in zip(group, split(simulate(arrays), arrays), strict=True):
                task, rng, _ = todo[i]
                w = drafts[i].world
                # The data a task reads are the numbers its prompt will show.
                noisy = np.round(ys[0] * w.levels[:, None], cfg.precision)
                clean = ys[1] * w.levels[:, None]
                parts = task.finish(rng, cfg, drafts[i], noisy, clean)
                if parts is not None:
                    if r:
                        parts.meta["redraws"] = r
                    done[i] = _assemble(seed, i, task, drafts[i].world, parts, noisy, cfg)
                    del todo[i]
    return list(todo)


def _assemble(seed: int, index: int, task: Task, w, parts, noisy: np.ndarray,
              cfg: EnvConfig) -> Sample:
    hist = parts.history or w.length
    if parts.only is None:
        shown = np.empty((w.n, hist))
        shown[w.labels] = noisy[:, :hist]
        names = [w.node_names[i] for i in np.argsort(w.labels)]
        edges = sorted((w.label(u), w.label(v), w.lags[(u, v)]) for u, v in w.edges)
    else:  # one node alone: Node 0, no graph
        shown, names, edges = noisy[[parts.only], :hist], [w.node_names[parts.only]], []
    ev = w.events
    meta = {
        "domain": w.domain.name, "unit": w.domain.unit, "quantity": w.domain.quantity,
        "sampling_minutes": w.domain.sampling_minutes,
        "node_names": names,
        "events": [{"nodes": sorted(w.label(i) for i in e.nodes), "t0": e.t0,
                    "duration": e.duration, "amp": round(e.amp, 4)} for e in ev]
        if parts.only is None else [],
        **parts.meta,
    }
    answer = "ABCDEF"[parts.gold] if task.kind == "choice" else parts.answer
    return Sample(
        id=f"{seed}-{index}-{task.name}", task=task.name, kind=task.kind, seed=seed, index=index,
        series=np.round(shown, cfg.precision), edges=edges, question=parts.question,
        options=parts.options, answer=answer, rationale=parts.rationale,
        horizon=parts.horizon, scale=parts.scale, tolerance=parts.tolerance,
        inline=cfg.inline, precision=cfg.precision, meta=meta,
    )


class SampleStream:
    """Endless iterator over samples `start, start + 1, ...` of a seed and task mix."""

    def __init__(self, seed: int, tasks: Sequence[str] | Mapping[str, float] | str,
                 cfg: EnvConfig | None = None, start: int = 0, batch: int = 64) -> None:
        self.seed, self.mix, self.cfg = seed, TaskMix.of(tasks), cfg or EnvConfig()
        self.position, self.batch = start, batch
        self.redrawn = 0
        """Samples of this stream whose first question design had to be redrawn."""

    def __iter__(self) -> Iterator[Sample]:
        while True:
            chunk = generate(self.seed, range(self.position, self.position + self.batch),
                             self.mix, self.cfg)
            for s in chunk:
                self.position = s.index + 1
                self.redrawn += redrawn([s])
                yield s

    def take(self, n: int) -> list[Sample]:
        """The next n samples (advances the position)."""
        out = generate(self.seed, range(self.position, self.position + n), self.mix, self.cfg)
        self.position += n
        self.redrawn += redrawn(out)
        return out

    def sample(self, index: int) -> Sample:
        """Rebuild one sample of this stream without moving the position."""
        return generate(self.seed, [index], self.mix, self.cfg)[0]
