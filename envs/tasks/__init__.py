"""Task families: a registry filled by a decorator, looked up by name from configs.

A plug-in task is a `Task` subclass registered with `@register_task`; a duplicate name is
an error. The built-in families live one per module in this package.
"""

from __future__ import annotations

from envs.tasks.align import Align, AlignNode
from envs.tasks.common import Draft, EnvConfig, Parts, Task
from envs.tasks.correlation import Correlation
from envs.tasks.entity import Entity
from envs.tasks.etiological import Etiological
from envs.tasks.forecasting import Forecasting
from envs.tasks.intervention import Intervention
from envs.tasks.path_description import PathDescription
from envs.tasks.propagation import Propagation
from envs.tasks.root_cause import RootCause

TASK_REGISTRY: dict[str, Task] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task family available under `cls.name`."""
    if cls.name in TASK_REGISTRY:
        raise ValueError(f"task '{cls.name}' is already registered "
                         f"(by {type(TASK_REGISTRY[cls.name]).__module__})")
    TASK_REGISTRY[cls.name] = cls()
    return cls


for _cls in (Etiological, Entity, Correlation, RootCause, Propagation, Forecasting,
             PathDescription, Intervention, Align, AlignNode):
    register_task(_cls)


def get_task(name: str) -> Task:
    try:
        return TASK_REGISTRY[name]
    except KeyError:
        known = ", ".join(TASK_REGISTRY)
        raise ValueError(f"unknown task '{name}'; known tasks: {known}") from None


__all__ = ["TASK_REGISTRY", "Draft", "EnvConfig", "Parts", "Task", "get_task", "register_task"]
