"""Curves and report.md from per-step metrics, checked against numbers worked out by hand."""

from __future__ import annotations

import doctest
import json
import struct
from pathlib import Path

import pytest

from rewards.types import Target
from rlsys.train import report
from rlsys.train.data import Prompt
from rlsys.train.report import first_last_fifth, plot_curves, write_report
from rlsys.train.runlog import RunLogger, read_metrics
from rlsys.train.trainer import by_skill, held_out_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CONFIG = {"model": {"path": "models/tiny"}, "trainer": {"steps": 30}}
BEFORE = {
    "entity": {"accuracy": 0.25, "success_rate": 0.9, "mae": None, "n": 40},
    "forecasting": {"accuracy": None, "success_rate": 0.5, "mae": 2.0, "n": 10},
}
AFTER = {
    "entity": {"accuracy": 0.5, "success_rate": 1.0, "mae": None, "n": 40},
    "forecasting": {"accuracy": None, "success_rate": 0.8, "mae": 1.5, "n": 10},
}


def run_metrics(steps: int) -> list[dict]:
    """The trainer's names. reward = step / 10; a 5 s step: generate 2 s, train 1 s, sync
    0.5 s on even steps; 200 tokens generated; 2 MiB synced; step 3 empty, step 7 skipped."""
    rows = [{"step": 5, "reward/mean": 99.0}]  # logged before a resume, superseded below
    for s in range(1, steps + 1):
        row = {"step": s, "reward/mean": s / 10, "reward/format": 1.0, "acc/entity": s / steps,
               "kl": 0.001 * s, "time/generate": 2.0, "time/train": 1.0, "time/step": 5.0,
               "generated_tokens": 200.0, "tokens_per_s": 100.0, "sync_bytes": 2 * 1024**2,
               "skipped": int(s == 7), "mismatch/kl": 0.001 * (s % 3),
               "clip_frac": 0.0}
        if s % 2 == 0:
            row["time/sync"] = 0.5
        if s == 3:
            row["empty_step"] = 1.0
        rows.append(row)
    return rows


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_first_last_fifth_doctests() -> None:
    assert doctest.run_docstring_examples(report.first_last_fifth, {}, verbose=False) is None
    failures, _ = doctest.testmod(report, verbose=False)
    assert failures == 0


def test_first_last_fifth_sizes() -> None:
    assert first_last_fifth([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]) == (1.0, 7.0)  # 7 // 5 = 1
    assert first_last_fifth([float(i) for i in range(12)]) == (0.5, 10.5)  # 12 // 5 = 2
    with pytest.raises(ValueError, match="no values"):
        first_last_fifth([])


@pytest.mark.parametrize("steps", [1, 30])
def test_plot_curves_writes_a_png(tmp_path: Path, steps: int) -> None:
    out = plot_curves(run_metrics(steps)[1:], tmp_path / "sub" / "curves.png")
    assert out == tmp_path / "sub" / "curves.png"
    assert png_size(out) == (1200, 800) and out.stat().st_size > 20_000


def test_plot_curves_tolerates_missing_metrics(tmp_path: Path) -> None:
    out = plot_curves([{"step": 1, "time/train": 0.5}], tmp_path / "c.png")
    assert png_size(out) == (1200, 800)
    assert png_size(plot_curves([], tmp_path / "empty.png")) == (1200, 800)


