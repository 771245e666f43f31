"""End-of-run report: training curves (`curves.png`) and a Markdown summary (`report.md`).

Both are built from the per-step records of `metrics.jsonl` (see `rlsys.train.runlog`), read by
the metric names below; a name a run did not log is left out, never an error. When a resumed
run logged a step twice, the last record of the step wins.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from envs.tasks.align import label_order
from rewards import check, parse_choice, reasoning
from rlsys.evals.probe import PROBE_TABLES
from rlsys.evals.probe import markdown as probe_markdown
from rlsys.files import save_png, write_atomic
from rlsys.markdown import delta, fmt, md_table
from rlsys.stats import paired_change

# Metric names the trainer logs and the report reads.
REWARD = "reward/mean"  # mean total reward of the step's rollouts
REWARD_PREFIX = "reward/"  # and one component per reward function, e.g. "reward/format"
ACC_PREFIX = "acc/"  # training accuracy per task, e.g. "acc/entity"
KL = "kl"
TIME_PHASES = ("time/generate", "time/generate_no_graph", "time/reward", "time/reference",
               "time/train", "time/sync")  # generate_no_graph: S-GRPO's graph-free rollouts
TIME_STEP = "time/step"  # measured wall time of the whole step, when logged
TOKENS_PER_S = "tokens_per_s"  # generated tokens per second of generation time
GENERATED_TOKENS = "generated_tokens"  # response tokens generated in the step
SYNC_BYTES = "sync_bytes"  # bytes of weights broadcast to the rollout engines
EMPTY_STEP = "empty_step"  # 1 when every group had zero reward variance: nothing to train on
SKIPPED = "skipped"  # 1 when the learner skipped the optimizer step (e.g. non-finite grads)
WALL_KEYS = ("wall_s", "wall_time_s")  # keys of `extra` shown as the run's wall time

CURVES_FILE = "curves.png"
REPORT_FILE = "report.md"
EVAL_METRICS = ("accuracy", "success_rate", "mae")
EXAMPLES_PER_TASK = 3  # the final policy's held-out answers shown per task


# ---------------------------------------------------------------------------------------
# Reading the records
# ---------------------------------------------------------------------------------------


def _by_step(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per step, in step order; the last record of a repeated step wins."""
    last: dict[int, dict[str, Any]] = {}
    for m in metrics:
        last[int(m["step"])] = m
    return [last[s] for s in sorted(last)]


def _value(row: dict[str, Any], key: str) -> float | None:
    v = row.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Steps and finite values of one metric, over the steps that have it."""
    pairs = [(int(r["step"]), v) for r in rows if (v := _value(r, key)) is not None]
    return [s for s, _ in pairs], [v for _, v in pairs]


def _keys(rows: list[dict[str, Any]], prefix: str) -> list[str]:
    return sorted({k for r in rows for k in r if k.startswith(prefix) and k != REWARD})


def first_last_fifth(values: list[float]) -> tuple[float, float]:
    """Means of the first and of the last fifth of `values`.

    A fifth is `max(1, n // 5)` values, so for n < 5 the "fifths" are the first and the last
    value themselves (for n = 1 the same value twice); from n = 2 on they never overlap.

    >>> first_last_fifth([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    (1.5, 9.5)
    >>> first_last_fifth([0.2, 0.4, 0.9])
    (0.2, 0.9)
    >>> first_last_fifth([0.5])
    (0.5, 0.5)
    """
    if not values:
        raise ValueError("first_last_fifth of no values")
    k = max(1, len(values) // 5)
    return sum(values[:k]) / k, sum(values[-k:]) / k


# ---------------------------------------------------------------------------------------
# Curves
# ---------------------------------------------------------------------------------------


def plot_curves(metrics: list[dict[str, Any]], out: Path) -> Path:
    """A PNG of four panels: rewards, accuracy per task, KL, and the step-time breakdown."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    rows = _by_step(metrics)
    fig = Figure(figsize=(12, 8))
    # fixed margins: a constrained layout would draw the figure twice
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.07, top=0.95, wspace=0.15, hspace=0.3)
    ax_reward, ax_acc, ax_kl, ax_time = fig.subplots(2, 2).flat

    def lines(ax: Any, keys: list[str], title: str, bold: str | None = None) -> None:
        drawn = False
        for key in keys:
            x, y = _series(rows, key)
            if x:
                wide = key == bold
                ax.plot(x, y, marker="o" if len(x) == 1 else None, label=key,
                        linewidth=2.2 if wide else 1.2, color="black" if wide else None)
                drawn = True
        _finish(ax, title, drawn)

    lines(ax_reward, [REWARD] + _keys(rows, REWARD_PREFIX), "reward", bold=REWARD)
    lines(ax_acc, _keys(rows, ACC_PREFIX), "accuracy")
    lines(ax_kl, [KL], "KL to the reference")

    timed = [r for r in rows if any(_value(r, k) is not None for k in TIME_PHASES)]
    steps = [int(r["step"]) for r in timed]
    bottom = [0.0] * len(timed)
    drawn = False
    for key in TIME_PHASES:
        h = [_value(r, key) or 0.0 for r in timed]
        if any(h):
            ax_time.bar(steps, h, width=1.0, bottom=bottom, label=key.removeprefix("time/"),
                        linewidth=0)
            bottom = [b + v for b, v in zip(bottom, h, strict=True)]
            drawn = True
    _finish(ax_time, "step time (s)", drawn)

    return save_png(fig, Path(out))


def _finish(ax: Any, title: str, drawn: bool) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if drawn:
        ax.legend(fontsize="small", loc="best")
        ax.grid(alpha=0.3)
    else:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes,
                color="gray")


