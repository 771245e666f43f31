"""A few GRPO steps of the real entry point (`strl train`) through a real local Ray
cluster, vLLM engines, a DeepSpeed learner and reward workers; then the outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
CONFIG = Path(__file__).parents[2] / "configs" / "tiny_cpu.yaml"


def test_strl_train_runs_sft_and_grpo_and_writes_every_output(tmp_path: Path) -> None:
    from rlsys.modelinit import build_model

    model = build_model(tmp_path / "model", "tiny", seed=0, corpus_size=300, progress=False)
    cmd = [sys.executable, "-m", "rlsys.cli", "train", "--config", str(CONFIG),
           f"model.path={model}", f"trainer.out_dir={tmp_path / 'runs'}", "trainer.name=e2e",
           "trainer.steps=3", "trainer.sft.steps=2", "data.eval_size=4",
           "rollout.prompts_per_step=2", "rollout.n=2", "rollout.max_tokens=16",
           "algorithm.dynamic_sampling=false", "trainer.wandb=offline",
           "trainer.log_samples_every=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "e2e"
    assert (run / "config.yaml").is_file()
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    grpo = [r for r in rows if "reward/mean" in r]
    assert [r["step"] for r in grpo] == [0, 1, 2]
    for r in grpo:
        for key in ("reward/mean", "reward/format", "reward/accuracy", "kl", "loss",
                    "grad_norm", "response_len", "time/generate", "time/reward",
                    "time/reference", "time/train", "time/sync", "tokens_per_s", "sync_bytes"):
            assert key in r, key
        assert r["sync_bytes"] > 0
    assert any(k.startswith("acc/") for k in grpo[0])
    assert any("sft_align/" in k for r in rows for k in r)
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "wandb").is_dir()
    assert (run / "samples.jsonl").read_text().strip()
    report = (run / "report.md").read_text()
    assert "before / after" in report.lower() and "curves.png" in report
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    ckpt = run / "checkpoints" / "final"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(ckpt)
    AutoTokenizer.from_pretrained(ckpt)
