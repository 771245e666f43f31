"""What `strl eval` writes: `eval.json`, `eval.md` (tables), `eval.png` (a plot),
`samples.html` (the browser view of every answer) and `completions.jsonl`; and
`strl eval --compare A B`, two evaluations side by side (`compare.md`, `compare.png`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlsys.files import save_png, write_atomic
from rlsys.markdown import delta, fmt, md_table
from rlsys.view import STATIC

COLUMNS = ("n", "success_rate", "accuracy", "conclusion_accuracy", "modal_answer", "mae",
           "score", "score_no_graph", "graph_reliance", "over_context")
HEADERS = {"n": "n", "success_rate": "success", "accuracy": "accuracy",
           "conclusion_accuracy": "conclusion", "modal_answer": "modal answer", "mae": "MAE",
           "score": "score", "score_no_graph": "score w/o graph",
           "graph_reliance": "graph reliance", "over_context": "over context"}
COMPARED = ("success_rate", "accuracy", "mae", "score", "graph_reliance")


def task_table(tasks: dict[str, dict[str, Any]]) -> list[str]:
    """One row per task (and "all"): the headline metrics."""
    rows = [[t] + [fmt(m.get(c)) for c in COLUMNS] for t, m in tasks.items()]
    return md_table(["task"] + [HEADERS[c] for c in COLUMNS], rows)


def split_table(result: dict[str, Any]) -> list[str]:
    splits = result.get("splits") or {}
    if set(splits) != {"id", "ood"}:
        return []
    rows = []
    for task in result["tasks"]:
        i, o = splits["id"].get(task, {}), splits["ood"].get(task, {})
        rows.append([task] + [fmt(m.get(c)) for c in ("success_rate", "score")
                              for m in (i, o)] + [fmt(delta(i.get("score"), o.get("score")),
                                                      sign=True)])
    return md_table(["task", "success ID", "success OOD", "score ID", "score OOD",
                   "OOD - ID"], rows)


def nodes_table(result: dict[str, Any]) -> list[str]:
    by = result.get("nodes") or {}
    sizes = sorted({int(n) for t in by.values() for n in t})
    if len(sizes) < 2:
        return []
    rows = [[task] + [fmt((cells.get(str(n)) or {}).get("score")) for n in sizes]
            for task, cells in by.items()]
    return md_table(["task"] + [f"score, {n} nodes" for n in sizes], rows)


def describe(result: dict[str, Any]) -> str:
    if "suite" in result:
        return (f"eval suite `{result['suite']}`, {result['per_cell']} question(s) per "
                f"cell, digest `{result['digest']}`")
    return f"file `{result.get('file')}` ({result.get('rows')} rows)"


def markdown(result: dict[str, Any], heading: str = "#") -> list[str]:
    """The evaluation as Markdown (also the eval suite section of a run's report)."""
    s = result["sampling"]
    lines = [f"{heading} Evaluation: {describe(result)}", "",
             f"Model: {result['model']}; temperature {s['temperature']:g}, max_tokens "
             f"{s['max_tokens']}; {result['wall_s']:.0f} s.", ""]
    j = result.get("judge")
    if j:
        lines += [f"Free-text answers judged by {j['url']}: {j['calls']} calls, "
                  f"{j['failures']} failed (scored 0).", ""]
    lines += [f"**Warning:** {w}" for w in result.get("warnings") or []]
    lines += ["", *task_table(result["tasks"]), "",
              "success: valid answers; accuracy (choice) and MAE (forecast) on the valid "
              "ones; score: exact match or exp(-0.1 MAE) over every question (invalid = 0), "
              "with and without the graph; graph reliance = score - score w/o graph, over the "
              "questions whose two prompts were both answered; over context: prompts (with "
              "or without the graph) longer than the model's context (not sent, invalid).",
              ""]
    split = split_table(result)
    if split:
        lines += [f"{heading}# In-distribution vs held-out domains", "", *split, ""]
    nodes = nodes_table(result)
    if nodes:
        lines += [f"{heading}# By node count", "", *nodes, ""]
    return lines


def plot(result: dict[str, Any], out: Path) -> Path:
    """Score per task (ID and OOD, with and without the graph) and graph reliance."""
    from matplotlib.figure import Figure

    tasks = [t for t in result["tasks"] if t != "all"]
    splits = result.get("splits") or {}
    fig = Figure(figsize=(12, 4.5))
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.28, top=0.9, wspace=0.18)
    ax_s, ax_r = fig.subplots(1, 2)
    names = [s for s in ("id", "ood", "file") if s in splits]
    width = 0.8 / (2 * max(1, len(names)))
    for k, split in enumerate(names):
        for j, (key, alpha) in enumerate((("score", 1.0), ("score_no_graph", 0.45))):
            vals = [(splits[split].get(t) or {}).get(key) or 0.0 for t in tasks]
            xs = [i + (2 * k + j - len(names)) * width + width / 2 for i in range(len(tasks))]
            ax_s.bar(xs, vals, width, alpha=alpha, color=f"C{k}",
                     label=f"{split.upper()} {'with' if j == 0 else 'without'} graph")
    ax_s.set_title("score per task")
    ax_s.set_ylim(0, 1)
    rel = [result["tasks"][t].get("graph_reliance") or 0.0 for t in tasks]
    ax_r.bar(range(len(tasks)), rel, color=["C2" if v >= 0 else "C3" for v in rel])
    ax_r.axhline(0, color="black", linewidth=0.8)
    ax_r.set_title("graph reliance (score with - without the graph)")
    for ax in (ax_s, ax_r):
        ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
        ax.grid(axis="y", alpha=0.3)
    ax_s.legend(fontsize="small")
    fig.suptitle(describe(result).replace("`", ""), fontsize=10)
    return save_png(fig, out)


