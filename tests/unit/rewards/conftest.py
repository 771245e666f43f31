"""Shared fixtures for the reward tests: the four public ST-Test rows (a copy of the
shared fixture, kept next to the tests so they run from a bare checkout)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ST_TEST_ROWS = Path(__file__).parent / "data" / "streasoner_st_test_cases.jsonl"


@pytest.fixture(scope="session")
def st_rows() -> list[dict]:
    with ST_TEST_ROWS.open() as f:
        rows = [json.loads(line) for line in f if line.strip()]
    assert len(rows) == 4
    return rows
