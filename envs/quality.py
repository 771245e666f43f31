"""Quality audit of generated questions: answerable from the prompt, and only from the
inputs each task declares it needs.

For every multiple-choice task and difficulty setting it measures, on a test stream:
- `oracle`: the task's solver reading only the prompt (series, graph, question, options);
- `graph_free`: the same solver on the prompt without its graph clause;
- the shortcut baselines of `envs.baselines`, one figure per view: `graph` (the best
  solver that sees no series), `series` (the best that sees no graph), `text` (the best
  that sees neither), and `learned_text` (the text-only classifier alone). Learned
  solvers are trained on a second stream of the same setting (seed + 1) and scored on
  the test stream (seed), so they measure what a model could pick up from training data;
- `chance` = 1 / n_options (always the configured count) and `letter_skew`, the largest
  deviation of a gold letter's frequency from uniform.

Perception tasks (ST-Align, `Task.perception`) are exempt from the both-inputs rule and
audited apart, per skill (`audit_perception`): the oracle reading the prompt alone, and
`prior`, the skill's most common answer on the training stream (what a model that reads
nothing scores).

Bounds (checked by tests at 2000 samples per task and setting, printed by `strl
quality`): oracle >= 0.95; every solver deprived of an input the task needs within 0.10
of chance (the graph-only solvers for tasks that need the series, the series-only ones
and the graph-free oracle for tasks that need the graph); text-only solvers within 0.10
of chance for every task.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from envs.baselines import attack
from envs.prompt import parse_prompt
from envs.sample import Sample
from envs.stream import TaskMix, generate
from envs.tasks import EnvConfig, get_task
from envs.values import same_value

ORACLE_MIN = 0.95
SHORTCUT_MAX_GAP = 0.10

SETTINGS: dict[str, EnvConfig] = {
    "default": EnvConfig(),
    "tiny": EnvConfig(nodes=(3,), lengths=(36,), n_options=3, precision=0, horizons=(3,),
                      domains=("transportation", "pollution", "agriculture", "climate")),
    "suite": EnvConfig(nodes=(3, 5, 10), lengths=(48,)),
    "hard": EnvConfig(nodes=(10,), lengths=(168,), n_options=5),
}
"""The supported difficulty settings: the env default, the tiny preset's (`configs/
tiny_cpu.yaml`, checked by a test), the eval suite's shape and a large, long, 5-option one."""


@dataclass(frozen=True)
class TaskQuality:
    task: str
    setting: str
    n: int
    needs: tuple[str, ...]
    chance: float
    oracle: float
    graph_free: float
    graph: float
    series: float
    text: float
    learned_text: float
    letter_skew: float
    baselines: dict[str, float] = field(default_factory=dict)
    """Every baseline's accuracy, "view:name" -> accuracy."""

    def limits(self) -> dict[str, float]:
        """The figures that must stay within SHORTCUT_MAX_GAP of chance for this task."""
        out = {"text": self.text, "learned_text": self.learned_text}
        if "series" in self.needs:
            out["graph"] = self.graph
        if "graph" in self.needs:
            out["series"] = self.series
            out["graph_free"] = self.graph_free
        return out

    def problems(self) -> list[str]:
        """Bounds this task breaks, as readable lines (empty when all hold)."""
        where = f"{self.task} [{self.setting}]"
        out = []
        if self.oracle < ORACLE_MIN:
            out.append(f"{where}: oracle {self.oracle:.3f} < {ORACLE_MIN}")
        for name, acc in self.limits().items():
            if acc - self.chance > SHORTCUT_MAX_GAP:
                best = max((k for k in self.baselines if k.startswith(name + ":")),
                           key=self.baselines.get, default=name)
                out.append(f"{where}: {name}-only {acc:.3f} ({best}) is more than "
                           f"{SHORTCUT_MAX_GAP:.2f} above chance {self.chance:.3f}")
        return out

    def as_dict(self) -> dict:
        return asdict(self)


def _oracle(samples: Sequence[Sample], with_graph: bool) -> np.ndarray:
    task = get_task(samples[0].task)
    return np.array([task.solve(parse_prompt(s.prompt(with_graph=with_graph)))
                     for s in samples])


def audit_samples(train: Sequence[Sample], test: Sequence[Sample],
                  setting: str = "custom") -> TaskQuality:
    """Quality figures of one multiple-choice task: learned baselines fit on `train`,
    everything scored on `test`."""
    if not test or not train:
        raise ValueError("audit_samples needs train and test samples")
    task = get_task(test[0].task)
    if task.kind != "choice":
        raise ValueError(f"task '{task.name}' is not multiple choice")
    gold = np.array([ord(s.answer) - 65 for s in test])
    n_opt = np.array([len(s.options) for s in test])
    skew = max((abs(float(np.mean(gold[n_opt == m] == k)) - 1 / m)
                for m in np.unique(n_opt) for k in range(m) if (n_opt == m).sum() >= 50),
               default=0.0)
    found = attack(train, test)
    return TaskQuality(
        task=task.name, setting=setting, n=len(test), needs=tuple(task.needs),
        chance=float(np.mean(1 / n_opt)),
        oracle=float(np.mean(_oracle(test, True) == gold)),
        graph_free=float(np.mean(_oracle(test, False) == gold)),
        graph=found["graph"], series=found["series"], text=found["text"],
        learned_text=found["text:learned"], letter_skew=skew,
        baselines={k: v for k, v in found.items() if ":" in k},
    )


def audit(tasks: Sequence[str], n: int, seed: int = 0, cfg: EnvConfig | None = None,
          setting: str = "custom") -> list[TaskQuality]:
    """Audit n test samples (stream `seed`) per multiple-choice task, learned baselines
    trained on n samples of stream `seed + 1`."""
    cfg = cfg or EnvConfig()
    out = []
    for name in tasks:
        if get_task(name).kind != "choice":
            continue
        mix = TaskMix.of([name])
        out.append(audit_samples(generate(seed + 1, range(n), mix, cfg),
                                 generate(seed, range(n), mix, cfg), setting))
    return out


@dataclass(frozen=True)
class SkillQuality:
    """One skill of a perception task: its questions' oracle and prior accuracy."""

    task: str
    setting: str
    skill: str
    n: int
    oracle: float
    prior: float
    domain_prior: float
    """The most common gold of the skill in the domain the question names: a text-only
    solver. Above the prior by more than `SHORTCUT_MAX_GAP`, the text tells the answer."""

    def problems(self) -> list[str]:
        out = []
        if self.oracle < ORACLE_MIN:
            out.append(f"{self.task}/{self.skill} [{self.setting}]: oracle {self.oracle:.3f} "
                       f"< {ORACLE_MIN}")
        if self.domain_prior - self.prior > SHORTCUT_MAX_GAP:
            out.append(f"{self.task}/{self.skill} [{self.setting}]: the domain tells the "
                       f"answer ({self.domain_prior:.3f} against the prior {self.prior:.3f})")
        return out

    def as_dict(self) -> dict:
        return asdict(self)


def audit_perception(task: str, n: int, seed: int = 0, cfg: EnvConfig | None = None,
                     setting: str = "custom") -> list[SkillQuality]:
    """Per skill of a perception task: the oracle on n questions of stream `seed`, the
    prior (each skill's most common gold on n questions of stream `seed + 1`) and the
    domain prior (its most common gold in each domain there)."""
    cfg, t = cfg or EnvConfig(), get_task(task)
    mix = TaskMix.of([task])
    train, test = generate(seed + 1, range(n), mix, cfg), generate(seed, range(n), mix, cfg)
    common: dict[tuple[str, str | None], Counter] = {}
    for s in train:
        for key in ((s.meta["skill"], None), (s.meta["skill"], s.meta["domain"])):
            common.setdefault(key, Counter())[s.answer] += 1

    def guess(key: tuple[str, str | None]) -> str:
        return common[key].most_common(1)[0][0] if key in common else ""

    by_skill: dict[str, list[tuple[bool, bool, bool]]] = {}
    for s in test:
        skill = s.meta["skill"]
        said = t.read(parse_prompt(s.prompt()), s.meta)
        by_skill.setdefault(skill, []).append(tuple(
            same_value(x, s.answer, s.tolerance)
            for x in (said, guess((skill, None)), guess((skill, s.meta["domain"])))))
    return [SkillQuality(task, setting, k, len(v),
                         *(float(np.mean([x[j] for x in v])) for j in range(3)))
            for k, v in sorted(by_skill.items())]


def format_perception(rows: Sequence[SkillQuality]) -> str:
    """A markdown table of perception skills; an oracle under its bound is marked `!`."""
    lines = ["setting | task | skill | n | oracle | prior | domain prior",
             " | ".join(["---"] * 7)]
    lines += [f"{r.setting} | {r.task} | {r.skill} | {r.n} | {r.oracle:.3f}"
              f"{'!' if r.oracle < ORACLE_MIN else ''} | {r.prior:.3f} | {r.domain_prior:.3f}"
              f"{'!' if r.domain_prior - r.prior > SHORTCUT_MAX_GAP else ''}" for r in rows]
    return "\n".join(lines)


COLUMNS = ("setting", "task", "needs", "n", "chance", "oracle", "graph_free", "graph",
           "series", "text", "learned_text", "letter_skew")


def format_table(rows: Sequence[TaskQuality]) -> str:
    """A markdown table; a figure that breaks its bound is marked with `!`."""
    lines = [" | ".join(COLUMNS), " | ".join("---" for _ in COLUMNS)]
    for r in rows:
        d, bad = asdict(r), {k for k, v in r.limits().items() if v - r.chance > SHORTCUT_MAX_GAP}
        if r.oracle < ORACLE_MIN:
            bad.add("oracle")
        cells = []
        for c in COLUMNS:
            v = d[c]
            text = ("+".join(v) if isinstance(v, tuple | list) else
                    f"{v:.3f}" if isinstance(v, float) else str(v))
            cells.append(text + ("!" if c in bad else ""))
        lines.append(" | ".join(cells))
    return "\n".join(lines)
