"""Your own task family, in one file: subclass `Task`, decorate, name it in the config.

    data:
      modules: [examples/my_task.py]
      tasks: {root_cause: 1, my_onset: 1}

`plan` draws a world (here: one source hit by an event), `finish` reads the simulated
series and writes the question, the options with the gold one, and a reference rationale
(or returns None to have the world redrawn). Everything is drawn from the generators it is
given, so a sample is rebuilt exactly from (seed, index). Before training on a new family,
add a `solve` oracle and audit it as the built-in families are: import this module, then
`envs.quality.audit(["my_onset"], 2000, seed, cfg)`.
"""

from __future__ import annotations

import numpy as np

from envs.detect import departures
from envs.tasks import Draft, EnvConfig, Parts, Task, register_task
from envs.tasks.common import (
    build,
    context,
    departure_text,
    n_sources,
    nd,
    pick_domain,
    pick_size,
    shuffle,
)


@register_task
class Onset(Task):
    """At which step does node k first leave its baseline?"""

    name = "my_onset"

    def plan(self, rng: np.random.Generator, cfg: EnvConfig,
             design: np.random.Generator) -> Draft:
        domain = pick_domain(design, cfg)
        n, t_len = pick_size(design, cfg, self.nodes_needed(cfg))
        return Draft(build(rng, cfg, domain, n, t_len, n_sources(design, n), fire=[0]))

    def finish(self, rng: np.random.Generator, cfg: EnvConfig, draft: Draft,
               noisy: np.ndarray, clean: np.ndarray) -> Parts | None:
        w = draft.world
        shown, truth = departures(noisy), departures(clean)
        # a node whose onset the prompt's noisy series shows exactly where the truth has it
        agree = [i for i in range(w.n) if truth.onset[i] >= 0 and shown.onset[i] == truth.onset[i]]
        if not agree:
            return None
        k = int(rng.choice(agree))
        t = int(truth.onset[k])
        shifts = [d for d in (-6, -4, -2, 2, 4, 6) if 0 <= t + d < w.length]
        if len(shifts) < cfg.n_options - 1:
            return None
        decoys = rng.choice(shifts, size=cfg.n_options - 1, replace=False)
        options, gold = shuffle(rng, [f"step {t}"] + [f"step {t + int(d)}" for d in decoys], 0)
        return Parts(
            question=(f"{context(w)} At which step does {nd(w, k)} first move more than 10% "
                      "away from its baseline?"),
            options=options, gold=gold,
            rationale=(f"{departure_text(w, shown, k)}; before that it stays within 10% of "
                       f"its baseline. This matches option {'ABCDEF'[gold]}."))
