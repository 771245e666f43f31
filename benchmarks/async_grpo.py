"""Benchmark: synchronous GRPO against asynchronous GRPO (`algorithm.max_staleness` k = 1, 2)
on identical work, measured in one run.

Each arm is a `strl train` of the tiny preset's GRPO stage alone, the same seed, prompts,
steps and rewards; only `algorithm.max_staleness` differs (and, for k >= 1, the rollout
correction, `--correction`, default tis). With `--from CHECKPOINT` (a full checkpoint of a
supervised stage, e.g. `runs/tiny/checkpoints/sft_cot-step-400`) every arm starts from that
policy and the held-out objective before and after GRPO is comparable; without it, the arms
start from the tiny model's initialisation and only the throughput is meaningful.

Per arm: completions per second of GRPO wall time (steps 2.. : the first warms up), the
engines' and the learner's idle shares, the staleness histogram, the rollout/learner
mismatch (KL, |delta logp|), and the held-out objective after GRPO (mean reward of
`trainer.objective_samples` completions per held-out question at the rollout's settings),
with its standard error. Then the ratio of each arm's completions/s to sync's.

The GPU projection uses a stated model, not a measurement: per step, sync costs
G + R + L + S (generate, reward, learner, weight sync) and k >= 1 costs
max(G, R + L) + S, since the engines generate the next batch while the driver scores and
the learners train. It is evaluated at this run's measured phases and at generation-to-
learner time ratios typical of GPU RL runs.

Run: `python benchmarks/async_grpo.py [--from CKPT] [--steps 16] [--seeds 0] [--ks 0,1,2]`
(`make bench-async`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
PHASES = ("time/generate", "time/reward", "time/train", "time/reference", "time/sync",
          "time/wait_engines")


def _run(out: Path, name: str, k: int, seed: int, steps: int, start: str | None,
         correction: str, extra: list[str]) -> Path:
    sets = [f"trainer.name={name}", f"trainer.out_dir={out}", f"trainer.steps={steps}",
            f"trainer.seed={seed}", f"algorithm.max_staleness={k}",
            f"algorithm.correction={'none' if k == 0 else correction}",
            "trainer.save_every=0", "trainer.suite_per_cell=0", "trainer.probe=false",
            "trainer.wandb=disabled", "trainer.log_samples_every=0", *extra]
    head = [sys.executable, "-m", "rlsys.cli", "train"]
    if start:
        cmd = head + ["--from", start, *sets]
    else:
        cmd = head + ["--config", "configs/tiny_cpu.yaml", "trainer.stages=[grpo]", *sets]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"`strl train` ({name}) failed:\n{proc.stderr[-3000:]}")
    print(f"  {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    return out / name


def measure(run: Path) -> dict[str, float]:
    """One arm's numbers from its metrics.jsonl and summary.json."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    grpo = [r for r in rows if "time/step" in r and "completions" in r][1:]
    wall = sum(r["time/step"] for r in grpo)
    out = {"completions_per_s": sum(r["completions"] for r in grpo) / wall,
           "step_s": statistics.median(r["time/step"] for r in grpo),
           "idle_engine": statistics.mean(r.get("idle/engine", 0.0) for r in grpo),
           "idle_learner": statistics.mean(r.get("idle/learner", 0.0) for r in grpo),
           "staleness": statistics.mean(r.get("staleness/mean", 0.0) for r in grpo),
           "stale_dropped": sum(r.get("stale_dropped", 0.0) for r in grpo),
           "mismatch_kl": statistics.mean(r.get("mismatch/kl", 0.0) for r in grpo),
           "mismatch_abs": statistics.mean(r.get("mismatch/abs_logp", 0.0) for r in grpo)}
    out.update({k: statistics.median(r.get(k, 0.0) for r in grpo) for k in PHASES})
    summ = json.loads((run / "summary.json").read_text())
    after = summ.get("objective", {}).get("after grpo") or {}
    out["objective"] = after.get("mean", float("nan"))
    out["objective_se"] = after.get("se", float("nan"))
    return out


def project(g: float, r: float, learn: float, s: float) -> tuple[float, float]:
    """Step time (sync, async) of the stated model."""
    return g + r + learn + s, max(g, r + learn) + s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="start", help="full checkpoint every arm starts from")
    ap.add_argument("--steps", type=int, default=16, help="GRPO steps per arm")
    ap.add_argument("--seeds", default="0", help="comma-separated training seeds")
    ap.add_argument("--ks", default="0,1,2", help="comma-separated max_staleness values")
    ap.add_argument("--correction", default="tis", choices=("none", "tis", "mis"))
    ap.add_argument("--out", default="runs/bench-async", help="where the arms' runs go")
    ap.add_argument("overrides", nargs="*", help="dotted overrides for every arm")
    a = ap.parse_args()
    ks = [int(k) for k in a.ks.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")]
    out = (ROOT / a.out).resolve()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    res: dict[tuple[int, int], dict[str, float]] = {}
    print(f"{len(ks) * len(seeds)} arms of {a.steps} GRPO steps, runs under {out}")
    for seed in seeds:
        for k in ks:
            run = _run(out, f"{stamp}-k{k}-s{seed}", k, seed, a.steps, a.start, a.correction,
                       a.overrides)
            res[(k, seed)] = measure(run)

    print(f"\nper arm (steps 2-{a.steps}; objective: held-out mean reward after GRPO)\n")
    print("k  seed  compl/s  step s  idle eng  idle lrn  stale  dropped  mismatch KL  "
          "|dlogp|   objective")
    for (k, seed), m in sorted(res.items()):
        print(f"{k}  {seed:>4}  {m['completions_per_s']:7.2f}  {m['step_s']:6.2f}  "
              f"{m['idle_engine']:8.2f}  {m['idle_learner']:8.2f}  {m['staleness']:5.2f}  "
              f"{m['stale_dropped']:7.0f}  {m['mismatch_kl']:11.2e}  {m['mismatch_abs']:7.4f}"
              f"   {m['objective']:.3f} +- {m['objective_se']:.3f}")
    print("\nthroughput against sync, same seed (completions/s ratio)\n")
    for seed in seeds:
        base = res.get((0, seed))
        if base:
            print(f"seed {seed}: " + "  ".join(
                f"k={k}: {res[(k, seed)]['completions_per_s'] / base['completions_per_s']:.2f}x"
                for k in ks if (k, seed) in res))
    if (0, seeds[0]) in res:
        m = res[(0, seeds[0])]
        g, r = m["time/generate"], m["time/reward"]
        learn, s = m["time/train"] + m["time/reference"], m["time/sync"]
        t_sync, t_async = project(g, r, learn, s)
        print("\nprojection (model: sync G + R + L + S, async max(G, R + L) + S per step)\n")
        print(f"measured phases here (sync arm, median s): G {g:.2f}  R {r:.2f}  L {learn:.2f}"
              f"  S {s:.2f}: {t_sync / t_async:.2f}x")
        for ratio in (0.5, 1.0, 2.0, 4.0):
            ts, ta = project(ratio, 0.05, 1.0, 0.05)
            print(f"G / L = {ratio:>3}: R = S = 5% of L: {ts / ta:.2f}x")


if __name__ == "__main__":
    main()
