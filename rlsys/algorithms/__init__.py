"""The RL algorithms: advantage estimators and policy losses, each a documented formula in a
file of its own, found by name from the config (`algorithm.advantage`, `algorithm.loss`), and
the rollout correction (`algorithm.correction`) that every loss shares.

- `registry.py`: the two registries and their decorators;
- `core.py`: what every algorithm shares: `policy_loss`, KL estimators, aggregation, dynamic
  sampling;
- `correction.py`: importance weights against the rollout policy (none, tis, mis);
- one file per algorithm: `grpo.py` (GRPO, Dr. GRPO, the PPO clip), `rloo.py`, `gspo.py`,
  `cispo.py`. A new estimator or loss is a new file here with `@register_advantage` or
  `@register_loss`: every module of this package is imported below.
"""

from __future__ import annotations

import importlib
import pkgutil

from rlsys.algorithms.core import (
    LossOutput,
    dynamic_sampling_mask,
    kl_penalty,
    masked_mean,
    policy_loss,
    topup_needed,
)
from rlsys.algorithms.correction import Correction, importance_weights
from rlsys.algorithms.registry import (
    ADVANTAGES,
    LOSSES,
    advantage_fn,
    loss_fn,
    register_advantage,
    register_loss,
)

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["ADVANTAGES", "LOSSES", "Correction", "LossOutput", "advantage_fn",
           "dynamic_sampling_mask", "importance_weights", "kl_penalty", "loss_fn",
           "masked_mean", "policy_loss", "register_advantage", "register_loss",
           "topup_needed"]
