"""`make run`'s pipeline, a few steps of it, through the real entry point (`strl train`, the
`default_run` fixture): a real local Ray cluster, vLLM engines, a DeepSpeed learner and
reward workers; then the outputs."""

from __future__ import annotations

import json

import pytest

from envs import evalsuite
from envs.tasks.align import ONE_NODE
from envs.tasks.align import SKILLS as ALIGN_SKILLS

pytestmark = pytest.mark.slow


def test_strl_train_runs_sft_and_grpo_and_writes_every_output(default_run) -> None:
    run = default_run.run
    assert (run / "config.yaml").is_file()
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    grpo = [r for r in rows if "reward/mean" in r]
    assert [r["step"] for r in grpo] == [0, 1, 2]
    for r in grpo:
        for key in ("reward/mean", "reward/format", "reward/accuracy", "reward/rationale",
                    "kl", "loss",
                    "grad_norm", "response_len", "time/generate", "time/reward",
                    "time/reference", "time/train", "time/sync", "tokens_per_s", "sync_bytes",
                    "mismatch/kl", "mismatch/abs_logp", "clip_frac", "ratio_mean"):
            assert key in r, key
        assert r["sync_bytes"] > 0
    assert any(k.startswith("acc/") for k in grpo[0])
    assert any("sft_cot/" in k for r in rows for k in r)
    assert any("sft_align/sft_loss" in r for r in rows)  # the seeds' first stage ran
    # the encoder's onset head fitted before it, then trained beside the supervised loss
    assert any("sft_align/onset_loss_last" in r for r in rows)
    assert all("sft_align/onset_loss" in r for r in rows if "sft_align/sft_loss" in r)
    # ST-Align rehearsed in chain-of-thought SFT (trainer.sft.align_share of 8: 2)
    assert [r.get("sft_cot/rehearsed") for r in rows if "sft_cot/sft_loss" in r] == [2.0, 2.0]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "wandb").is_dir()
    assert (run / "samples.jsonl").read_text().strip()
    report = (run / "report.md").read_text()
    assert "before / after" in report.lower() and "curves.png" in report
    # the stages side by side, with the strict format and the rationale checker's figure
    assert "## Held-out questions after each stage" in report
    assert "| before |" in report and "| after sft_cot |" in report
    assert "| after grpo |" in report and "verified claims" in report
    # ST-Align's held-out questions, per skill, at every point of the run
    assert "## ST-Align skills after each stage" in report
    assert "| `mismatch/kl` |" in report  # the rollout/learner gap, per GRPO step
    skills = report.split("## ST-Align skills after each stage")[1].split("\n## ")[0]
    assert "| skill | n | before | after sft_align | after sft_cot | after grpo |" in skills
    assert "| all | 11 |" in skills, skills
    assert "## Example answers of the final policy" in report and "- gold " in report
    # the token probe after every stage, and GRPO's held-out objective around GRPO
    assert "## Token probe after each stage" in report and "| ST-Align decision |" in report
    assert "| ST-Align series skill (changed when reversed) |" in report  # series reliance
    assert "## GRPO's objective on held-out questions" in report and "paired" in report
    summary = json.loads((run / "summary.json").read_text())
    assert list(summary["stages"]) == ["before", "after sft_align", "after sft_cot",
                                       "after grpo"]
    after = summary["stages"]["after grpo"]
    assert after["n"] == 4 and set(after) >= {"accuracy", "ci95", "strict_format",
                                              "claim_accuracy", "consistency",
                                              "modal_answer", "conclusion_accuracy",
                                              "tasks"}
    assert set(summary["probe"]) == set(summary["stages"])
    assert {k.removesuffix(ONE_NODE) for k in summary["probe"]["after grpo"]["align"]} <= set(
        ALIGN_SKILLS)
    reliance = summary["probe"]["after grpo"]["align_reliance"]
    assert reliance and all(0 <= v["share"] <= 1 and v["n"] > 0 for v in reliance.values())
    assert set(summary["objective"]) == {"after sft_cot", "after grpo", "change"}
    assert summary["objective"]["after grpo"]["n_prompts"] == 4
    assert summary["suite"]["n"] > 0 and summary["wall_s"] > 0 and summary["chance"] > 0
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    ckpt = run / "checkpoints" / "final"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(ckpt)
    AutoTokenizer.from_pretrained(ckpt)
    card = json.loads((ckpt / "strl.json").read_text())  # how serving must prompt it
    assert card["precision"] == 0 and card["temperature"] == 0.0 and card["max_tokens"] == 16
    assert card["series"] == "encoder" and (ckpt / "ts_encoder" / "model.safetensors").is_file()
    assert "ecology" not in card["domains"]


