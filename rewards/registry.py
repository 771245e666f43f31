"""The reward registry: a name -> reward dict filled by ``@reward``, and :class:`RewardSet`.

A reward scores a batch of completions against their targets and returns one float per
completion. It is either a function, whose extra keyword arguments are its parameters::

    @reward("my_len_penalty", kinds=("choice", "sequence"))
    def my_len_penalty(
        completions: Sequence[str], targets: Sequence[Target], max_chars: int = 2000
    ) -> list[float]:
        return [-1.0 if len(c) > max_chars else 0.0 for c in completions]

or a module-level class (it pickles into Ray workers) whose ``__init__(**params)`` builds
it and whose ``__call__(completions, targets) -> list[float]`` scores::

    @reward("closeness", kinds=("sequence",))
    class Closeness:
        def __init__(self, alpha: float = 0.1) -> None:
            self.alpha = alpha

        def __call__(self, completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
            ...

``kinds`` lists the target kinds ("choice", "sequence", "text", "value") the reward applies to
(default: all); a reward only ever sees targets of those kinds. A user puts rewards in
their own file and names it in the config; the file is imported before the name is looked
up, so its decorators register it::

    rewards:
      - {name: exact_match, weight: 1.0}
      - {name: my_len_penalty, weight: 0.1, module: examples/my_rewards.py,
         params: {max_chars: 2000}}

``module`` is a file path (``*.py`` or containing "/"; relative to the current directory)
or a dotted module (``pkg.mod``). A :class:`RewardSet` pickles as its specs and rebuilds
itself on arrival, so a Ray worker imports the plug-in file on its own; a single built
reward from a plug-in file does not travel that way (its class lives in a module only the
process that loaded the file has).

Errors: configuration problems (unknown name, bad params, a plug-in that does not load, a
duplicate name) raise :class:`RewardConfigError`, a ``ValueError``; a reward that raises or
returns a malformed list at scoring time raises :class:`RewardError` naming it. Nothing is
swallowed here: the reward worker is the one place that catches, counts and scores 0.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any

from rewards.types import KINDS, Target

RewardFn = Callable[[Sequence[str], Sequence[Target]], list[float]]

MAX_ABS_REWARD = 1e3
"""A component value beyond this magnitude is a bug in the reward, not a signal."""


class RewardConfigError(ValueError):
    """A reward cannot be built from its configuration (or registered)."""


class RewardError(RuntimeError):
    """A reward failed while scoring; ``reward`` names it so the caller can count by name.
    ``raised`` tells a reward that raised from one that returned something malformed."""

    def __init__(self, reward: str, message: str, raised: bool = False) -> None:
        super().__init__(f"reward '{reward}': {message}")
        self.reward = reward
        self.raised = raised


@dataclass(frozen=True)
class Registered:
    """One registry entry: the function or class, the kinds it applies to, who defined it."""

    name: str
    obj: Callable[..., Any]
    kinds: frozenset[str]
    module: str
    is_class: bool


_REGISTRY: dict[str, Registered] = {}


def reward(name: str, kinds: Sequence[str] | None = None) -> Callable[[Any], Any]:
    """Register a reward function or class under ``name`` (see the module docstring)."""
    applies = frozenset(KINDS if kinds is None else kinds)
    unknown = applies - set(KINDS)
    if unknown or not applies:
        raise RewardConfigError(f"reward '{name}': kinds must be a non-empty subset of {KINDS}")

    def register(obj: Any) -> Any:
        if name in _REGISTRY:
            raise RewardConfigError(
                f"reward '{name}' is already registered (by module {_REGISTRY[name].module})"
            )
        if not callable(obj):
            raise RewardConfigError(f"reward '{name}': {obj!r} is neither a function nor a class")
        _REGISTRY[name] = Registered(name, obj, applies, obj.__module__, inspect.isclass(obj))
        return obj

    return register


def registered() -> dict[str, Registered]:
    """A copy of the registry, name -> entry."""
    return dict(_REGISTRY)


def unregister(name: str) -> None:
    """Remove a reward (tests; rolling back a plug-in that failed half-way)."""
    _REGISTRY.pop(name, None)


@dataclass
class RewardSpec:
    """How a config selects a reward: name, weight, constructor params, plug-in module."""

    name: str
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    module: str | None = None

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> RewardSpec:
        """Build from a YAML mapping, rejecting unknown keys (a typo must not pass)."""
        unknown = set(m) - {"name", "weight", "params", "module"}
        if unknown:
            raise RewardConfigError(f"reward spec {dict(m)!r}: unknown keys {sorted(unknown)}")
        if "name" not in m:
            raise RewardConfigError(f"reward spec {dict(m)!r} has no 'name'")
        return cls(
            name=str(m["name"]),
            weight=float(m.get("weight", 1.0)),
            params=dict(m.get("params") or {}),
            module=m.get("module"),
        )


_loaded: dict[str, Any] = {}


def load_module(path_or_dotted: str) -> Any:
    """Import a plug-in (a ``.py`` file path or a dotted module) so its rewards register.

    Loading the same file twice returns the first module: registering again would be a
    duplicate. A module that fails is rolled back (its half-registered rewards removed).
    """
    is_path = path_or_dotted.endswith(".py") or "/" in path_or_dotted or "\\" in path_or_dotted
    key = str(Path(path_or_dotted).resolve()) if is_path else path_or_dotted
    if key in _loaded:
        return _loaded[key]
    before = set(_REGISTRY)
    try:
        module = _import_file(key, path_or_dotted) if is_path else _import_dotted(key)
    except RewardConfigError:
        _rollback(before)
        raise
    _loaded[key] = module
    return module


def _import_file(resolved: str, given: str) -> Any:
    path = Path(resolved)
    if not path.is_file():
        raise RewardConfigError(f"reward module {given}: file not found ({resolved})")
    digest = hashlib.sha1(resolved.encode()).hexdigest()[:10]
    mod_name = f"_strl_rewards_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise RewardConfigError(f"reward module {given}: not a loadable Python file")
    module = importlib.util.module_from_spec(spec)
    # Registered before exec so classes defined in the file pickle within this process.
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.modules.pop(mod_name, None)
        raise RewardConfigError(
            f"reward module {given}: syntax error at line {e.lineno}: {e.msg}"
        ) from e
    except Exception as e:  # user code at import time: any failure is reported with the file
        sys.modules.pop(mod_name, None)
        raise RewardConfigError(f"reward module {given}: {type(e).__name__}: {e}") from e
    return module


def _import_dotted(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except SyntaxError as e:
        raise RewardConfigError(
            f"reward module {name} ({e.filename}): syntax error at line {e.lineno}: {e.msg}"
        ) from e
    except Exception as e:  # user code at import time: any failure is reported with the name
        raise RewardConfigError(f"reward module {name}: {type(e).__name__}: {e}") from e


def _rollback(before: set[str]) -> None:
    for name in set(_REGISTRY) - before:
        unregister(name)


@dataclass(frozen=True)
class BoundReward:
    """A built reward: the callable with its parameters bound, and the kinds it scores."""

    name: str
    kinds: frozenset[str]
    fn: RewardFn

    def applies(self, kind: str) -> bool:
        """Whether this reward scores targets of ``kind``."""
        return kind in self.kinds

    def __call__(self, completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
        return self.fn(completions, targets)


@dataclass(frozen=True)
class _Partial:
    """A function reward with keyword params bound (module-level, so it pickles)."""

    fn: Callable[..., list[float]]
    params: dict[str, Any]

    def __call__(self, completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
        return self.fn(completions, targets, **self.params)


def build_reward(spec: RewardSpec) -> BoundReward:
    """Import ``spec.module`` if any, look the name up, bind and check params, build."""
    if spec.module:
        load_module(spec.module)
    entry = _REGISTRY.get(spec.name)
    if entry is None:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        hint = "" if spec.module else " (a plug-in reward needs 'module: path/to/file.py')"
        raise RewardConfigError(f"unknown reward '{spec.name}'; known rewards: {known}{hint}")
    params = dict(spec.params)
    sig = inspect.signature(entry.obj)
    call_sig = inspect.signature(entry.obj.__call__ if entry.is_class else entry.obj)
    positional = [p for p in call_sig.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    if entry.is_class:
        positional = positional[1:]  # self
    if len(positional) < 2 and not any(p.kind is p.VAR_POSITIONAL for p in positional):
        what = f"{entry.obj.__name__}.__call__" if entry.is_class else entry.obj.__name__
        raise RewardConfigError(
            f"reward '{spec.name}': {what}{call_sig} must take (completions, targets) "
            "positionally and return one float per completion"
        )
    accepted = [p for p in sig.parameters.values() if p.kind is not p.VAR_POSITIONAL]
    if not entry.is_class:
        accepted = accepted[2:]  # completions, targets
    takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted)
    names = [p.name for p in accepted if p.kind is not p.VAR_KEYWORD]
    for key in params:
        if key not in names and not takes_any:
            raise RewardConfigError(
                f"reward '{spec.name}' has no parameter '{key}' "
                f"(accepted: {', '.join(names) or 'none'})"
            )
    try:
        if entry.is_class:
            sig.bind(**params)
        else:
            sig.bind(None, None, **params)
    except TypeError as e:
        raise RewardConfigError(f"reward '{spec.name}': bad params {params}: {e}") from e
    if entry.is_class:
        try:
            fn = entry.obj(**params)
        except (TypeError, ValueError) as e:
            raise RewardConfigError(f"reward '{spec.name}': bad params {params}: {e}") from e
    else:
        fn = _Partial(entry.obj, params) if params else entry.obj
    return BoundReward(spec.name, entry.kinds, fn)


@dataclass
class ScoreResult:
    """Weighted totals and per-reward values (None where a reward does not apply)."""

    total: list[float]
    components: dict[str, list[float | None]]


class RewardSet:
    """Several weighted rewards scored together: ``total = sum(weight * value)``."""

    def __init__(self, specs: Sequence[RewardSpec | Mapping[str, Any]]) -> None:
        specs = [s if isinstance(s, RewardSpec) else RewardSpec.from_mapping(s) for s in specs]
        if not specs:
            raise RewardConfigError("a reward set needs at least one reward")
        names = [s.name for s in specs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise RewardConfigError(
                f"rewards {sorted(dup)} appear twice; components are keyed by name"
            )
        for s in specs:
            if not math.isfinite(s.weight):
                raise RewardConfigError(f"reward '{s.name}': weight must be finite")
        self.specs = list(specs)
        self.rewards = [build_reward(s) for s in specs]

    def score(self, completions: Sequence[str], targets: Sequence[Target]) -> ScoreResult:
        """Score every reward on the targets it applies to; check what each returned."""
        n = len(completions)
        if len(targets) != n:
            raise ValueError(f"{n} completions but {len(targets)} targets")
        total = [0.0] * n
        components: dict[str, list[float | None]] = {}
        for spec, rew in zip(self.specs, self.rewards, strict=True):
            idx = [i for i, t in enumerate(targets) if t.kind in rew.kinds]
            column: list[float | None] = [None] * n
            if idx:
                if len(idx) == n:
                    values = _call(rew, completions, targets)
                else:
                    values = _call(rew, [completions[i] for i in idx], [targets[i] for i in idx])
                for i, v in zip(idx, values, strict=True):
                    column[i] = v
                    total[i] += spec.weight * v
            components[spec.name] = column
        return ScoreResult(total, components)

    def __call__(self, completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
        return self.score(completions, targets).total

    def __reduce__(self) -> tuple[type[RewardSet], tuple[list[RewardSpec]]]:
        # Pickled as its specs: the receiving process imports plug-in files itself, so a
        # class defined in one pickles into a Ray worker that never imported that file.
        return (RewardSet, (self.specs,))


def _call(rew: BoundReward, completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
    try:
        raw = rew(completions, targets)
    except Exception as e:  # re-raised with the reward's name for per-reward counting
        raise RewardError(rew.name, f"raised {type(e).__name__}: {e}", raised=True) from e
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
        raise RewardError(rew.name, f"returned {type(raw).__name__}, expected a list of floats")
    if len(raw) != len(completions):
        raise RewardError(
            rew.name, f"returned {len(raw)} values for {len(completions)} completions"
        )
    out: list[float] = []
    for i, v in enumerate(raw):
        # float() would also accept "1.0"; a reward returning strings has a bug to surface.
        if not isinstance(v, Real):
            raise RewardError(rew.name, f"value {i} is {v!r}, not a real number")
        x = float(v)
        if not math.isfinite(x) or abs(x) > MAX_ABS_REWARD:
            raise RewardError(rew.name, f"value {i} is {x!r}, outside ±{MAX_ABS_REWARD:g}")
        out.append(x)
    return out
