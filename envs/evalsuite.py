"""The fixed, versioned eval suite (`strl eval`).

Every task family, at 3, 5 and 10 nodes, in two domain splits:

* `id`: the seven in-distribution domains, the ones training draws from by default;
* `ood`: three domains held out from training (`OOD_DOMAINS`), so the eval suite measures
  transfer to quantities, units and dynamics the model never trained on (ecology's
  logistic growth among them).

A cell is (split, task, node count); its questions are samples 0, 1, 2, ... of a stream
whose seed is derived from the eval suite version and the cell, so the eval suite is a pure
function of `VERSION` and `per_cell`, and a smaller `per_cell` is a prefix of a larger one.
A task whose worlds need more nodes than asked (correlation needs 5) uses its minimum, and
cells that would repeat a node count are merged. `digest` hashes every prompt and answer:
two evaluations on the same eval suite have the same digest, and a test pins it, so a change
to the generator that alters the questions cannot pass silently: bump `VERSION` instead.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from envs.domains import DOMAIN_NAMES
from envs.sample import TASKS, Sample
from envs.stream import TaskMix, generate
from envs.tasks import EnvConfig, get_task

VERSION = "stb-4"
"""Name of the question set; bumped whenever a change to the generator changes it.

`stb-4` (2026-12): correlation's gold route no longer shows through the size of the
disturbance (pinned link gains: a relay shrinks it as much as a direct link) or through the
window (an arrival every route fits). `stb-3` is rebuilt exactly by strl at commit fcad13c.

`stb-3` (2026-12): adds the decision-making family `intervention` (which link to close
now, gold by re-simulation), and every task reads departures off the numbers its prompt
shows (rounded to the shown precision) rather than the unrounded series, so reference
rationales check out against the prompt at any precision. `stb-2` is rebuilt exactly by
strl at commit 99c7197.

`stb-2` (2026-12): root_cause, propagation and correlation ask for the candidate whose
departure and route lag line up, entity roles need the series and the graph, the graph
clause shows lags, and every question has exactly the configured number of options.
`stb-1` is retired: its graph questions were answerable from the graph alone (and some
from the text alone), so its scores did not measure the skill. Its questions are still
rebuilt exactly by strl at commit b5abf76 (`git checkout b5abf76 && strl eval ...`)."""
OOD_DOMAINS: tuple[str, ...] = ("ecology", "oceanography", "mobility")
"""Domains held out from training (the training default draws from `ID_DOMAINS` only)."""
ID_DOMAINS: tuple[str, ...] = tuple(d for d in DOMAIN_NAMES if d not in OOD_DOMAINS)
"""In-distribution domains."""
SPLITS: dict[str, tuple[str, ...]] = {"id": ID_DOMAINS, "ood": OOD_DOMAINS}
NODES: tuple[int, ...] = (3, 5, 10)
PER_CELL = 8
"""Questions per (split, task, node count) of the full eval suite."""
LENGTH = 48
"""Series length in steps (the shortest ST-Bench length: 10-node prompts stay short)."""
PRECISION = 2
"""Decimals of the inline numbers, as in ST-Bench."""


@dataclass(frozen=True)
class Cell:
    split: str
    task: str
    nodes: int

    @property
    def seed(self) -> int:
        """A stable seed of the cell (crc32 of its name; Python's hash() is salted)."""
        return zlib.crc32(f"{VERSION}/{self.split}/{self.task}/{self.nodes}".encode())

    def env(self) -> EnvConfig:
        return EnvConfig(nodes=(self.nodes,), lengths=(LENGTH,), precision=PRECISION,
                         domains=SPLITS[self.split])


@dataclass(frozen=True)
class Item:
    """One eval suite question: the sample and the cell it belongs to."""

    id: str
    cell: Cell
    sample: Sample


def cells(tasks: Sequence[str] = TASKS) -> list[Cell]:
    """The eval suite's cells, split-major, then task, then node count."""
    out = []
    for split in SPLITS:
        for task in tasks:
            need = get_task(task).nodes_needed(EnvConfig(nodes=NODES))
            for n in sorted({max(n, need) for n in NODES}):
                out.append(Cell(split, task, n))
    return out


def items(per_cell: int = PER_CELL, tasks: Sequence[str] = TASKS) -> list[Item]:
    """The eval suite questions (`per_cell` per cell; a prefix of any larger `per_cell`)."""
    if per_cell < 1:
        raise ValueError(f"per_cell must be >= 1, got {per_cell}")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"the eval suite has no task {', '.join(unknown)}; its tasks: "
                         f"{', '.join(TASKS)}")
    out = []
    for c in cells(tasks):
        for k, s in enumerate(generate(c.seed, range(per_cell), TaskMix.of([c.task]), c.env())):
            out.append(Item(f"{VERSION}/{c.split}/{c.task}/n{c.nodes}/{k}", c, s))
    return out


def digest(questions: Sequence[Item]) -> str:
    """sha256 over every question's id, prompt and gold answer (first 16 hex digits)."""
    h = hashlib.sha256()
    for q in questions:
        for part in (q.id, q.sample.prompt(), q.sample.answer):
            h.update(part.encode())
            h.update(b"\0")
    return h.hexdigest()[:16]
