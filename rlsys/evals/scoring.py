"""`strl score`: per-task metrics and mean rewards of predictions against a sample file.

Works on our own sample rows (`strl generate`) and on ST-Test rows (`input`, `timeseries`,
`output`, `category`). Predictions come from a second file matched by id (`id` or
`sample_id`) or, when the files carry no common ids, by row order; or from a column of the
data file itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rewards import RewardSet, RewardSpec, Target, evaluate
from rlsys.dataio import DataError

PREDICTION_COLUMNS = ("prediction", "completion", "response", "output")
REPORT_REWARDS = ("accuracy", "format", "exact_match", "exp_mae", "horizon_bonus",
                  "streasoner_forecast")


@dataclass
class ScoreReport:
    tasks: dict[str, dict[str, Any]]  # task -> metrics and mean rewards (plus "all")

    def as_dict(self) -> dict[str, Any]:
        return {"tasks": self.tasks}

    def table(self) -> str:
        cols = ["n", "success_rate", "accuracy", "mae", "score", "strict_format",
                "claim_accuracy", "consistency", "modal_answer", "conclusion_accuracy"] + [
            r for r in REPORT_REWARDS if r != "accuracy"]
        lines = [" | ".join(["task"] + cols), " | ".join(["---"] * (len(cols) + 1))]
        for task, row in self.tasks.items():
            cells = [task]
            for c in cols:
                v = row.get(c)
                cells.append("-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v))
            lines.append(" | ".join(cells))
        return "\n".join(lines)


def _row_id(row: dict[str, Any]) -> str | None:
    for key in ("id", "sample_id"):
        if row.get(key) is not None:
            return str(row[key])
    return None


def pick_column(rows: Sequence[dict[str, Any]], column: str | None, where: str) -> str:
    """The prediction column to use: the one asked for, else the first known one present."""
    if not rows:
        raise DataError(f"{where}: no rows")
    if column is not None:
        if column not in rows[0]:
            raise DataError(f"{where}: missing column '{column}' "
                            f"(columns: {', '.join(sorted(rows[0]))})")
        return column
    for c in PREDICTION_COLUMNS:
        if c in rows[0]:
            return c
    raise DataError(f"{where}: no prediction column; expected one of "
                    f"{', '.join(PREDICTION_COLUMNS)} (or pass --prediction-column)")


def align(data: list[dict[str, Any]], preds: list[dict[str, Any]], column: str,
          where: str) -> list[str]:
    """Prediction text for every data row, by id when possible, else by position."""
    ids = [_row_id(r) for r in data]
    pids = {_row_id(r): r for r in preds}
    if all(i is not None for i in ids) and None not in pids and set(ids) <= set(pids):
        return [str(pids[i][column] or "") for i in ids]
    if len(preds) != len(data):
        raise DataError(f"{where}: {len(preds)} predictions for {len(data)} data rows, and "
                        "the files share no ids to match them by")
    return [str(r[column] or "") for r in preds]


def score(data: list[dict[str, Any]], completions: list[str]) -> ScoreReport:
    """Metrics (TimeOmni-1 convention) and mean rewards per task."""
    targets = []
    for i, row in enumerate(data):
        try:
            targets.append(Target.from_record(row))
        except (KeyError, ValueError) as e:
            raise DataError(f"data row {i + 1}: {e}") from None
    metrics = evaluate(completions, targets)
    rs = RewardSet([RewardSpec(name) for name in REPORT_REWARDS])
    result = rs.score(completions, targets)
    tasks: dict[str, dict[str, Any]] = {}
    for task, m in metrics.items():
        row = asdict(m)
        idx = [i for i, t in enumerate(targets) if task == "all" or t.task == task]
        for name, values in result.components.items():
            vals = [values[i] for i in idx if values[i] is not None]
            row["score" if name == "accuracy" else name] = (sum(vals) / len(vals)
                                                            if vals else None)
        tasks[task] = row
    return ScoreReport(tasks)
