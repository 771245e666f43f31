"""What every task family shares: the difficulty knobs, the two-phase task protocol, and
small helpers for worlds, option shuffling and rationale text.

A task is built in two phases so that simulation can be batched across samples:
`plan(rng, cfg)` draws a world (graph, events, parameters, noise) from the sample's own
generator; the stream simulates many planned worlds at once; `finish(...)` reads the
noisy series (rounded to `cfg.precision`: the very numbers the prompt shows, so the
gold and the rationale agree with what a reader can check) and the noise-free twin,
checks that the question is answerable from what the prompt shows, and writes question,
options, gold answer and rationale. If a check
fails, `finish` returns None and the stream plans again, so a sample is still a pure
function of (seed, index).

`plan` gets two generators: `rng` moves on with every attempt (a new world each time),
`design` restarts at every attempt (the same question design each time). Option sets and
the gold option come from `design`: if they were redrawn on retry, designs that are easier
to realise would win more often and the gold's position or length would leak.

Multiple-choice option sets are drawn *before* the gold answer, and the world is then
built to make one option true: nothing about the options alone can point to the gold
one. For tasks that need both inputs (`needs`), every option is consistent with the graph
alone and with the series alone, and only their combination singles out the gold (see
`envs.tasks.graphq` on the timing alignment; `strl quality` measures the shortcuts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from envs.detect import Departures, baseline_len
from envs.domains import DOMAIN_NAMES, DOMAINS, Domain
from envs.prompt import ParsedPrompt
from envs.world import Event, World, draw_world, random_dag


@dataclass(frozen=True)
class EnvConfig:
    """Difficulty knobs of generated samples."""

    nodes: tuple[int, ...] = (3, 5, 10)
    """Node counts to draw from (a task with a higher minimum uses its minimum)."""
    lengths: tuple[int, ...] = (48, 96, 168)
    """Series lengths in steps to draw from."""
    noise: float = 1.0
    """Multiplier on the diffusion sigma (1.0: 0.2-0.6% of the baseline per step)."""
    n_options: int = 4
    """Options per multiple-choice question (2-6)."""
    hardness: float = 0.5
    """Probability of hard distractors (same mechanism, other nodes) where a task has them."""
    horizons: tuple[int, ...] = (3, 6, 12)
    """Forecast horizons to draw from."""
    precision: int = 2
    """Decimals of inline numbers."""
    inline: bool = True
    """Numbers inline in the prompt (text models) or `<ts><ts/>` placeholders (ST-Test)."""
    domains: tuple[str, ...] = DOMAIN_NAMES
    """Domains to draw worlds from."""

    def __post_init__(self) -> None:
        for name in ("nodes", "lengths", "horizons", "domains"):
            if not getattr(self, name):
                raise ValueError(f"EnvConfig.{name} is empty; give at least one value")
        if not 2 <= self.n_options <= 6:
            raise ValueError(f"n_options must be in 2..6, got {self.n_options}")
        if min(self.nodes) < 3:
            raise ValueError(f"node counts must be >= 3, got {self.nodes}")
        if min(self.lengths) < 36:
            raise ValueError(f"series lengths must be >= 36 steps, got {self.lengths}")
        if min(self.horizons) < 1:
            raise ValueError(f"horizons must be >= 1, got {self.horizons}")
        unknown = set(self.domains) - set(DOMAINS)
        if unknown:
            raise ValueError(f"unknown domains {sorted(unknown)}; known: {list(DOMAIN_NAMES)}")
        if not 0.0 <= self.hardness <= 1.0:
            raise ValueError(f"hardness must be in [0, 1], got {self.hardness}")


@dataclass
class Draft:
    """A planned world plus the task's own notes for `finish`."""

    world: World
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Parts:
    """What `finish` writes: question text, options and gold, rationale, extras."""

    question: str
    rationale: str
    options: list[str] = field(default_factory=list)
    gold: int = -1  # index into options for multiple choice
    answer: str = ""  # for sequence and text tasks
    horizon: int = 0
    scale: float = 1.0
    history: int = 0  # steps of the series shown (forecasting shows only the past)
    tolerance: float = 0.0  # how far a numeric value answer may be off (value tasks)
    only: int | None = None  # show this one node alone (as Node 0, no graph), not the world
    meta: dict[str, Any] = field(default_factory=dict)