# ---------------------------------------------------------------------------------------
# Markdown (fmt, md_table and delta are shared with `rlsys.evals.report`)
# ---------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _pooled(tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """An "all" row from per-task rows: n-weighted means over the tasks that have the metric."""
    row: dict[str, Any] = {"n": sum(int(t.get("n") or 0) for t in tasks.values())}
    for metric in EVAL_METRICS:
        have = [(t[metric], int(t.get("n") or 0)) for t in tasks.values()
                if t.get(metric) is not None]
        weight = sum(n for _, n in have)
        row[metric] = sum(v * n for v, n in have) / weight if weight else None
    return row


def _eval_section(before: dict[str, dict[str, Any]],
                  after: dict[str, dict[str, Any]]) -> list[str]:
    before, after = dict(before), dict(after)
    for side in (before, after):
        if "all" not in side and side:
            side["all"] = _pooled(side)
    tasks = [t for t in before if t != "all"] + [t for t in after
                                                  if t not in before and t != "all"]
    header = ["task", "n"]
    for metric in EVAL_METRICS:
        header += [f"{metric} before", f"{metric} after", "Δ"]
    rows = []
    for task in tasks + ["all"]:
        b, a = before.get(task, {}), after.get(task, {})
        nb, na = b.get("n"), a.get("n")
        cells = [task, fmt(nb if nb == na or na is None else f"{fmt(nb)} / {na}")]
        for metric in EVAL_METRICS:
            vb, va = b.get(metric), a.get(metric)
            cells += [fmt(vb), fmt(va), fmt(delta(vb, va), sign=True)]
        rows.append(cells)
    return ["## Evaluation before / after training", "",
            *md_table(header, rows), "",
            "MAE: lower is better; n differs (before / after) only if the eval sets did.", ""]


def _stage_section(stages: dict[str, dict[str, Any]]) -> list[str]:
    """The held-out questions after each stage, side by side: validity, strict format,
    the rationale checker's verified claims, and accuracy per task."""
    if not stages:
        return []
    tasks = list(dict.fromkeys(t for ev in stages.values() for t in ev if t != "all"))
    header = ["stage", "n", "success", "strict format", "verified claims", "accuracy",
              "consistency", "modal answer", "conclusion", *[f"{t} acc" for t in tasks]]
    rows = []
    for name, ev in stages.items():
        a = ev.get("all") or _pooled(ev)
        claims = a.get("claims") or 0
        checked = (f"{fmt(a.get('claim_accuracy'))} of {claims}" if claims else "-")
        rows.append([name, fmt(a.get("n")), fmt(a.get("success_rate")),
                     fmt(a.get("strict_format")), checked, fmt(a.get("accuracy")),
                     fmt(a.get("consistency")), fmt(a.get("modal_answer")),
                     fmt(a.get("conclusion_accuracy")),
                     *[fmt(ev.get(t, {}).get("accuracy")) for t in tasks]])
    return ["## Held-out questions after each stage", "", *md_table(header, rows), "",
            "Accuracy is over valid answers (TimeOmni-1's convention); strict format is the "
            "share of completions with one `<think>` and one non-empty `<answer>`; verified "
            "claims: the share of the claims the `<think>` blocks make (departures, delays, "
            "links, lags, sums) that the question's data confirm (`rewards.rationale`); "
            "consistency: the share of valid answers that are the option their `<think>` "
            "concludes with (`rewards.metrics.concluded_option`); modal answer: the share of "
            "valid choice answers that are the letter answered most often (1.000: the same "
            "letter whatever the question); conclusion: the share of the questions whose "
            "reference concludes with the gold by name (root_cause, propagation, entity) "
            "whose `<think>` concludes with it by name too, whatever its letter "
            "(`rewards.rationale.concluded`; chance 1/options).", ""]


