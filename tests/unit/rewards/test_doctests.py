"""Run the examples in the rewards modules' docstrings: they are part of the docs."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "rewards.extract",
    "rewards.types",
    "rewards.registry",
    "rewards.builtin",
    "rewards.spatial",
    "rewards.judge",
    "rewards.metrics",
    "rewards.rationale",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if name != "rewards.registry":  # its docstring shows code to write, not to run
        assert result.attempted > 0