def test_the_run_ends_with_the_eval_suite_in_its_report(default_run) -> None:
    """`make run`'s report carries `strl eval`'s figures: every task, both domain splits."""
    run = default_run.run
    result = json.loads((run / "eval" / "eval.json").read_text())
    assert result["suite"] == evalsuite.VERSION and result["per_cell"] == 1
    assert result["tasks"]["all"]["n"] == len(evalsuite.cells()) and result["graph_free"]
    assert set(result["splits"]) == {"id", "ood"}
    lines = (run / "eval" / "completions.jsonl").read_text().splitlines()
    assert len(lines) == len(evalsuite.cells())
    assert all(json.loads(x)["reading_no_graph"] for x in lines)
    report = (run / "report.md").read_text()
    assert f"## Evaluation: eval suite `{evalsuite.VERSION}`" in report
    assert "| forecasting |" in report
    assert "In-distribution vs held-out domains" in report and "eval/samples.html" in report
    for name in ("eval.md", "eval.png", "samples.html"):
        assert (run / "eval" / name).stat().st_size > 0


def test_the_intervention_family_trains_end_to_end(short_run) -> None:
    """The decision-making family through the same pipeline: its questions are generated,
    warm-started on their rationales, rolled out, scored (exact match, format, the
    rationale checker) and trained on, and the held-out evaluation reports it. The update
    here is another registered algorithm: RLOO advantages, the CISPO loss and truncated
    importance weights against the engine's log-probs."""
    done = short_run("intervention", "data.tasks={intervention: 1}", "trainer.steps=2",
                     "trainer.suite_per_cell=0", "algorithm.advantage=rloo",
                     "algorithm.loss=cispo", "algorithm.correction=tis")
    rows = [json.loads(x) for x in (done.run / "metrics.jsonl").read_text().splitlines()]
    grpo = [r for r in rows if "reward/mean" in r]
    assert [r["step"] for r in grpo] == [0, 1]
    assert all("acc/intervention" in r and "reward/rationale" in r for r in grpo)
    assert all(0 < r["correction/weight"] <= 2 and r["mismatch/kl"] >= 0 for r in grpo)
    # rollout.max_tokens=16 here: the references are cut, counted and warned about
    sft = [r for r in rows if "sft_cot/truncated" in r]
    assert sft and all(r["sft_cot/truncated"] > 0 for r in sft)
    assert "longer than rollout.max_tokens=16" in done.stderr
    samples = [json.loads(x) for x in (done.run / "samples.jsonl").read_text().splitlines()]
    assert samples and {s["task"] for s in samples} == {"intervention"}
    assert all("One link into Node" in s["prompt"] for s in samples)
    report = (done.run / "report.md").read_text()
    assert "| intervention |" in report and "| after grpo |" in report
    assert "`correction/weight`" in report


def test_strl_probe_reads_saved_policies_and_plots_their_curve(default_run, tmp_path) -> None:
    """`strl probe CHECKPOINT ...`: the run's config found above each checkpoint, one
    column per checkpoint in order of the training sequences it had seen (from its
    state.json; a final policy: the run's whole budget), the tables written and plotted."""
    import subprocess
    import sys

    out, png = tmp_path / "probe.json", tmp_path / "curve.png"
    full = default_run.run / "checkpoints" / "grpo-step-3"
    proc = subprocess.run([sys.executable, "-m", "rlsys.cli", "probe",
                           str(default_run.checkpoint), str(full), "--n", "3",
                           "--n-align", "6", "--json", str(out), "--plot", str(png)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # 2 ST-Align steps of 16 + 2 CoT steps of 8 + 3 GRPO steps of 2 prompts x 2 = 60, all
    # of it seen by both: the full checkpoint after GRPO's last step, and the final policy
    cols = "grpo-step-3 (60 ex) | final (60 ex)"
    assert f"| rationale token | n | {cols} |" in proc.stdout
    assert f"| ST-Align decision | n | {cols} |" in proc.stdout
    # the encoder's policy: how often its series readings change with reversed series
    assert f"| series reading (changed when reversed) | n | {cols} |" in proc.stdout
    tables = json.loads(out.read_text())
    assert tables["examples"] == {"grpo-step-3 (60 ex)": 60, "final (60 ex)": 60}
    for point in tables["examples"]:
        assert tables["rationale"][point]["template"]["n"] > 0
        assert sum(v["n"] for v in tables["align"][point].values()) == 6
    # the same weights: the final policy is the last full checkpoint's
    assert tables["rationale"]["final (60 ex)"] == tables["rationale"]["grpo-step-3 (60 ex)"]
    assert set(tables["reliance"]) == set(tables["examples"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
