"""`forecasting`: given an event description, predict node k for the next H steps.

The event starts at a source near the end of the history; the context states where, when
and how large it is, and the graph tells how it reaches k and with what delay, so the
forecast window is predictable from the prompt. The answer is the simulated future
(noise included) as a list of exactly H numbers.
"""

from __future__ import annotations

import json

import numpy as np

from envs.detect import departures
from envs.tasks.common import (
    Draft,
    EnvConfig,
    Parts,
    Task,
    context,
    event_amp,
    n_sources,
    nd,
    pick_domain,
    pick_size,
)
from envs.world import Event, draw_world, random_dag


class Forecasting(Task):
    name = "forecasting"
    kind = "sequence"

    def plan(self, rng: np.random.Generator, cfg: EnvConfig,
             design: np.random.Generator) -> Draft:
        domain = pick_domain(rng, cfg)
        n, hist = pick_size(rng, cfg, self.nodes_needed(cfg))
        h = int(cfg.horizons[int(rng.integers(len(cfg.horizons)))])
        m = n_sources(rng, n)
        edges = random_dag(rng, n, m)
        s = int(rng.integers(m))
        t0 = hist - int(rng.integers(0, 4))
        dur = int(rng.integers(8, 13))
        amp = event_amp(rng, domain)
        world = draw_world(rng, domain, n, hist + h, edges, m, [Event((s,), t0, dur, amp)],
                           cfg.noise)
        down = sorted(world.children[s])
        k = s if rng.random() < 0.25 else int(rng.choice(down))
        return Draft(world, {"source": s, "target": k, "hist": hist, "h": h})

    def finish(self, rng, cfg, draft, noisy, clean) -> Parts | None:
        w, info = draft.world, draft.info
        s, k, hist, h = info["source"], info["target"], info["hist"], info["h"]
        ev = w.events[0]
        fmt = f"%.{cfg.precision}f"
        future = [float(fmt % v) for v in noisy[k, hist:]]
        expected = [float(fmt % v) for v in clean[k, hist:]]
        base = float(departures(noisy[:, :hist]).baseline[k])
        change = f"{'+' if ev.amp > 0 else '-'}{abs(ev.amp) * 100:.0f}%"
        ctx = (f"a {w.domain.event_noun} starts at {nd(w, s)} at step {ev.t0} and moves its "
               f"{w.domain.quantity} by about {change} for {ev.duration} steps")
        path = ("the event acts on it directly" if k == s else
                f"it is fed by {nd(w, s)} through a link with a lag of {w.lags[(s, k)]} "
                f"step{'s' if w.lags[(s, k)] > 1 else ''}")
        why = (f"{nd(w, k)} sits near {base:.4g} {w.domain.unit} before the event. {nd(w, s)} is "
               f"disturbed from step {ev.t0}; {path}, so {nd(w, k)} follows it with the "
               f"usual damping. Expected path: {json.dumps(expected)}.")
        return Parts(
            question=(f"{context(w)} Given the context {ctx}, predict the value of node "
                      f"{w.label(k)} for the next {h} steps. Historical observation window: "
                      f"0-{hist - 1}."),
            rationale=why, answer=json.dumps(future), horizon=h, history=hist,
            scale=float(np.mean(np.abs(noisy[k, :hist]))),
            meta={"target": w.label(k), "source": w.label(s)},
        )