def html(records: list[dict[str, Any]], title: str) -> str:
    """The browser view (`rlsys/static`) with the records embedded: one file, no server."""
    page = (STATIC / "view.html").read_text(encoding="utf-8")
    script = (STATIC / "view.js").read_text(encoding="utf-8")
    # No "<" at all inside the script's data: "</script>" would end it, "<!--" would make
    # the parser swallow the next script. JSON writes "<" inside strings as \u003c.
    data = json.dumps(records).replace("<", "\\u003c").replace(">", "\\u003e")
    page = page.replace("<title>strl: a question and the model's answer</title>",
                        f"<title>{_escape(title)}</title>")
    return page.replace('<script src="view.js"></script>',
                        f"<script>window.STRL_RECORDS = {data};</script>\n<script>{script}"
                        "</script>")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write every output of an evaluation into `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    questions = result["questions"]
    summary = {k: v for k, v in result.items() if k != "questions"}
    paths = {
        "json": write_atomic(out_dir / "eval.json", json.dumps(summary, indent=1)),
        "completions": write_atomic(out_dir / "completions.jsonl",
                               "".join(json.dumps(q) + "\n" for q in questions)),
        "markdown": write_atomic(out_dir / "eval.md", "\n".join(markdown(result))),
        "plot": plot(result, out_dir / "eval.png"),
        "html": write_atomic(out_dir / "samples.html",
                        html(questions, f"strl eval: {describe(result)}")),
    }
    return paths


# ---- two evaluations side by side ---------------------------------------------------

def load(path: str | Path) -> dict[str, Any]:
    """An evaluation: an eval.json, or a directory holding one."""
    p = Path(path)
    if p.is_dir():
        p = p / "eval.json"
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no eval.json (run `strl eval` first, or give a "
                                "checkpoint directory)")
    try:
        result = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{p} is not valid JSON ({e})") from None
    if "tasks" not in result:
        raise ValueError(f"{p} is not a `strl eval` result (no 'tasks')")
    return result


def compare(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str]) -> list[str]:
    """Markdown: every task's metrics for A and B, and B - A."""
    lines = [f"# Comparison: A = {names[0]}, B = {names[1]}", ""]
    if a.get("digest") != b.get("digest"):
        lines += [f"**Warning:** the two evaluations ran on different questions ({describe(a)} "
                  f"vs {describe(b)}): the figures are not comparable.", ""]
    header = ["task"] + [f"{HEADERS[c]} {x}" for c in COMPARED for x in ("A", "B", "Δ")]
    rows = []
    for task in list(a["tasks"]) + [t for t in b["tasks"] if t not in a["tasks"]]:
        ma, mb = a["tasks"].get(task, {}), b["tasks"].get(task, {})
        cells = [task]
        for c in COMPARED:
            cells += [fmt(ma.get(c)), fmt(mb.get(c)), fmt(delta(ma.get(c), mb.get(c)), sign=True)]
        rows.append(cells)
    return lines + md_table(header, rows) + ["", "Δ = B - A (for MAE, lower is better)."]


def compare_plot(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str],
                 out: Path) -> Path:
    from matplotlib.figure import Figure

    tasks = [t for t in a["tasks"] if t in b["tasks"]]
    fig = Figure(figsize=(11, 4))
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.3, top=0.9)
    ax = fig.subplots()
    for k, (res, name) in enumerate(((a, names[0]), (b, names[1]))):
        ax.bar([i + (k - 0.5) * 0.4 for i in range(len(tasks))],
               [res["tasks"][t].get("score") or 0.0 for t in tasks], 0.4, label=name[:60])
    ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
    ax.set_title("score per task")
    ax.set_ylim(0, 1)
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return save_png(fig, out)