def _skill_section(skills: dict[str, dict[str, Any]]) -> list[str]:
    """The held-out ST-Align questions after each stage: accuracy per skill (a row per
    skill, a column per point of the run)."""
    if not skills:
        return []
    points = list(skills)
    names = label_order(list(dict.fromkeys(k for ev in skills.values() for k in ev
                                           if k != "all")))
    rows = [[name, fmt(next(ev[name].get("n") for ev in skills.values() if name in ev)),
             *[fmt(skills[p].get(name, {}).get("accuracy")) for p in points]]
            for name in ["all", *names]]
    return ["## ST-Align skills after each stage", "",
            *md_table(["skill", "n", *points], rows), "",
            "Held-out perception questions (`align` task, never trained on), accuracy over "
            "valid answers: a step within 1, a baseline within 1%, a size within 3 points, "
            "the rest exact (`envs/tasks/align.py`); \"(one node)\": the prompt shows the "
            "asked node alone, nothing to retrieve.", ""]


def _probe_section(probes: dict[str, Any]) -> list[str]:
    """The token probe after each stage: per kind of rationale token, per ST-Align skill."""
    if not any(v.get("rationale") or v.get("align") for v in probes.values()):
        return []
    lines = ["## Token probe after each stage", ""]
    for what, title in PROBE_TABLES.items():
        table = {k: v[what] for k, v in probes.items() if v.get(what)}
        if table:
            lines += [*probe_markdown(table, title), ""]
    return lines + [
        "Teacher-forced greedy accuracy on the held-out references (`strl probe`): the "
        "share of spans whose every token is the model's argmax, given the reference before "
        "it: `step` a step read off a series, `level` a level or a move's size, `lag` a lag "
        "copied from the graph clause, `sum` the result of an addition written with its "
        "operands, `verdict` a comparison's word, `answer` the option letter, `template` "
        "every other token (`rlsys/evals/probe.py`). ST-Align decision: the skill's reading "
        "within its tolerance. Changed when reversed (series reliance): the share of those "
        "readings whose guess changes when every series is reversed in time; 0: the policy "
        "does not read its series.", ""]


def _objective_section(objective: dict[str, Any]) -> list[str]:
    """GRPO's objective on held-out questions just before and after GRPO."""
    if not objective:
        return []
    names = list(dict.fromkeys(c for v in objective.values() for c in v["components"]))
    rows = [[point, f"{v['mean']:.4f} ± {v['se']:.4f}", fmt(v["n_prompts"]),
             fmt(v["n_samples"]), *[fmt(v["components"].get(c)) for c in names]]
            for point, v in objective.items()]
    lines = ["## GRPO's objective on held-out questions", "",
             *md_table(["point", "reward (mean ± s.e.)", "questions", "samples each",
                        *names], rows), ""]
    if len(objective) == 2:
        before, after = (v["per_prompt"] for v in objective.values())
        d = paired_change(before, after)
        z = d["change"] / d["se"] if d["se"] else float("inf") if d["change"] else 0.0
        lines += [f"Change: {d['change']:+.4f} ± {d['se']:.4f} (paired over the questions; "
                  f"{z:+.1f} standard errors).", ""]
    return lines + ["The run's weighted reward (what GRPO maximises) at the rollout's "
                    "sampling settings, on held-out questions it never trained on, sampled "
                    "with the same seed at both points.", ""]


