"""summary.json from a run's recorded evaluations."""

from __future__ import annotations

import json

import pytest

from rlsys.train.summary import summary, write_summary


def _ev(acc: float, n: int = 100) -> dict:
    return {"root_cause": {"accuracy": acc, "success_rate": 1.0, "n": n},
            "all": {"accuracy": acc, "success_rate": 0.5, "strict_format": 0.97,
                    "claim_accuracy": 0.4, "consistency": 0.95, "modal_answer": 0.6,
                    "conclusion_accuracy": 0.45, "n": n}}


def test_summary_has_every_stage_with_intervals_and_the_paired_objective(tmp_path) -> None:
    objective = {"after sft_cot": {"mean": 0.5, "se": 0.02, "n_prompts": 3, "n_samples": 2,
                                   "components": {"accuracy": 0.3},
                                   "per_prompt": [0.2, 0.5, 0.8]},
                 "after grpo": {"mean": 0.6, "se": 0.02, "n_prompts": 3, "n_samples": 2,
                                "components": {"accuracy": 0.4},
                                "per_prompt": [0.4, 0.6, 0.8]}}
    suite = {"tasks": {"all": {"score": 0.3, "score_no_graph": 0.2, "graph_reliance": 0.1,
                               "n": 152, "accuracy": 0.3}}}
    data = summary("tiny", 1234.56, 3, {"before": _ev(0.3), "after grpo": _ev(0.4)},
                   {"after sft_align": {"lag": {"accuracy": 0.5, "n": 10, "mae": None}}},
                   {"after grpo": {"rationale": {"lag": {"share": 0.2, "n": 50}}}},
                   objective, suite)
    assert data["chance"] == pytest.approx(0.3333) and data["wall_s"] == 1234.6
    after = data["stages"]["after grpo"]
    assert after["accuracy"] == 0.4 and after["valid"] == 50  # accuracy over valid answers
    assert after["ci95"][0] < 0.4 < after["ci95"][1]
    assert after["tasks"]["root_cause"]["valid"] == 100 and after["consistency"] == 0.95
    assert after["modal_answer"] == 0.6 and after["conclusion_accuracy"] == 0.45
    assert data["align"]["after sft_align"] == {"lag": {"accuracy": 0.5, "n": 10}}
    assert "per_prompt" not in data["objective"]["after grpo"]
    assert data["objective"]["change"]["change"] == pytest.approx(0.1)
    assert data["suite"] == {"score": 0.3, "score_no_graph": 0.2, "graph_reliance": 0.1,
                             "n": 152}
    path = write_summary(tmp_path, data)
    assert json.loads(path.read_text())["run"] == "tiny"


def test_summary_without_grpo_or_suite() -> None:
    data = summary("x", 1.0, 3, {"before": _ev(0.3)}, {}, {}, {}, None)
    assert data["objective"] == {} and data["suite"] is None
