"""Plug-ins: a user's modules that register rewards (`@reward`) or task families
(`@register_task`), loaded and checked in the driver before any actor starts.

A module is a file path (`my_rewards.py`, shipped with `ray job submit --working-dir`) or a
dotted name of an installed package. A broken plug-in stops the run at start with one
message naming the module and the problem: an import that fails, an unknown name, bad
parameters, a reward with the wrong signature or one that returns the wrong number of
values on real samples, a task that cannot build a sample.

Every step that runs a plug-in's code (importing it, building samples with it, scoring with
it) runs in a daemon thread that the driver waits on for at most `reward.timeout_s`: a
plug-in that hangs stops the run with one message naming it and the step, never freezes
the driver (its thread is left behind, and dies with the process).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from envs.stream import TaskMix, generate
from envs.tasks import TASK_REGISTRY
from rewards import RewardConfigError, RewardError, RewardSet, RewardSpec, Target, load_module
from rlsys.config import Config, env_config

T = TypeVar("T")


class PluginError(ValueError):
    """A plug-in module is broken; the message names it and says what is wrong."""


def bounded(what: str, fn: Callable[[], T], timeout_s: float) -> T:
    """fn() run in a daemon thread, waited on for at most `timeout_s`; its exception is
    raised here. PluginError naming `what` if it has not returned by then."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # handed to the waiting thread, raised there
            out["error"] = e

    thread = threading.Thread(target=target, name=f"plugin-check: {what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise PluginError(f"{what} did not finish within reward.timeout_s={timeout_s:g}s: "
                          "does it wait on something that never comes? (raise "
                          "reward.timeout_s if it is only slow)")
    if "error" in out:
        raise out["error"]
    return out["value"]


def load_task_modules(modules: list[str], timeout_s: float = 30.0) -> None:
    """Import task plug-ins so their `@register_task` classes join the registry."""
    for m in modules:
        try:
            bounded(f"task module {m}: importing it", lambda m=m: load_module(m), timeout_s)
        except RewardConfigError as e:  # the loader is shared with rewards; re-label it
            raise PluginError(str(e).replace("reward module", "task module", 1)) from None


def check(cfg: Config, probes_per_task: int = 2) -> None:
    """Load every plug-in of the config and try it on real samples of the configured tasks,
    each step within `reward.timeout_s`.

    Built-in rewards are only built (names and parameters checked), never called here: the
    AI judge, say, would send requests."""
    limit = cfg.reward.timeout_s
    load_task_modules(cfg.data.modules, limit)
    TaskMix.of(cfg.data.tasks)  # unknown task names fail here, listing the known ones
    samples = []
    for task in cfg.data.tasks:
        def build(task: str = task) -> list:
            return generate(cfg.data.seed + 97, range(probes_per_task), TaskMix.of([task]),
                            env_config(cfg))
        try:
            samples += bounded(f"task '{task}' ({_origin_of_task(task)}): building a sample",
                               build, limit)
        except PluginError:
            raise
        except Exception as e:  # user task code: report it with the task's module
            raise PluginError(f"task '{task}' ({_origin_of_task(task)}) cannot build a sample: "
                              f"{type(e).__name__}: {e}") from e
    # The judge actor's address is known only once it runs; its parameters are checked
    # here with a stand-in address (nothing is sent to it).
    url = cfg.judge_server.base_url or ("http://judge-actor.invalid/v1"
                                 if cfg.judge_server.mode == "actor" else None)
    targets = [Target.from_record(s.to_record()) for s in samples]
    completions = [s.completion for s in samples]
    for spec in (RewardSpec.from_mapping(r) for r in cfg.reward_specs(url)):
        where = f"reward plug-in {spec.module}" if spec.module else f"reward '{spec.name}'"
        try:  # imports a plug-in, checks params and signature
            one = bounded(f"{where}: importing it", lambda spec=spec: RewardSet([spec]), limit)
        except RewardConfigError as e:
            raise PluginError(f"{where}: {e}" if spec.module else str(e)) from None
        idx = [i for i, t in enumerate(targets) if one.rewards[0].applies(t.kind)]
        if spec.module and idx:
            bounded(f"{where}: scoring {len(idx)} reference completions",
                    lambda one=one, idx=idx: _try_reward(
                        one, [completions[i] for i in idx], [targets[i] for i in idx]), limit)


def _try_reward(one: Any, completions: list[str], targets: list[Any]) -> None:
    """Score reference completions with one plug-in reward. A reward may fail on some
    inputs (scored 0 and counted in training); one that fails on every completion alone,
    or returns the wrong shape, is broken."""
    try:
        one.score(completions, targets)
        return
    except RewardError as e:
        batch_error = e
    failed = 0
    for c, t in zip(completions, targets, strict=True):
        try:
            one.score([c], [t])
        except RewardError:
            failed += 1
    if not batch_error.raised or failed == len(completions):
        raise PluginError(f"reward plug-in {one.specs[0].module}: {batch_error} (on "
                          f"{len(completions)} reference completions; a reward takes "
                          "(completions, targets) and returns one float per completion)")


def _origin_of_task(name: str) -> str:
    task = TASK_REGISTRY.get(name)
    return type(task).__module__ if task is not None else "not registered"
