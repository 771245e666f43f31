"""`Sample`: one generated question with everything training, scoring and serving need."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import networkx as nx
import numpy as np

from envs.prompt import build_prompt, format_options, format_series
from envs.world import BASE_WEIGHT

TASKS: tuple[str, ...] = (
    "etiological",
    "entity",
    "correlation",
    "root_cause",
    "propagation",
    "forecasting",
    "path_description",
    "intervention",
)
"""The built-in reasoning tasks: "all", and the eval suite's tasks."""
PERCEPTION: tuple[str, ...] = ("align", "align_node")
"""The built-in perception families (ST-Align): asked for by name, never in "all"."""


@dataclass
class Sample:
    """A question built from one simulated world; rebuilt exactly from (seed, index)."""

    id: str
    task: str
    kind: str  # "choice" | "sequence" | "text" | "value"
    seed: int
    index: int
    series: np.ndarray  # (N, T) shown-label order, rounded to the prompt precision
    edges: list[tuple[int, int, int]]  # (from, to, lag) in shown labels
    question: str  # question text without options
    options: list[str]
    answer: str  # a letter, a JSON list, or a reference text
    rationale: str  # correct step-by-step reasoning ending in the answer
    horizon: int = 0
    scale: float = 1.0  # mean |history| of the forecast node (normalised MAE)
    tolerance: float = 0.0  # how far a numeric value answer may be off (value tasks)
    inline: bool = True
    precision: int = 2
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def full_question(self) -> str:
        return f"{self.question} {format_options(self.options)}" if self.options else self.question

    @cached_property
    def series_text(self) -> list[str]:
        """Each node's numbers as written inline (formatted once per sample)."""
        return [format_series(r, self.precision) for r in self.series]

    def prompt(self, with_graph: bool = True, inline: bool | None = None) -> str:
        """The STReasoner-shaped prompt (with or without the graph clause; a sample of one
        node alone has none)."""
        inline = self.inline if inline is None else inline
        return build_prompt(
            self.series,
            self.edges,
            self.full_question,
            inline=inline,
            precision=self.precision,
            with_graph=with_graph and bool(self.edges),
            bodies=self.series_text if inline else None,
        )

    def graph(self) -> nx.DiGraph:
        """The graph in shown labels: node names as attributes, lag and base weight on edges."""
        g = nx.DiGraph()
        for i, name in enumerate(self.meta.get("node_names", [])):
            g.add_node(i, name=name)
        g.add_nodes_from(range(self.series.shape[0]))
        g.add_edges_from((u, v, {"lag": lag, "weight": BASE_WEIGHT}) for u, v, lag in self.edges)
        return g

    @property
    def prompt_no_graph(self) -> str:
        return self.prompt(with_graph=False)

    @property
    def completion(self) -> str:
        """The reference completion: rationale and answer in the trained format."""
        return f"<think>{self.rationale}</think><answer>{self.answer}</answer>"

    def to_record(self) -> dict[str, Any]:
        """A flat, JSON/Parquet-friendly row (the `strl generate` default format)."""
        return {
            "id": self.id,
            "task": self.task,
            "kind": self.kind,
            "seed": self.seed,
            "index": self.index,
            "prompt": self.prompt(),
            "prompt_no_graph": self.prompt_no_graph,
            "question": self.full_question,
            "options": list(self.options),
            "answer": self.answer,
            "horizon": self.horizon,
            "scale": self.scale,
            "tolerance": self.tolerance,
            "reference": self.answer if self.kind == "text" else self.rationale,
            "rationale": self.rationale,
            "completion": self.completion,
            "series": self.series.tolist(),
            "edges": [list(e) for e in self.edges],
            "meta": json.dumps(self.meta, sort_keys=True),
        }

    def to_streasoner(self) -> dict[str, Any]:
        """A row in the public ST-Test format: `<ts><ts/>` placeholders plus an array."""
        output = self.answer if self.kind == "sequence" else f"<answer>{self.answer}</answer>"
        return {
            "id": self.id,
            "input": self.prompt(inline=False),
            "timeseries": self.series.tolist(),
            "output": output,
            "category": self.task,
        }
