"""The token probe: where a policy's reasoning breaks, read off its teacher-forced greedy
predictions on held-out reference completions.

Each reference rationale is cut into spans of one kind, by the phrases the simulator writes
and the rationale checker reads:

| kind | what the token is | e.g. |
|---|---|---|
| `step` | a step read off a series (a departure, an onset, a peak) | "departs at step **15**" |
| `level` | a level or a move's size read off a series | "baseline of **52**", "peak **-42**%" |
| `lag` | a lag copied from the graph clause | "Node 0->Node 3 (lag **5**)" |
| `sum` | the result of an operation written with its operands | "22 + 5 = **27**" |
| `verdict` | a comparison's conclusion | "**too late**", "**matches**", "**before** it" |
| `option` | the option the think block concludes with | "option **A**" |
| `answer` | the answer tag's content: a copy of that option | "<answer>**A**</answer>" |
| `template` | everything else | "Node", " departs", "." |

The model is fed the prompt and the reference up to each token (teacher forcing) and its
argmax is compared with the reference's token there. A span is right when every one of its
tokens is; the table gives the share of right spans per kind (of tokens, for `template`).
For the ST-Align questions, the skill's decision (the first place the answer appears in the
reference: "Node 0 departs at step **15**.") is read as the model's greedy guess and scored
within the question's tolerance, per skill.

`strl probe CHECKPOINT [CHECKPOINT ...]` runs it on saved policies (a column each, with
`--plot` a curve of every share against the training sequences seen); a training run runs
it on its learner after every stage and puts the table in `report.md` and `summary.json`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envs.tasks.align import SERIES_SKILLS, label_order, skill_label
from envs.values import same_value
from rlsys.files import save_png

KINDS = ("step", "level", "lag", "sum", "verdict", "option", "answer", "template")
"""Kinds of rationale tokens, in table order."""

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("lag", re.compile(r"\(lag (\d+)\)")),
    ("sum", re.compile(r"\d+ \+ \d+ = (\d+)")),
    ("step", re.compile(r"\bstep (\d+)")),
    ("level", re.compile(r"baseline(?: level)? of (-?\d+(?:\.\d+)?)")),
    ("level", re.compile(r"(?:peak|moves (?:up|down),) ([+-]\d+)%")),
    ("level", re.compile(r"of the first \d+ steps of Node \d+ is (-?\d+(?:\.\d+)?)")),
    ("verdict", re.compile(r"\b(too late|too early|matches|no|before|after)\b")),
    ("option", re.compile(r"option ([A-Z])\b")),
    ("answer", re.compile(r"<answer>(.*?)</answer>", re.S)),
)


def char_kinds(text: str) -> list[str]:
    """The kind of every character of a reference completion (`template` by default;
    the first pattern to claim a character keeps it)."""
    kinds = ["template"] * len(text)
    for kind, pat in _PATTERNS:
        for m in pat.finditer(text):
            lo, hi = m.span(1)
            if all(k == "template" for k in kinds[lo:hi]):
                kinds[lo:hi] = [kind] * (hi - lo)
    return kinds


@dataclass(frozen=True)
class Span:
    kind: str
    tokens: tuple[int, ...]
    """Indices into the completion's tokens."""


def spans(text: str, offsets: list[tuple[int, int]]) -> list[Span]:
    """The completion's tokens grouped into spans: consecutive tokens of one non-template
    kind form one span (a number's digits); each template token is a span of its own. A
    token's kind is that of its first non-space character."""
    kinds = char_kinds(text)
    out: list[Span] = []
    last_end = -1
    for i, (lo, hi) in enumerate(offsets):
        first = next((c for c in range(lo, hi) if not text[c].isspace()), lo)
        kind = kinds[first] if first < len(text) else "template"
        joined = (out and kind != "template" and out[-1].kind == kind and lo <= last_end
                  and all(kinds[c] == kind or text[c].isspace() for c in range(last_end, lo)))
        if joined:
            out[-1] = Span(kind, (*out[-1].tokens, i))
        else:
            out.append(Span(kind, (i,)))
        last_end = hi
    return out