def example_section(prompts: list[Any], texts: list[str], targets: list[Any],
                    per_task: int = EXAMPLES_PER_TASK) -> list[str]:
    """The first `per_task` held-out answers of each task, whole, with the gold and the
    rationale checker's verdict on each claim (`prompts`: `rlsys.train.data.Prompt`)."""
    shown: dict[str, int] = {}
    lines = ["## Example answers of the final policy (held-out questions)", ""]
    for p, text, t in zip(prompts, texts, targets, strict=True):
        if shown.get(p.task, 0) >= per_task:
            continue
        shown[p.task] = shown.get(p.task, 0) + 1
        question = str(p.target.get("question") or "").replace("\n", " ")
        claims = check(reasoning(text), t.facts) if t.facts is not None else []
        verdict = ", ".join(f"{c.kind} {'/'.join(map(str, c.what))} "
                            f"{'ok' if c.ok else 'wrong'}" for c in claims) or "none"
        picked = parse_choice(text, t.n_options).value if t.kind == "choice" else None
        lines += [f"**{p.task}** `{p.id}`: {question}", "",
                  f"- gold {t.answer}; answered {picked or '(no valid letter)'}; claims: "
                  f"{sum(c.ok for c in claims)} of {len(claims)} verified ({verdict})", "",
                  "```", text.strip() or "(empty)", "```", ""]
    return lines