def test_report_numbers_are_the_hand_checked_ones(tmp_path: Path) -> None:
    sft = {"entity": {"accuracy": 0.4, "success_rate": 0.95, "n": 40},
           "all": {"accuracy": 0.4, "success_rate": 0.9, "n": 50, "strict_format": 0.88,
                   "claims": 120, "claim_accuracy": 0.75, "consistency": 0.95,
                   "modal_answer": 0.6, "conclusion_accuracy": 0.45}}
    out = write_report(tmp_path, run_metrics(30), BEFORE, AFTER, CONFIG,
                       extra={"wall_s": 3725, "node": "cpu-0", "seeds": {"n": 50}},
                       stages={"before": BEFORE, "after sft_cot": sft, "after grpo": AFTER})
    assert out == tmp_path / "report.md"
    md = out.read_text()
    assert png_size(tmp_path / "curves.png") == (1200, 800)
    assert "![training curves](curves.png)" in md
    # summary
    assert "| model | `models/tiny` |" in md
    # the policy update: the rollout/learner gap (0, 0.001, 0.002 repeating over 30 steps)
    assert "| `mismatch/kl` | 0.001 | 0 | 0.002 |" in md
    assert "| `clip_frac` | 0 | 0 | 0 |" in md
    assert "| steps logged | 30 (steps 1–30) |" in md
    assert "| wall time | 1h 02m 05s |" in md and "| node | cpu-0 |" in md
    # before/after; "all" pools by n: success (0.9*40 + 0.5*10) / 50 = 0.82 -> (40 + 8) / 50
    assert "| entity | 40 | 0.250 | 0.500 | +0.250 | 0.900 | 1.000 | +0.100 | - | - | - |" in md
    assert ("| forecasting | 10 | - | - | - | 0.500 | 0.800 | +0.300 "
            "| 2.000 | 1.500 | -0.500 |") in md
    assert ("| all | 50 | 0.250 | 0.500 | +0.250 | 0.820 | 0.960 | +0.140 "
            "| 2.000 | 1.500 | -0.500 |") in md
    # a fifth of 30 steps is 6: mean(0.1..0.6) = 0.35, mean(2.5..3.0) = 2.75; the stale
    # reward 99 of step 5 was replaced on resume
    assert "steps 1–6 vs 25–30" in md
    assert "| `reward/mean` | 0.350 | 2.750 | +2.400 |" in md
    assert "| `reward/format` | 1.000 | 1.000 | +0.000 |" in md
    # time: 2 + 1 + 0.25 (sync on half the steps) = 3.25 s of a 5 s step, 1.75 s elsewhere
    assert "| generate | 2.000 | 40.0% |" in md
    assert "| train | 1.000 | 20.0% |" in md
    assert "| sync | 0.250 | 5.0% |" in md
    assert "| other (outside the phases) | 1.750 | 35.0% |" in md
    assert "| **step (measured)** | 5.000 | 100.0% |" in md
    assert "| reference |" not in md  # never logged
    # throughput: 200 tokens per 5 s step = 40 tokens/s end to end
    assert "| generated tokens / s of generation (mean over steps) | 100.0 |" in md
    assert "| generated tokens / s of step time (whole run) | 40.0 |" in md
    assert "| bytes synced / step (mean) | 2.00 MiB |" in md
    assert "| skipped steps (no update) | 2 of 30 (1 with every group flat, 1 skipped" in md
    # a nested extra is shown as JSON, not squeezed into a table cell
    assert "## seeds" in md and '"n": 50' in md
    # the stages side by side, per task and pooled
    assert ("| stage | n | success | strict format | verified claims | accuracy | consistency "
            "| modal answer | conclusion | entity acc |") in md
    assert ("| after sft_cot | 50 | 0.900 | 0.880 | 0.750 of 120 | 0.400 | 0.950 | 0.600 "
            "| 0.450 | 0.400 |") in md
    assert "| before | 50 | 0.820 | - | - | 0.250 | - | - | - | 0.250 |" in md


def test_report_uses_a_given_all_row_and_handles_one_step(tmp_path: Path) -> None:
    before = {**BEFORE, "all": {"accuracy": 0.1, "success_rate": 0.2, "mae": 3.0, "n": 7}}
    rows = [{k: v for k, v in r.items() if k != "time/step"} for r in run_metrics(1)[1:]]
    md = write_report(tmp_path, rows, before, AFTER, {}).read_text()
    assert "| all | 7 / 50 | 0.100 | 0.500 | +0.400 | 0.200 | 0.960 | +0.760 |" in md
    assert "| `reward/mean` | 0.100 | 0.100 | +0.000 |" in md
    assert "| generate | 2.000 | 66.7% |" in md  # step 1: generate 2 s, train 1 s, no sync
    assert "| **sum of phases** | 3.000 | 100.0% |" in md
    assert "| model | `-` |" in md and "wall time" not in md


