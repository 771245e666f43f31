"""`runs/<name>/summary.json`: the run's results in one file a script can read.

    {"run": name, "wall_s": ..., "chance": 1 / options,
     "stages": {"before": {"accuracy": ..., "ci95": [lo, hi], "strict_format": ...,
                           "claim_accuracy": ..., "consistency": ..., "modal_answer": ...,
                           "conclusion_accuracy": ..., "n": ...,
                           "tasks": {task: {"accuracy": ..., "ci95": [...], "n": ...}}},
                "after sft_align": {...}, ...},
     "align": {point: {skill: {"accuracy": ..., "n": ...}}},
     "probe": {point: {"rationale": {kind: {"share", "n"}}, "align": {skill: {...}},
                       "reliance": {kind: {...}}, "align_reliance": {skill: {...}}}},
     "objective": {point: {"mean", "se", "components", ...}, "change": {"change", "se"}},
     "suite": {"score": ..., "score_no_graph": ..., "graph_reliance": ..., "n": ...}}

The confidence intervals are Wilson score intervals over the valid answers (accuracy's own
denominator).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlsys.files import write_atomic
from rlsys.stats import paired_change, wilson

SUMMARY_FILE = "summary.json"
STAGE_METRICS = ("accuracy", "success_rate", "strict_format", "claim_accuracy", "consistency",
                 "modal_answer", "conclusion_accuracy")


def _accuracy(row: dict[str, Any]) -> dict[str, Any]:
    """Accuracy, its interval over the valid answers, and n."""
    n, valid = int(row.get("n") or 0), row.get("success_rate")
    answered = round(n * valid) if valid is not None else n
    acc = row.get("accuracy")
    return {"accuracy": acc, "ci95": wilson(acc, answered), "n": n, "valid": answered}


def _stage(ev: dict[str, Any]) -> dict[str, Any]:
    pooled = ev.get("all") or {}
    out = {k: pooled.get(k) for k in STAGE_METRICS}
    out.update(_accuracy(pooled))
    out["tasks"] = {t: _accuracy(row) for t, row in ev.items() if t != "all"}
    return out


def summary(name: str, wall_s: float, options: int, stages: dict[str, Any],
            align: dict[str, Any], probes: dict[str, Any], objective: dict[str, Any],
            suite: dict[str, Any] | None) -> dict[str, Any]:
    """The summary of a finished run (see the module docstring)."""
    obj = {k: {kk: vv for kk, vv in v.items() if kk != "per_prompt"}
           for k, v in objective.items()}
    if len(objective) == 2:  # before and after GRPO: the paired change
        before, after = (v["per_prompt"] for v in objective.values())
        obj["change"] = paired_change(before, after)
    pooled = (suite or {}).get("tasks", {}).get("all", {})
    return {
        "run": name, "wall_s": round(wall_s, 1),
        "chance": round(1 / options, 4) if options else None,
        "stages": {point: _stage(ev) for point, ev in stages.items()},
        "align": {point: {s: {"accuracy": r.get("accuracy"), "n": r.get("n")}
                          for s, r in ev.items()} for point, ev in align.items()},
        "probe": probes, "objective": obj,
        "suite": {k: pooled.get(k) for k in ("score", "score_no_graph", "graph_reliance", "n")}
        if pooled else None,
    }


def write_summary(run_dir: Path, data: dict[str, Any]) -> Path:
    return write_atomic(Path(run_dir) / SUMMARY_FILE, json.dumps(data, indent=1))
