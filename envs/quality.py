"""Quality audit of generated questions: are they answerable, and are they leak-free?

For every multiple-choice task it measures, over many samples:
- `oracle`: the task's solver reading only the prompt (series, graph, question, options);
- `graph_free`: the same solver on the prompt without its graph clause;
- shortcut baselines that read only the options: the best always-the-same letter, the
  longest option, the option sharing most words with the question;
- `chance`: the mean of 1/len(options), and `letter_skew`: the largest deviation of any
  gold letter's frequency from uniform.

Bounds (checked by tests, printed by `strl quality`): oracle >= 0.95; every shortcut within
0.10 of chance; graph_free within 0.10 of chance for tasks with `needs_graph`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from envs.prompt import parse_prompt
from envs.sample import Sample
from envs.stream import TaskMix, generate
from envs.tasks import EnvConfig, get_task

ORACLE_MIN = 0.95
SHORTCUT_MAX_GAP = 0.10
_WORD = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True)
class TaskQuality:
    task: str
    n: int
    needs_graph: bool
    oracle: float
    graph_free: float
    same_letter: float
    longest: float
    most_similar: float
    chance: float
    letter_skew: float

    def problems(self) -> list[str]:
        """Bounds this task breaks, as readable lines (empty when all hold)."""
        out = []
        if self.oracle < ORACLE_MIN:
            out.append(f"{self.task}: oracle {self.oracle:.3f} < {ORACLE_MIN}")
        shortcuts = {"same_letter": self.same_letter, "longest": self.longest,
                     "most_similar": self.most_similar}
        if self.needs_graph:
            shortcuts["graph_free"] = self.graph_free
        for name, acc in shortcuts.items():
            if acc - self.chance > SHORTCUT_MAX_GAP:
                out.append(f"{self.task}: {name} {acc:.3f} is more than "
                           f"{SHORTCUT_MAX_GAP:.2f} above chance {self.chance:.3f}")
        return out


def _similar(question: str, options: list[str]) -> int:
    q = set(_WORD.findall(question.lower()))
    scores = [len(q & set(_WORD.findall(o.lower()))) / max(1, len(set(_WORD.findall(o.lower()))))
              for o in options]
    return int(np.argmax(scores))


def audit_samples(samples: Sequence[Sample]) -> TaskQuality:
    """Quality figures for samples of one multiple-choice task."""
    if not samples:
        raise ValueError("audit_samples needs at least one sample")
    task = get_task(samples[0].task)
    if task.kind != "choice":
        raise ValueError(f"task '{task.name}' is not multiple choice")
    gold = np.array([ord(s.answer) - 65 for s in samples])
    n_opt = np.array([len(s.options) for s in samples])
    oracle = np.array([task.solve(parse_prompt(s.prompt())) for s in samples])
    free = np.array([task.solve(parse_prompt(s.prompt_no_graph)) for s in samples])
    longest = np.array([int(np.argmax([len(o) for o in s.options])) for s in samples])
    similar = np.array([_similar(s.question, s.options) for s in samples])
    letters = range(int(n_opt.max()))
    same = max(float(np.mean(gold == k)) for k in letters)
    # Only option counts seen often enough for a frequency to mean something.
    skew = max((abs(float(np.mean(gold[n_opt == m] == k)) - 1 / m)
                for m in np.unique(n_opt) for k in range(m) if (n_opt == m).sum() >= 50),
               default=0.0)
    return TaskQuality(
        task=task.name, n=len(samples), needs_graph=task.needs_graph,
        oracle=float(np.mean(oracle == gold)), graph_free=float(np.mean(free == gold)),
        same_letter=same, longest=float(np.mean(longest == gold)),
        most_similar=float(np.mean(similar == gold)), chance=float(np.mean(1 / n_opt)),
        letter_skew=skew,
    )


def audit(tasks: Sequence[str], n: int, seed: int = 0,
          cfg: EnvConfig | None = None) -> list[TaskQuality]:
    """Generate n samples per multiple-choice task and audit them."""
    cfg = cfg or EnvConfig()
    out = []
    for name in tasks:
        if get_task(name).kind != "choice":
            continue
        out.append(audit_samples(generate(seed, range(n), TaskMix.of([name]), cfg)))
    return out


def format_table(rows: Sequence[TaskQuality]) -> str:
    cols = ["task", "n", "oracle", "graph_free", "same_letter", "longest", "most_similar",
            "chance", "letter_skew"]
    lines = [" | ".join(cols), " | ".join("---" for _ in cols)]
    for r in rows:
        d = asdict(r)
        lines.append(" | ".join(
            f"{d[c]:.3f}" if isinstance(d[c], float) else
            (f"{d[c]}{' (needs graph)' if c == 'task' and r.needs_graph else ''}")
            for c in cols))
    return "\n".join(lines)
