"""The sample stream: an endless, deterministic supply of questions for a task mix.

Sample `index` of stream `seed` is a pure function of (seed, index, task mix, config):
its task comes from `default_rng([seed, index, 0])`, everything else from
`default_rng([seed, index, 1])`. So training can resume at any index, `strl show` can
rebuild any sample, and generation can be batched and split across workers freely.
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


@dataclass(frozen=True)
class TaskMix:
    """Task names and their sampling weights."""

    names: tuple[str, ...]
    weights: tuple[float, ...]

    @classmethod
    def of(cls, tasks: Sequence[str] | Mapping[str, float] | str) -> TaskMix:
        """From a list of names, a {name: weight} mapping, or "a,b,c" / "all"."""
        if isinstance(tasks, str):
            tasks = (list(TASK_REGISTRY) if tasks.strip() == "all"
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
    todo = {i: (get_task(tasks.pick(seed, i)), np.random.default_rng([seed, i, 1]))
            for i in indices}
    done: dict[int, Sample] = {}
    for _ in range(MAX_ATTEMPTS):
        if not todo:
            break
        # `design` restarts every attempt: see envs.tasks.common on why.
        drafts = {i: task.plan(rng, cfg, np.random.default_rng([seed, i, 2]))
                  for i, (task, rng) in todo.items()}
        by_len: dict[int, list[int]] = {}
        for i, d in drafts.items():
            by_len.setdefault(d.world.length, []).append(i)
        for group in by_len.values():
            arrays = [drafts[i].world.arrays for i in group]
            for i, ys in zip(group, split(simulate(arrays), arrays), strict=True):
                task, rng = todo[i]
                w = drafts[i].world
                noisy, clean = ys[0] * w.levels[:, None], ys[1] * w.levels[:, None]
                parts = task.finish(rng, cfg, drafts[i], noisy, clean)
                if parts is not None:
                    done[i] = _assemble(seed, i, task, drafts[i].world, parts, noisy, cfg)
                    del todo[i]
    if todo:
        i, (task, _) = next(iter(todo.items()))
        raise RuntimeError(
            f"could not build a '{task.name}' sample for seed {seed} index {i} in "
            f"{MAX_ATTEMPTS} attempts; widen the config (more nodes, longer series, fewer "
            f"options) — config: {cfg}")
    return [done[i] for i in indices]


def _assemble(seed: int, index: int, task: Task, w, parts, noisy: np.ndarray,
              cfg: EnvConfig) -> Sample:
    hist = parts.history or w.length
    shown = np.empty((w.n, hist))
    shown[w.labels] = noisy[:, :hist]
    ev = w.events
    meta = {
        "domain": w.domain.name, "unit": w.domain.unit, "quantity": w.domain.quantity,
        "sampling_minutes": w.domain.sampling_minutes,
        "node_names": [w.node_names[i] for i in np.argsort(w.labels)],
        "events": [{"nodes": sorted(w.label(i) for i in e.nodes), "t0": e.t0,
                    "duration": e.duration, "amp": round(e.amp, 4)} for e in ev],
        **parts.meta,
    }
    if task.kind == "choice":
        answer = "ABCDEF"[parts.gold]
    else:
        answer = parts.answer
    edges = sorted((w.label(u), w.label(v), w.lags[(u, v)]) for u, v in w.edges)
    return Sample(
        id=f"{seed}-{index}-{task.name}", task=task.name, kind=task.kind, seed=seed, index=index,
        series=np.round(shown, cfg.precision), edges=edges, question=parts.question,
        options=parts.options, answer=answer, rationale=parts.rationale,
        horizon=parts.horizon, scale=parts.scale, inline=cfg.inline,
        precision=cfg.precision, meta=meta,
    )


class SampleStream:
    """Endless iterator over samples `start, start + 1, ...` of a seed and task mix."""

    def __init__(self, seed: int, tasks: Sequence[str] | Mapping[str, float] | str,
                 cfg: EnvConfig | None = None, start: int = 0, batch: int = 64) -> None:
        self.seed, self.mix, self.cfg = seed, TaskMix.of(tasks), cfg or EnvConfig()
        self.position, self.batch = start, batch

    def __iter__(self) -> Iterator[Sample]:
        while True:
            chunk = generate(self.seed, range(self.position, self.position + self.batch),
                             self.mix, self.cfg)
            for s in chunk:
                self.position = s.index + 1
                yield s

    def take(self, n: int) -> list[Sample]:
        """The next n samples (advances the position)."""
        out = generate(self.seed, range(self.position, self.position + n), self.mix, self.cfg)
        self.position += n
        return out

    def sample(self, index: int) -> Sample:
        """Rebuild one sample of this stream without moving the position."""
        return generate(self.seed, [index], self.mix, self.cfg)[0]
