"""Benchmark: series inline vs through the time-series encoder, same questions, same model,
measured in one run.

1. Prompt positions per question at 3/5/10 nodes x 36/168/360 steps: the chat-templated
   inline prompt (the embedded tokenizer splits numbers into single digits, as Qwen's
   pre-tokenizer does, so this is also about what a Qwen model would read) against the
   encoder layout (`rlsys.model.series`); the ratio inline / encoder.
2. The engine's cost of mixed requests: the same id sequences (equal lengths) sent as plain
   token ids and as mixed token/embedding requests with the encoder's rows, on one
   in-process vLLM engine; seconds per call and the ratio mixed / plain.
3. Whole GRPO steps: two short `strl train` runs of the tiny preset that differ only in
   `model.series` (5 nodes x 96 steps, where the inline prompt still fits the model's
   context), GRPO only; median step time, generation and training time, and the ratio
   inline / encoder.

Run: `python benchmarks/series_encoder.py [--steps 8] [--skip-train]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
GRID = [(n, t) for n in (3, 5, 10) for t in (36, 168, 360)]
PATCH = 8


def _question(nodes: int, steps: int, index: int = 0):
    from envs.stream import SampleStream
    from envs.tasks import EnvConfig

    # etiological: its world has exactly the asked number of nodes
    return SampleStream(11, ["etiological"], EnvConfig(nodes=(nodes,), lengths=(steps,),
                                                       precision=2)).sample(index)


def positions(tok) -> None:
    from rlsys.model.chat import chat_ids
    from rlsys.model.series import series_ids

    print(f"1. prompt positions per question (chat-templated; patch {PATCH}; 2 decimals)\n")
    print("nodes  steps  inline  encoder  inline/encoder")
    for n, t in GRID:
        s = _question(n, t)
        row = s.to_streasoner()
        a = len(chat_ids(tok, s.prompt()))
        b = len(series_ids(tok, row["input"], row["timeseries"], PATCH))
        print(f"{s.series.shape[0]:>5}  {t:>5}  {a:>6}  {b:>7}  {a / b:>14.1f}")
    print()


def engine_overhead(model: Path, calls: int = 5) -> None:
    import torch

    from actors.rollout import EngineSettings, RolloutWorker
    from rlsys.config import load_config
    from rlsys.model.series import series_ids
    from rlsys.sampling import Sampling
    from rlsys.train.topology import plan_topology

    cfg = load_config(None, ["model.series=encoder", f"model.encoder.patch={PATCH}",
                             "rollout.max_model_len=4096"])
    w = RolloutWorker(EngineSettings.from_config(cfg, str(model), "cpu",
                                                 plan_topology(cfg).dtype))
    w.start()
    tok = w.llm.get_tokenizer()
    rows = [_question(5, 96, i).to_streasoner() for i in range(8)]
    ids = [series_ids(tok, r["input"], r["timeseries"], PATCH) for r in rows]
    series = [r["timeseries"] for r in rows]
    sampling = Sampling(n=4, temperature=1.0, top_p=1.0, max_tokens=64)
    times: dict[str, list[float]] = {"plain": [], "mixed": []}
    for k in range(calls + 1):  # the first round warms both paths up
        for name, extra in (("plain", None), ("mixed", series)):
            t0 = time.perf_counter()
            w.generate(ids, sampling, 100 + k, extra)
            if k:
                times[name].append(time.perf_counter() - t0)
    p, m = statistics.median(times["plain"]), statistics.median(times["mixed"])
    print(f"2. one engine, 8 prompts of {statistics.mean(map(len, ids)):.0f} positions x 4 "
          f"completions of <= 64 tokens, median of {calls} calls (torch threads "
          f"{torch.get_num_threads()})\n")
    print(f"plain token ids        {p:7.3f} s")
    print(f"mixed ids + rows       {m:7.3f} s")
    print(f"ratio mixed / plain    {m / p:7.2f}\n")


def _train(series: str, out: Path, steps: int) -> dict[str, float]:
    cmd = [sys.executable, "-m", "rlsys.cli", "train", "--config", "configs/tiny_cpu.yaml",
           f"model.series={series}", f"trainer.name={series}", f"trainer.out_dir={out}",
           "trainer.stages=[grpo]", f"trainer.steps={steps}", "trainer.save_every=0",
           "trainer.suite_per_cell=0", "data.eval_size=0", "trainer.wandb=disabled",
           "data.tasks={etiological: 1, root_cause: 1}", "data.env.nodes=[5]",
           "data.env.lengths=[96]", "rollout.max_prompt_tokens=7000",
           "algorithm.dynamic_sampling=false"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"`strl train` ({series}) failed:\n{proc.stderr[-3000:]}")
    rows = [json.loads(x) for x in (out / series / "metrics.jsonl").read_text().splitlines()]
    grpo = [r for r in rows if "time/step" in r][1:]  # the first step warms up
    keys = ("time/step", "time/generate", "time/train", "time/reference", "time/sync")
    return {k: statistics.median(r.get(k, 0.0) for r in grpo) for k in keys}


def grpo_steps(steps: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        inline = _train("inline", Path(d), steps)
        enc = _train("encoder", Path(d), steps)
    print(f"3. GRPO steps of the tiny preset, 5 nodes x 96 steps, 4 prompts x 4 completions; "
          f"median over steps 2-{steps}\n")
    print("phase            inline  encoder  inline/encoder")
    for k in inline:
        ratio = inline[k] / enc[k] if enc[k] else float("nan")
        print(f"{k:<15}  {inline[k]:6.2f}  {enc[k]:7.2f}  {ratio:14.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="GRPO steps per training run")
    ap.add_argument("--skip-train", action="store_true", help="positions and engine only")
    a = ap.parse_args()
    from transformers import AutoTokenizer

    from rlsys.model.build import ensure_model

    model = ensure_model(ROOT / "models" / "tiny", "tiny", 0)
    positions(AutoTokenizer.from_pretrained(model))
    engine_overhead(model)
    if not a.skip_train:
        grpo_steps(a.steps)


if __name__ == "__main__":
    main()
