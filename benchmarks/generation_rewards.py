"""Benchmark: sample generation and rule-based reward throughput, per core.

For 10-node graphs with 168-step series it reports
- samples generated per second on one core (the stream's batched path), next to the
  one-sample-at-a-time path measured in the same run (the baseline), and the ratio to
  the target of 1000 samples/s;
- the same including the prompt text (what a trainer actually consumes);
- rule-based reward evaluations per second (format, exact_match, exp_mae, accuracy) on the
  reference completions of those samples, next to a trivial per-item reward measured in
  the same run (the baseline: Python's per-call floor), and the ratio to the target of
  50,000 evaluations/s.

It also times the generator of an earlier commit (`--previous`, default b5abf76: the
questions before they were redesigned to need both series and graph) in a subprocess on
the same machine in the same run, from `git archive` of that commit's `envs/`, and prints
the ratio (skipped, with a note, where git or that commit is missing).

Run: `python benchmarks/generation_rewards.py [--samples 2000]` (`make bench`).
One core: BLAS threads are pinned to 1 before numpy is imported.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from envs.sample import TASKS  # noqa: E402
from envs.stream import TaskMix, generate  # noqa: E402
from envs.tasks import EnvConfig  # noqa: E402
from rewards import RewardSpec, Target, build_reward  # noqa: E402

GEN_TARGET = 1000.0
REWARD_TARGET = 50_000.0


def _rate(fn, n_items: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n_items / best


_PREVIOUS = """
import time
from envs.sample import TASKS
from envs.stream import TaskMix, generate
from envs.tasks import EnvConfig
cfg, mix, n, b = EnvConfig(nodes=(10,), lengths=(168,)), TaskMix.of(list(TASKS)), {n}, {b}
generate(0, range(32), mix, cfg)
best = float("inf")
for _ in range(2):
    t = time.perf_counter()
    for s in range(0, n, b):
        generate(1, range(s, min(n, s + b)), mix, cfg)
    best = min(best, time.perf_counter() - t)
print(n / best)
"""


def previous_rate(commit: str, n: int, batch: int) -> float | None:
    """Batched samples/s of the generator at `commit`, or None (with a note) if unavailable."""
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        try:
            tar = subprocess.run(["git", "-C", str(root), "archive", commit, "envs"],
                                 check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=tar, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"  (previous generator {commit} not available: {e})")
            return None
        out = subprocess.run([sys.executable, "-c", _PREVIOUS.format(n=n, b=batch)],
                             cwd=tmp, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": tmp})
        if out.returncode:
            print(f"  (previous generator {commit} failed: {out.stderr.strip()[-300:]})")
            return None
        return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--previous", default="b5abf76",
                    help="commit whose generator is timed as a second baseline ('' to skip)")
    a = ap.parse_args()
    cfg = EnvConfig(nodes=(10,), lengths=(168,))
    mix = TaskMix.of(list(TASKS))
    generate(0, range(32), mix, cfg)  # warm-up

    def batched() -> list:
        out = []
        for s in range(0, a.samples, a.batch):
            out += generate(1, range(s, min(a.samples, s + a.batch)), mix, cfg)
        return out

    n_single = max(50, a.samples // 10)
    gen = _rate(batched, a.samples, repeat=2)
    single = _rate(lambda: [generate(1, [i], mix, cfg) for i in range(n_single)], n_single, 1)
    samples = batched()
    # Prompt text is cached per sample, so time it once, on samples never formatted before.
    with_text = _rate(lambda: [(s.prompt(), s.prompt_no_graph) for s in samples],
                      len(samples), 1)
    both = 1 / (1 / gen + 1 / with_text)

    print(f"generation, 10 nodes x 168 steps, all {len(mix.names)} tasks, one core")
    print(f"  batched stream            {gen:9.0f} samples/s")
    print(f"  one at a time (baseline)  {single:9.0f} samples/s   ratio {gen / single:5.1f}x")
    print(f"  batched + both prompts    {both:9.0f} samples/s")
    if a.previous:
        old = previous_rate(a.previous, a.samples, a.batch)
        if old:
            print(f"  generator at {a.previous:<12} {old:9.0f} samples/s   ratio {gen / old:5.2f}x"
                  " (this one / that one)")
    print(f"  ratio to target {GEN_TARGET:.0f}/s     {gen / GEN_TARGET:9.2f} (with prompts "
          f"{both / GEN_TARGET:.2f})")

    recs = [s.to_record() for s in samples]
    targets = [Target.from_record(r) for r in recs]
    comps = [r["completion"] for r in recs]
    choice = [i for i, t in enumerate(targets) if t.kind == "choice"]
    seq = [i for i, t in enumerate(targets) if t.kind == "sequence"]
    sets = {
        "format": (comps, targets),
        "exact_match": ([comps[i] for i in choice], [targets[i] for i in choice]),
        "exp_mae": ([comps[i] for i in seq], [targets[i] for i in seq]),
        "accuracy": ([comps[i] for i in choice + seq], [targets[i] for i in choice + seq]),
    }
    c0, t0 = sets["format"]
    floor = _rate(lambda: [len(c) > 0 for c, _ in zip(c0, t0, strict=True)], len(c0), 5)
    print("\nrule-based rewards on the reference completions, one core")
    print(f"  trivial per-item reward (baseline) {floor:11.0f} evals/s")
    for name, (cs, ts) in sets.items():
        fn = build_reward(RewardSpec(name))
        reps = max(1, 20000 // max(1, len(cs)))
        rate = _rate(lambda fn=fn, cs=cs, ts=ts, reps=reps: [fn(cs, ts) for _ in range(reps)],
                     len(cs) * reps, 3)
        print(f"  {name:<12} {rate:11.0f} evals/s   ratio to target {rate / REWARD_TARGET:5.2f}"
              f"   cost vs baseline {floor / rate:5.1f}x")


if __name__ == "__main__":
    main()
