"""Shared fixture of the integration tests: the embedded tiny model, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rlsys.modelinit import build_model

    return build_model(tmp_path_factory.mktemp("tiny") / "model", "tiny", seed=0,
                       corpus_size=300, progress=False)
