"""The intervention family: counterfactual re-simulation with common random numbers, the
gold read off the outcomes, the decoys' timing, and what the sample carries for plots."""

from __future__ import annotations

import numpy as np
import pytest

from envs.prompt import parse_prompt
from envs.sde import SDEArrays, simulate, split
from envs.stream import TaskMix, generate
from envs.tasks import EnvConfig, get_task
from envs.tasks.intervention import HORIZON, clear_best, close_link, score

MIX = TaskMix.of(["intervention"])


def _chain(t_len: int = 30) -> SDEArrays:
    """Three nodes 0 -> 1 -> 2 (lags 2 and 1), node 0 jumps at step 10."""
    rng = np.random.default_rng(0)
    a = np.full((t_len, 3), 0.2)
    b = np.full((t_len, 3), -0.2)
    a[10:, 0], b[10:, 0] = 0.6 * 1.5, -0.6
    weight = np.full((t_len, 2), 0.5)
    return SDEArrays(a=a, b=b, c=np.zeros((t_len, 3)), src=np.array([0, 1]),
                     dst=np.array([1, 2]), lag=np.array([2, 1]), weight=weight,
                     sigma=np.full(3, 0.003), g=np.array([[1.0] * 3, [0.0] * 3, [0.0] * 3]),
                     y0=np.ones(3), noise=rng.standard_normal((t_len, 3)))


def test_a_closure_changes_only_what_lies_downstream_of_it_and_after_it() -> None:
    w = _chain()
    cut = close_link(w, edge=1, first=12, last=19)  # 1 -> 2 carries nothing into 12..19
    (y,), (z,) = (split(simulate([x], with_noise_free=False), [x]) for x in (w, cut))
    y, z = y[0], z[0]
    # common random numbers: the same noise and start, so nothing upstream moves at all
    np.testing.assert_array_equal(y[:2], z[:2])
    np.testing.assert_array_equal(y[2, :12], z[2, :12])
    # node 2 no longer follows node 1 during the closure: it stays at its own level
    assert np.abs(y[2, 12:20] - 1).max() > 0.2
    assert np.abs(z[2, 12:20] - 1).max() < 0.05
    assert np.abs(z[2, 22:] - 1).max() > 0.2  # and follows it again once it reopens
    # the original is untouched, and an empty window is the original world
    assert w.weight[14:19, 1].min() == 0.5
    same = close_link(w, edge=1, first=15, last=14)
    np.testing.assert_array_equal(simulate([same], False), simulate([w], False))


def test_scores_and_margin() -> None:
    y = np.array([10.0, 12.0, 13.0, 11.0])
    assert score("peak", y, 10.0, 10.5, +1) == 3.0
    assert score("steps", y, 10.0, 10.5, +1) == 3.0
    assert score("excess", y, 10.0, 10.5, +1) == pytest.approx(1.5 + 2.5 + 0.5)
    assert score("steps", 20 - y, 10.0, 9.5, -1) == 3.0  # a drop is an excess below
    assert clear_best("peak", [1.0, 2.0, 3.0]) and not clear_best("peak", [1.5, 2.0, 3.0])
    assert clear_best("steps", [0.0, 2.0]) and not clear_best("steps", [0.0, 1.0])


@pytest.mark.parametrize("cfg", [EnvConfig(), EnvConfig(nodes=(3,), lengths=(36,),
                                                        n_options=3, precision=0)])
def test_the_gold_is_the_best_outcome_of_the_re_simulation(cfg: EnvConfig) -> None:
    for s in generate(5, range(40), MIX, cfg):
        m = s.meta
        first, last = m["window"]
        assert last - first + 1 == HORIZON and s.series.shape[1] == first  # only the past
        scores = m["scores"]
        assert min(scores, key=scores.get) == s.answer
        assert clear_best(m["objective"], [scores[s.answer]] + [
            v for k, v in scores.items() if k != s.answer])
        # left alone, the disturbance reaches the target inside the window; a decoy's
        # closure changes nothing there (its link carries nothing), the gold's stops it
        alone = np.array(m["outcomes"]["none"])
        for letter, ys in m["outcomes"].items():
            if letter not in ("none", s.answer):
                np.testing.assert_allclose(ys, alone)
        gold = np.array(m["outcomes"][s.answer])
        assert np.abs(alone - gold).max() > 0.05 * np.abs(gold).mean()


def test_decoys_arrive_before_or_after_the_window_and_the_prompt_says_how_to_tell() -> None:
    seen = set()
    for s in generate(2, range(60), MIX):
        first, last = s.meta["window"]
        gold = int(s.options[ord(s.answer) - 65].split()[4])
        for node, a in s.meta["arrivals"].items():
            if node == gold:
                assert a == first
            else:
                assert a < first - 4 or a > last
                seen.add("early" if a < first else "late")
        q = s.question
        assert f"The series end at step {first - 1}." in q
        assert f"for steps {first} to {last}" in q
        assert get_task("intervention").solve(parse_prompt(s.prompt())) == ord(s.answer) - 65
    assert seen == {"early", "late"}


def test_show_prints_the_outcomes_and_overlays_them_on_the_target(tmp_path, monkeypatch) -> None:
    import matplotlib.pyplot as plt

    from envs.show import describe, plot

    (s,) = generate(0, [0], MIX, EnvConfig(nodes=(5,), lengths=(48,), n_options=3))
    text = " ".join(describe(s).split())  # unwrapped
    assert "re-simulated with the same noise: left alone" in text
    assert all(f"{letter} {s.meta['scores'][letter]:g}" in text for letter in "ABC")
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    assert plot(s, tmp_path / "i.png").read_bytes()[:4] == b"\x89PNG"
    target_panel = figures[0].axes[s.meta["target"]]
    labels = {line.get_label() for line in target_panel.get_lines()}
    assert {"left alone", f"{s.answer} (gold)"} <= labels and len(labels) >= 5
    first, last = s.meta["window"]
    assert all(ax.get_xlim()[1] >= last for ax in figures[0].axes[:-1])