def _reward_section(rows: list[dict[str, Any]]) -> list[str]:
    steps, rewards = _series(rows, REWARD)
    if not rewards:
        return ["## Reward", "", f"No `{REWARD}` metric was logged.", ""]
    k = max(1, len(rewards) // 5)
    lines = ["## Reward: first vs last fifth of GRPO steps", "",
             f"{len(rewards)} steps with a reward; a fifth is {k} step(s): steps "
             f"{steps[0]}–{steps[k - 1]} vs {steps[-k]}–{steps[-1]}.", ""]
    table = []
    for key in [REWARD] + _keys(rows, REWARD_PREFIX):
        _, values = _series(rows, key)
        if values:
            first, last = first_last_fifth(values)
            table.append([f"`{key}`", fmt(first), fmt(last), fmt(last - first, sign=True)])
    return lines + md_table(["metric", "first fifth", "last fifth", "difference"], table) + [""]


UPDATE_KEYS = ("mismatch/kl", "mismatch/abs_logp", "ratio_mean", "clip_frac", "kl",
               "correction/weight", "correction/truncated", "correction/rejected",
               "staleness/mean", "idle/engine", "idle/learner")
"""What the learner logs about its GRPO update: the rollout/learner gap and the clip."""


def _update_section(rows: list[dict[str, Any]]) -> list[str]:
    """The policy update per GRPO step: the rollout/learner log-prob gap on the sampled
    tokens (vLLM's log-probs against the learner's before its update), the PPO ratio and
    the share of tokens the clip removed."""
    table = []
    for key in UPDATE_KEYS:
        _, values = _series(rows, key)
        if values:
            # three significant digits: the gap is often 1e-6 or less, which fmt shows as 0
            table.append([f"`{key}`", *(f"{v:.3g}" for v in (sum(values) / len(values),
                                                             min(values), max(values)))])
    if not table:
        return []
    return ["## Policy update: the rollout/learner gap and the clip", "",
            *md_table(["metric (per GRPO step)", "mean", "min", "max"], table), "",
            "`mismatch/kl`: k3 estimate of KL(rollout || learner) on the sampled tokens; "
            "`mismatch/abs_logp`: mean |learner - vLLM| log-prob of those tokens, both before "
            "the update (`rlsys.algorithms.policy_loss`). `correction/*` (with "
            "`algorithm.correction` tis or mis): the mean importance weight, the share of "
            "tokens whose weight hit the cap, the share in rejected sequences. "
            "`staleness/mean`: how many policy versions old the trained samples were "
            "(`algorithm.max_staleness`); `idle/*`: the share of the step the engines did "
            "not generate and the learner did not train or sync.", ""]


def _time_section(rows: list[dict[str, Any]]) -> list[str]:
    timed = [r for r in rows if any(_value(r, k) is not None for k in TIME_PHASES)]
    if not timed:
        return ["## Step time", "", "No `time/*` metrics were logged.", ""]
    # A phase missing from a step took no time in it (e.g. a sync every k steps).
    means = {k.removeprefix("time/"): sum(_value(r, k) or 0.0 for r in timed) / len(timed)
             for k in TIME_PHASES if any(_value(r, k) is not None for r in timed)}
    phases = sum(means.values())
    _, measured = _series(timed, TIME_STEP)
    if measured:
        whole = sum(measured) / len(measured)
        means["other (outside the phases)"] = max(0.0, whole - phases)
        last, what = "**step (measured)**", f"the measured step time (`{TIME_STEP}`)"
    else:
        whole = phases
        last, what = "**sum of phases**", f"the sum of the phases (no `{TIME_STEP}` logged)"
    table = [[name, fmt(v), _share(v, whole)] for name, v in means.items()]
    table.append([last, fmt(whole), _share(whole, whole)])
    return ["## Step time", "", f"Mean seconds per step over {len(timed)} timed steps; share of "
            f"{what}.", "", *md_table(["phase", "s / step", "share"], table), ""]


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole > 0 else "-"


def _throughput_section(rows: list[dict[str, Any]]) -> list[str]:
    table = []
    _, tps = _series(rows, TOKENS_PER_S)
    if tps:
        table.append(["generated tokens / s of generation (mean over steps)",
                      fmt(sum(tps) / len(tps), 1)])
    pairs = [(t, s) for r in rows
             if (t := _value(r, GENERATED_TOKENS)) is not None
             and (s := _value(r, TIME_STEP)) is not None]
    if pairs and sum(s for _, s in pairs) > 0:
        table.append(["generated tokens / s of step time (whole run)",
                      fmt(sum(t for t, _ in pairs) / sum(s for _, s in pairs), 1)])
    _, synced = _series(rows, SYNC_BYTES)
    if synced:
        table.append(["bytes synced / step (mean)", _bytes(sum(synced) / len(synced))])
    empty = sum(1 for r in rows if _value(r, EMPTY_STEP))
    skipped = sum(1 for r in rows if _value(r, SKIPPED) and not _value(r, EMPTY_STEP))
    table.append(["skipped steps (no update)", f"{empty + skipped} of {len(rows)} ({empty} "
                  f"with every group flat, {skipped} skipped by the learner)"])
    return ["## Throughput", "", *md_table(["metric", "value"], table), ""]


def _nested_sections(nested: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in nested.items():
        text = json.dumps(value, indent=2, sort_keys=True, default=str)
        lines += [f"## {key}", "", "```json", text, "```", ""]
    return lines


def write_report(run_dir: Path, metrics: list[dict[str, Any]], before: dict[str, Any],
                 after: dict[str, Any], config: dict[str, Any],
                 extra: dict[str, Any] | None = None,
                 sections: list[str] | None = None,
                 stages: dict[str, dict[str, Any]] | None = None,
                 skills: dict[str, dict[str, Any]] | None = None,
                 probes: dict[str, Any] | None = None,
                 objective: dict[str, Any] | None = None) -> Path:
    """Write `run_dir/report.md` (and the `curves.png` it shows) and return its path.

    `before` / `after` map task -> {"accuracy", "success_rate", "mae", "n"} (as `strl
    score` reports them); an "all" row is pooled by n when absent. `extra` adds summary
    rows ("wall_s" or "wall_time_s" is shown as a duration); a dict or list in `extra` is
    shown as JSON in its own section. `sections` are Markdown lines placed after the
    held-out evaluation (the eval suite's tables). `stages` maps a stage's name ("before",
    "after sft_align", ..., "after grpo") to its held-out evaluation, shown side by side;
    `skills` maps the same names to the held-out ST-Align evaluation per skill, `probes`
    to the token probe; `objective` holds GRPO's held-out objective before and after it.
    """
    run_dir = Path(run_dir)
    extra = dict(extra or {})
    rows = _by_step(metrics)
    plot_curves(metrics, run_dir / CURVES_FILE)

    model = config.get("model", {}).get("path", "-")
    planned = config.get("trainer", {}).get("steps")
    summary = [["run", f"`{run_dir.name}`"], ["model", f"`{model}`"],
               ["steps logged", f"{len(rows)}" + (f" (steps {rows[0]['step']}–{rows[-1]['step']})"
                                                   if rows else "")]]
    if planned is not None:
        summary.append(["steps planned", str(planned)])
    for key in WALL_KEYS:
        if extra.get(key) is not None:
            summary.append(["wall time", _duration(float(extra.pop(key)))])
            break
    nested = {k: v for k, v in extra.items() if isinstance(v, dict | list)}
    summary += [[str(k), fmt(v)] for k, v in extra.items() if k not in nested]

    lines = [f"# Run report: {run_dir.name}", "", *md_table(["summary", ""], summary), "",
             *_eval_section(before, after), *_stage_section(stages or {}),
             *_skill_section(skills or {}), *_probe_section(probes or {}),
             *_objective_section(objective or {}),
             *(sections or []), *_reward_section(rows), *_update_section(rows),
             *_time_section(rows),
             *_throughput_section(rows), *_nested_sections(nested),
             "## Curves", "", f"![training curves]({CURVES_FILE})", ""]
    return write_atomic(run_dir / REPORT_FILE, "\n".join(lines))
