"""`correlation` must not leak its gold route through the size of the disturbance or
through the window (issue 22). On generated questions, read back from their prompts as a
solver would, the gold route and the other routes must be distributed alike in:

- the last link's peak ratio: b's peak departure over the peak of the node before b on
  the route (a for the direct link, the intermediate for a relay);
- the implied departure: the window's middle minus the route's total lag, measured from the
  first step after the baseline window (negative: the route would be impossible);

and b's peak over a's must not tell a direct gold from a relay. A two-sample
Kolmogorov-Smirnov test on each, and no route may be impossible. The generator before the
fix (commit fcad13c) fails: last-link ratio p = 3e-11 (tiny) and 3e-12 (default), b over a
p = 5e-38 and 4e-52, implied departure p = 9e-8 (tiny), and the window made 13% (tiny) and
5% (default) of the other routes impossible, never the gold."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp

from envs.detect import baseline_len, departures
from envs.prompt import parse_prompt
from envs.quality import SETTINGS
from envs.stream import TaskMix, generate
from envs.tasks.correlation import _DIRECT, _Q, _VIA

P_MIN = 1e-3
"""The least p-value that passes: deterministic samples, so a pass is a pass every run."""


def _quantities(setting: str, n: int) -> dict[str, tuple[list[float], list[float]]]:
    """{quantity: (values of gold routes, values of the other routes)}; for "b_over_a":
    (questions whose gold is direct, questions whose gold is a relay)."""
    out: dict[str, tuple[list[float], list[float]]] = {
        "last_hop": ([], []), "implied": ([], []), "b_over_a": ([], [])}
    for s in generate(11, range(n), TaskMix.of(["correlation"]), SETTINGS[setting]):
        p = parse_prompt(s.prompt())
        a, b, w0, w1 = (int(x) for x in _Q.search(p.question).groups())
        peak = departures(p.series).peak
        start = baseline_len(p.series.shape[1])
        gold = ord(s.answer) - 65
        for i, option in enumerate(p.options):
            if m := _VIA.match(option):
                x = int(m.group(1))
                before, total = x, p.lags[(a, x)] + p.lags[(x, b)]
            else:
                assert _DIRECT.match(option), option
                before, total = a, p.lags[(a, b)]
            side = 0 if i == gold else 1
            out["last_hop"][side].append(peak[b] / peak[before])
            out["implied"][side].append((w0 + w1) / 2 - total - start)
        direct = bool(_DIRECT.match(p.options[gold]))
        out["b_over_a"][0 if direct else 1].append(peak[b] / peak[a])
    return out


@pytest.mark.parametrize("setting", ["tiny", "default"])
def test_gold_and_other_routes_differ_neither_in_size_nor_in_feasibility(setting: str) -> None:
    found = _quantities(setting, 300)
    for name, (x, y) in found.items():
        assert len(x) >= 30 and len(y) >= 30, (name, len(x), len(y))
        p = ks_2samp(x, y).pvalue
        assert p > P_MIN, (f"{setting}: the gold route's {name} is distributed unlike the "
                           f"others' (KS p = {p:.2g}; medians {np.median(x):.3g} vs "
                           f"{np.median(y):.3g})")
    # every route is possible: its implied departure lies after the baseline window
    assert min(found["implied"][0] + found["implied"][1]) >= 0
