"""`strl show`: one sample as text, and as a figure of its series and graph."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from envs.detect import departures
from envs.sample import Sample
from envs.tasks.intervention import OBJECTIVES


def describe(s: Sample, width: int = 100) -> str:
    """A readable dump of a sample: world, graph, question, answer, rationale."""
    m = s.meta
    wrap = lambda t: textwrap.fill(t, width, subsequent_indent="    ")  # noqa: E731
    names = m.get("node_names", [])
    lines = [
        f"id        {s.id}",
        f"task      {s.task} ({s.kind})",
        f"domain    {m['domain']}: {m['quantity']} in {m['unit']}, 1 step = "
        f"{m['sampling_minutes']} min, {s.series.shape[0]} nodes x {s.series.shape[1]} steps",
        "nodes     " + ", ".join(f"{i}={n}" for i, n in enumerate(names)),
        "graph     " + "; ".join(f"{u}->{v} (lag {lag})" for u, v, lag in s.edges),
        "events    " + ("; ".join(f"nodes {e['nodes']} from step {e['t0']} for {e['duration']}"
                                  f" steps, {e['amp']:+.0%}" for e in m["events"]) or "none"),
        "",
        wrap("question  " + s.question),
    ]
    lines += [f"    {chr(65 + i)}. {o}" for i, o in enumerate(s.options)]
    if "scores" in m:  # an intervention: the re-simulated outcome of every option
        first, last = m["window"]
        scores = ", ".join(f"{'left alone' if k == 'none' else k} {v:g}"
                           for k, v in m["scores"].items())
        lines += ["", wrap(f"outcomes  {OBJECTIVES[m['objective']]} at Node {m['target']} "
                           f"over steps {first}-{last}, re-simulated with the same noise: "
                           + scores)]
    lines += ["", wrap("answer    " + s.answer), wrap("rationale " + s.rationale), "",
              "series (first 4 and last 4 values per node):"]
    for i, row in enumerate(s.series):
        head = ", ".join(f"{v:.{s.precision}f}" for v in row[:4])
        tail = ", ".join(f"{v:.{s.precision}f}" for v in row[-4:])
        lines.append(f"    Node {i}: [{head}, ..., {tail}]")
    return "\n".join(lines)


def plot(s: Sample, path: str | Path) -> Path:
    """Series (one panel per node, event windows shaded, departures marked) and the graph.

    An intervention question also shows, on its target's panel, the target's series over
    the closure window left alone (the actual outcome) and under each option (the
    counterfactuals, re-simulated with the same noise), the gold option in bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    n, t_len = s.series.shape
    dep = departures(s.series)
    fig = plt.figure(figsize=(13, max(4.0, 1.1 * n + 1)))
    grid = fig.add_gridspec(n, 2, width_ratios=[2.4, 1], hspace=0.15)
    events = s.meta.get("events", [])
    for i in range(n):
        ax = fig.add_subplot(grid[i, 0])
        ax.plot(np.arange(t_len), s.series[i], lw=1.1, color="C0")
        for e in events:
            if i in e["nodes"]:
                ax.axvspan(e["t0"], min(t_len, e["t0"] + e["duration"]), color="C3", alpha=0.15)
        if dep.onset[i] >= 0:
            ax.axvline(dep.onset[i], color="C1", ls="--", lw=1)
        if i == s.meta.get("target") and "outcomes" in s.meta:
            _overlay(ax, s)
        ax.set_ylabel(f"Node {i}", rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
        if i < n - 1:
            ax.set_xticklabels([])
    if "outcomes" in s.meta:  # every panel on the same steps as the window's
        for ax in fig.axes:
            ax.set_xlim(-0.5, s.meta["window"][1] + 0.5)
    fig.axes[0].set_title(f"{s.meta['quantity']} ({s.meta['unit']}); shaded: event window, "
                          "dashed: departure from baseline", fontsize=9)
    fig.axes[-1].set_xlabel(f"step (1 step = {s.meta['sampling_minutes']} min)", fontsize=8)
    gax = fig.add_subplot(grid[:, 1])
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_edges_from((u, v, {"lag": lag}) for u, v, lag in s.edges)
    pos = nx.spring_layout(g, seed=0, k=1.5 / max(1, n) ** 0.5)
    starts = {i for e in events for i in e["nodes"]}
    colors = ["#f4a582" if i in starts else "#92c5de" for i in range(n)]
    nx.draw_networkx(g, pos, ax=gax, node_color=colors, node_size=520, font_size=9,
                     arrowsize=14, edge_color="#555555")
    lag_labels = {(u, v): f"lag {d['lag']}" for u, v, d in g.edges(data=True)}
    nx.draw_networkx_edge_labels(g, pos, ax=gax, font_size=7, edge_labels=lag_labels)
    gax.set_title(f"{s.task}: answer {s.answer if s.kind != 'text' else '(text)'}", fontsize=10)
    gax.axis("off")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def _overlay(ax, s: Sample) -> None:
    """The intervention outcomes at the target, after the shown series."""
    first, last = s.meta["window"]
    steps = np.arange(first - 1, last + 1)
    start = s.series[s.meta["target"], -1]  # join each outcome to the last shown value
    ax.axvspan(first - 0.5, last + 0.5, color="0.85", alpha=0.5)
    for key, ys in s.meta["outcomes"].items():
        gold = key == s.answer
        ax.plot(steps, [start, *ys], lw=2.2 if gold else 1.0,
                ls="--" if key == "none" else "-", color="k" if key == "none" else None,
                label="left alone" if key == "none" else f"{key}{' (gold)' if gold else ''}")
    ax.legend(fontsize=6, ncol=len(s.meta["outcomes"]), loc="upper left", frameon=False)
