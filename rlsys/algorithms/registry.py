"""The two registries of the RL algorithms: advantage estimators and policy losses.

Each is an explicit dict filled by a decorator in the module that defines the entry
(`grpo.py`, `rloo.py`, `gspo.py`, `cispo.py`, ...); `rlsys.algorithms` imports every module
of its package, so adding an estimator or a loss is one new file there. The config names
them (`algorithm.advantage`, `algorithm.loss`); an unknown or duplicate name is an error
that lists what exists.

The signatures (shapes as in `rlsys.algorithms.core`):
- an advantage estimator maps rewards `(G*n,)` or `(G, n)`, consecutive groups of n
  rollouts of one prompt, to advantages of the same shape;
- a policy loss maps `(logp, old_logp, advantages, mask, clip_low, clip_high)`, every tensor
  `(B, T)` and already zero where `mask` is False, to a `Surrogate`: the per-token loss
  (before KL, importance weights and aggregation) and the tokens whose gradient a clip
  removed. `core.policy_loss` does the rest, the same for every loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Surrogate(NamedTuple):
    """What a policy loss returns: per-token loss `(B, T)` and the clipped tokens (bool)."""

    per_token: Any  # torch.Tensor; the registry itself imports no torch
    clipped: Any


ADVANTAGES: dict[str, Callable[..., Any]] = {}
LOSSES: dict[str, Callable[..., Surrogate]] = {}


def _register(table: dict[str, Callable[..., Any]], kind: str, name: str) -> Callable[[F], F]:
    def add(fn: F) -> F:
        if name in table:
            raise ValueError(f"{kind} {name!r} is registered twice ({table[name].__module__} "
                             f"and {fn.__module__}): give the new one another name")
        table[name] = fn
        return fn
    return add


def register_advantage(name: str) -> Callable[[F], F]:
    """Decorator: `fn(rewards, n) -> advantages` under `name` (`algorithm.advantage`)."""
    return _register(ADVANTAGES, "advantage estimator", name)


def register_loss(name: str) -> Callable[[F], F]:
    """Decorator: `fn(logp, old_logp, adv, mask, *, clip_low, clip_high) -> Surrogate`
    under `name` (`algorithm.loss`)."""
    return _register(LOSSES, "policy loss", name)


def _lookup(table: dict[str, Callable[..., Any]], kind: str, key: str,
            name: str) -> Callable[..., Any]:
    if name not in table:
        raise ValueError(f"unknown {kind} {key}={name!r}; choose one of {sorted(table)} "
                         f"(a new one is a file in rlsys/algorithms/ with @register_"
                         f"{key.split('.')[-1]})")
    return table[name]


def advantage_fn(name: str) -> Callable[..., Any]:
    """The advantage estimator registered as `name`; the error lists the known ones."""
    return _lookup(ADVANTAGES, "advantage estimator", "algorithm.advantage", name)


def loss_fn(name: str) -> Callable[..., Surrogate]:
    """The policy loss registered as `name`; the error lists the known ones."""
    return _lookup(LOSSES, "policy loss", "algorithm.loss", name)