def completion_offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """The completion's token ids and each token's character span in `text`."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def rationale_hits(text: str, offsets: list[tuple[int, int]], gold: list[int],
                   guess: list[int]) -> dict[str, list[bool]]:
    """Per kind, whether each span of a reference completion was predicted right."""
    out: dict[str, list[bool]] = {}
    for s in spans(text, offsets):
        ok = all(i < len(guess) and guess[i] == gold[i] for i in s.tokens)
        out.setdefault(s.kind, []).append(ok)
    return out


def decision(text: str, answer: str) -> tuple[int, int]:
    """Character span of an ST-Align question's decision in its reference completion: the
    answer's first appearance in the think block (else the answer tag's content)."""
    think = text.split("</think>")[0]
    k = think.find(answer) if answer else -1
    if k < 0:
        k = text.find("<answer>") + len("<answer>")
    return k, k + len(answer)


def decision_right(tokenizer: Any, text: str, offsets: list[tuple[int, int]],
                   gold: list[int], guess: list[int], answer: str, tolerance: float) -> bool:
    """Whether the greedy guess at an ST-Align decision's tokens says the answer, as the
    `value` answers are scored (`envs.values.same_value`: a number within `tolerance`)."""
    lo, hi = decision(text, answer)
    idx = [i for i, (a, b) in enumerate(offsets) if a < hi and b > lo]
    if not idx:
        return False
    want = tokenizer.decode([gold[i] for i in idx])
    got = tokenizer.decode([guess[i] for i in idx if i < len(guess)])
    return same_value(got, want, tolerance)


def summarise(hits: dict[str, list[bool]]) -> dict[str, dict[str, float]]:
    """`{kind: {"share": right / all, "n": all}}` in `KINDS` order (then any other)."""
    order = [k for k in KINDS if k in hits] + label_order([k for k in hits if k not in KINDS])
    return {k: {"share": sum(hits[k]) / len(hits[k]), "n": len(hits[k])} for k in order}


def probe(tokenizer: Any, prompts: list[Any], guesses: list[list[int]],
          align: bool = False) -> dict[str, dict[str, float]]:
    """The probe's table for `prompts` (each with `.completion`, `.target`) and the model's
    teacher-forced argmax tokens over each completion (`guesses[k][i]`: its guess for the
    completion's token i). `align`: per ST-Align skill (the decision), else per kind."""
    hits: dict[str, list[bool]] = {}
    for p, guess in zip(prompts, guesses, strict=True):
        gold, offsets = completion_offsets(tokenizer, p.completion)
        if align:
            skill = skill_label(json.loads(p.target.get("meta") or "{}")) or p.task
            ok = decision_right(tokenizer, p.completion, offsets, gold, guess,
                                str(p.target["answer"]), float(p.target.get("tolerance") or 0))
            hits.setdefault(skill, []).append(ok)
        else:
            for kind, oks in rationale_hits(p.completion, offsets, gold, guess).items():
                hits.setdefault(kind, []).extend(oks)
    return summarise(hits)


PROBE_TABLES = {"rationale": "rationale token", "align": "ST-Align decision",
                "reliance": "series reading (changed when reversed)",
                "align_reliance": "ST-Align series skill (changed when reversed)"}
"""The probe's tables (`strl probe`, report.md), by key (summary.json's): their titles."""
SERIES_KINDS = ("step", "level")
"""Rationale tokens read off a series."""


def time_reversed(series: list[Any] | None) -> list[Any] | None:
    """A prompt's series, each reversed in time: the perturbation `series_reliance` reads
    (the prompt's ids, built from the original series, are kept as they are)."""
    return None if series is None else [list(s)[::-1] for s in series]


def series_reliance(tokenizer: Any, prompts: list[Any], guesses: list[list[int]],
                    reversed_guesses: list[list[int]], align: bool = False
                    ) -> dict[str, dict[str, float]]:
    """How much the policy reads its series: the share of series readings (`SERIES_KINDS`
    spans of a rationale; with `align`, the decisions of the series skills) whose greedy
    guess changes when every series of the prompt is time-reversed (`time_reversed`: only
    the encoder's rows change, the prompt's ids are the original's), so a policy that
    ignores its series guesses the same: 0."""
    changed: dict[str, list[bool]] = {}
    for p, g, r in zip(prompts, guesses, reversed_guesses, strict=True):
        _, offsets = completion_offsets(tokenizer, p.completion)
        if align:
            meta = json.loads(p.target.get("meta") or "{}")
            if meta.get("skill") not in SERIES_SKILLS:
                continue
            lo, hi = decision(p.completion, str(p.target["answer"]))
            groups = {skill_label(meta): [tuple(i for i, (a, b) in enumerate(offsets)
                                                if a < hi and b > lo)]}
        else:
            groups = {}
            for sp in spans(p.completion, offsets):
                if sp.kind in SERIES_KINDS:
                    groups.setdefault(sp.kind, []).append(sp.tokens)
        for key, token_sets in groups.items():
            changed.setdefault(key, []).extend(
                any(i < min(len(g), len(r)) and g[i] != r[i] for i in tokens)
                for tokens in token_sets)
    return summarise(changed)


def markdown(table: dict[str, dict[str, dict[str, float]]], what: str) -> list[str]:
    """`table[point][kind] = {"share", "n"}` as a markdown table, one row per kind, one
    column per point of the run ("after sft_align", ...)."""
    points = list(table)
    kinds = list(dict.fromkeys(k for t in table.values() for k in t))
    if not kinds:
        return []
    rows = [f"| {what} | n | " + " | ".join(points) + " |",
            "|---|---:|" + "---:|" * len(points)]
    for k in kinds:
        n = next(int(t[k]["n"]) for t in table.values() if k in t)
        rows.append(f"| {k} | {n} | " + " | ".join(
            f"{table[p][k]['share']:.3f}" if k in table[p] else "-" for p in points) + " |")
    return rows


def plot_curve(tables: dict[str, dict[str, dict[str, dict[str, float]]]],
               examples: dict[str, int], out: Path) -> Path:
    """`strl probe --plot`: two panels, each share of the rationale probe and of the
    ST-Align probe (`tables["rationale" | "align"][point][kind]`) against the training
    sequences seen at each point (`examples[point]`)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    fig = Figure(figsize=(12, 5))
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.92, wspace=0.15)
    for ax, (what, title) in zip(fig.subplots(1, 2), (
            ("rationale", "rationale tokens (teacher-forced)"),
            ("align", "ST-Align decisions (teacher-forced)")), strict=True):
        ax.set_prop_cycle(color=colormaps["tab20"].colors)  # up to 20 kinds, none repeated
        table = tables.get(what, {})
        points = sorted(table, key=lambda p: examples[p])
        for kind in dict.fromkeys(k for t in table.values() for k in t):
            xs = [examples[p] for p in points if kind in table[p]]
            ys = [table[p][kind]["share"] for p in points if kind in table[p]]
            ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, label=kind)
        ax.set_title(title)
        ax.set_xlabel("training sequences seen")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if table:
            ax.legend(fontsize=7, ncol=2)
    return save_png(fig, out)
