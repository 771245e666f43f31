"""`strl eval` as a user runs it on the checkpoint of a real tiny training run (vLLM in
process): the eval suite, the ST-Test fixture file, and a comparison with the run's own
end-of-run evaluation (same questions, same digest)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from envs import evalsuite
from tests.integration.runner import ROOT

pytestmark = pytest.mark.slow
FIXTURES = ROOT / "tests" / "unit" / "rewards" / "data" / "streasoner_st_test_cases.jsonl"


def _strl(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "rlsys.cli", *args], capture_output=True,
                          text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_eval_a_checkpoint_a_file_and_compare(trained_run, tmp_path: Path) -> None:
    ckpt = trained_run.checkpoint
    _strl("eval", "--checkpoint", str(ckpt), "--per-cell", "1", "--out", str(tmp_path / "a"))
    a = json.loads((tmp_path / "a" / "eval.json").read_text())
    own = json.loads((trained_run.run / "eval" / "eval.json").read_text())
    assert a["digest"] == own["digest"] and a["tasks"]["all"]["n"] == len(evalsuite.cells())
    assert a["card"]["precision"] == 0 and a["sampling"]["max_tokens"] == 16  # the card's
    assert a["warnings"] == [] and a["tasks"]["all"]["over_context"] == 0
    assert set(a["nodes"]["root_cause"]) == {"5", "10"}  # 4 options need 5 nodes

    proc = _strl("eval", "--checkpoint", str(ckpt), "--data", str(FIXTURES), "--out",
                 str(tmp_path / "b"))
    b = json.loads((tmp_path / "b" / "eval.json").read_text())
    assert b["file"] == str(FIXTURES) and b["tasks"]["all"]["n"] == 4
    assert list(b["tasks"]) == ["etiological", "entity", "correlation", "forecasting", "all"]
    assert "| forecasting | 1 |" in proc.stdout

    proc = _strl("eval", "--compare", str(tmp_path / "a"), str(trained_run.run / "eval"),
                 "--out", str(tmp_path / "c"))
    text = (tmp_path / "c" / "compare.md").read_text()
    assert "| entity |" in text and "not comparable" not in text
    assert (tmp_path / "c" / "compare.png").read_bytes()[:4] == b"\x89PNG"