def test_the_align_skills_are_shown_per_stage(tmp_path: Path) -> None:
    texts = ["<think>x</think><answer>15</answer>", "<answer>2</answer>",
             "<think>x</think><answer>up</answer>", "<think>x</think><answer>up</answer>"]
    metas = [{"skill": "departure", "alone": True}, {"skill": "lag"},
             {"skill": "direction", "alone": False}, {"skill": "direction", "alone": True}]
    prompts = [Prompt(str(i), "align", [], {"meta": json.dumps(m)})
               for i, m in enumerate(metas)]
    targets = [Target("align", "value", "16", tolerance=1), Target("align", "value", "3"),
               Target("align", "value", "down"), Target("align", "value", "up")]
    after = held_out_metrics(*by_skill(prompts, texts, targets))
    assert set(after) == {"departure (one node)", "lag", "direction", "direction (one node)",
                          "all"}
    md = write_report(tmp_path, [], {}, {}, CONFIG,
                      skills={"before": {}, "after sft_align": after}).read_text()
    table = md.split("## ST-Align skills after each stage")[1].split("\n## ")[0]
    rows = [r for r in table.splitlines() if r.startswith("| ")]
    assert rows[0] == "| skill | n | before | after sft_align |"
    # a skill's one-node row right before its full-prompt row, in SKILLS order
    assert [r.split(" | ")[0][2:] for r in rows[1:]] == [
        "all", "departure (one node)", "direction (one node)", "direction", "lag"]
    assert "| all | 4 | - | 0.500 |" in rows
    assert "| departure (one node) | 1 | - | 1.000 |" in rows
    assert "| direction | 1 | - | 0.000 |" in rows


def test_report_from_a_logged_run_without_time_or_reward(tmp_path: Path) -> None:
    with RunLogger(tmp_path, CONFIG, wandb_mode="disabled") as log:
        log.log(1, {"loss": 0.5})
    md = write_report(tmp_path, read_metrics(tmp_path / "metrics.jsonl"), {}, {}, CONFIG,
                      ).read_text()
    assert "No `reward/mean` metric was logged." in md and "No `time/*` metrics" in md
    assert "| skipped steps (no update) | 0 of 1 (0 with" in md


def test_example_answers_show_the_gold_the_answer_and_each_claims_verdict() -> None:
    from types import SimpleNamespace

    from rewards import Target
    from rewards.rationale import Facts
    from rlsys.train.report import example_section

    facts = Facts.of([[1.0] * 10 + [2.0] * 10, [1.0] * 20], [[0, 1, 2]])
    t = Target("root_cause", "choice", "A", n_options=2, facts=facts)
    prompts = [SimpleNamespace(id=f"q{i}", task="root_cause",
                               target={"question": f"Which node, {i}?"}) for i in range(4)]
    texts = ["<think>Node 0 departs at step 10. Node 1->Node 0.</think><answer>B</answer>",
             "<answer>A</answer>", "no answer", "<think>x</think><answer>A</answer>"]
    md = "\n".join(example_section(prompts, texts, [t] * 4, per_task=3))
    assert md.count("**root_cause**") == 3 and "q3" not in md  # three per task
    assert ("- gold A; answered B; claims: 1 of 2 verified (departure 0/10 ok, "
            "link 1/0 wrong)") in md
    assert "- gold A; answered (no valid letter); claims: 0 of 0 verified (none)" in md
    assert "Node 0 departs at step 10" in md and "Which node, 0?" in md