class Task:
    """Base class of a task family; subclasses set the class attributes."""

    name: ClassVar[str]
    kind: ClassVar[str] = "choice"
    needs: ClassVar[tuple[str, ...]] = ("series",)
    """The inputs the answer needs: "series", "graph" or both. A solver deprived of any of
    them stays within 10 points of chance (`strl quality` measures it; tests check it)."""
    min_nodes: ClassVar[int] = 3
    perception: ClassVar[bool] = False
    """An atomic perception question (ST-Align: read one series, one link, one sum):
    exempt from the both-inputs rule, listed apart by `strl quality`, never part of the
    eval suite's reasoning score, and not in the "all" task mix."""

    @property
    def needs_graph(self) -> bool:
        return "graph" in self.needs

    def nodes_needed(self, cfg: EnvConfig) -> int:
        """Fewest nodes a world of this task needs under `cfg` (more options can need more)."""
        return self.min_nodes

    def plan(self, rng: np.random.Generator, cfg: EnvConfig,
             design: np.random.Generator) -> Draft:
        raise NotImplementedError

    def finish(self, rng: np.random.Generator, cfg: EnvConfig, draft: Draft,
               noisy: np.ndarray, clean: np.ndarray) -> Parts | None:
        raise NotImplementedError

    def solve(self, p: ParsedPrompt) -> int:
        """Oracle: the option index implied by the prompt alone (graph-free if no edges)."""
        raise NotImplementedError

    def read(self, p: ParsedPrompt, meta: dict[str, Any]) -> str:
        """Oracle of a value task: the answer implied by the prompt alone (`meta` says
        which kind of question it is, e.g. the align skill)."""
        raise NotImplementedError


# ---- world helpers -----------------------------------------------------------------

def pick_domain(rng: np.random.Generator, cfg: EnvConfig) -> Domain:
    return DOMAINS[cfg.domains[int(rng.integers(len(cfg.domains)))]]


def pick_size(rng: np.random.Generator, cfg: EnvConfig, min_nodes: int) -> tuple[int, int]:
    n = max(int(cfg.nodes[int(rng.integers(len(cfg.nodes)))]), min_nodes)
    t_len = int(cfg.lengths[int(rng.integers(len(cfg.lengths)))])
    return n, t_len


def n_sources(rng: np.random.Generator, n: int, lo: float = 0.3, hi: float = 0.5) -> int:
    return int(np.clip(round(n * rng.uniform(lo, hi)), 2, n - 1))


def event_timing(rng: np.random.Generator, t_len: int) -> tuple[int, int]:
    """(t0, duration) leaving the baseline window clean and room to propagate after."""
    lo = baseline_len(t_len) + 2
    hi = max(lo + 1, int(0.5 * t_len))
    return int(rng.integers(lo, hi)), int(rng.integers(8, 13))


def event_amp(rng: np.random.Generator, domain: Domain) -> float:
    return domain.event_sign * float(rng.uniform(0.35, 0.7))


def build(rng: np.random.Generator, cfg: EnvConfig, domain: Domain, n: int, t_len: int,
          m: int, fire: list[int] | str, lag_range: tuple[int, int] = (1, 3),
          edges: list[tuple[int, int]] | None = None) -> World:
    """Draw a world whose sources `fire` (a list, 'all' nodes, or 'none') share one event."""
    edges = random_dag(rng, n, m) if edges is None else edges
    t0, dur = event_timing(rng, t_len)
    amp = event_amp(rng, domain)
    nodes = tuple(range(n)) if fire == "all" else () if fire == "none" else tuple(fire)
    events = [Event(nodes, t0, dur, amp)] if nodes else []
    windows = None if events else [(t0 - 1, t0 + dur + 25)]
    return draw_world(rng, domain, n, t_len, edges, m, events, cfg.noise, lag_range, windows)


def shuffle(rng: np.random.Generator, options: list[str], gold: int) -> tuple[list[str], int]:
    """Shuffle options; return them with the gold's new index (uniform over positions)."""
    order = rng.permutation(len(options))
    return [options[i] for i in order], int(np.flatnonzero(order == gold)[0])


# ---- text helpers ------------------------------------------------------------------

def nd(w: World, i: int) -> str:
    return f"Node {w.label(i)}"


def node_list(w: World, nodes: list[int] | tuple[int, ...]) -> str:
    names = [nd(w, i) for i in sorted(nodes, key=w.label)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def agree(nodes: list[int] | tuple[int, ...], one: str, many: str) -> str:
    """`one` for a single node, `many` for several ('departs' / 'depart')."""
    return one if len(nodes) == 1 else many


def context(w: World) -> str:
    d = w.domain
    return (f"The network measures {d.quantity} ({d.unit}) at {w.n} sites; "
            f"1 time step = {d.step_text}.")


def departure_text(w: World, dep: Departures, i: int) -> str:
    """'Node 3 leaves its baseline of 412.5 at step 61 (peak +41%)'."""
    sign = "+" if dep.sign[i] >= 0 else "-"
    return (f"{nd(w, i)} leaves its baseline of {dep.baseline[i]:.4g} at step {dep.onset[i]} "
            f"(peak {sign}{100 * dep.peak[i]:.0f}%)")
