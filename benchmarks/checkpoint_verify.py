"""Benchmark: what the checkpoint manifest (a BLAKE2b hash of every file) costs next to
writing the checkpoint, in the same run.

For each model size it writes a checkpoint laid out as `checkpoint.save` lays one out: the
policy's weights (bf16) and the learner's state (fp32 parameters, the two Adam moments and
the fp32 master copy: 16 bytes per parameter), with `torch.save` and an fsync. That write
is the baseline; the real save is slower still (DeepSpeed gathers the state first, the
policy goes through `save_pretrained`), so the ratio printed is an upper bound on the
share hashing adds. It then times `checkpoint.manifest` (hashing every file on save) and
`checkpoint.verify` (hashing them again on resume).

Run: `python benchmarks/checkpoint_verify.py [--params 3.5e6,1e8]` (`make bench-ckpt`).
The first size is the tiny preset's; files are written under a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from rlsys.train import checkpoint


def write(root: Path, params: int) -> float:
    """Write a checkpoint-shaped directory of `params` parameters; seconds taken."""
    t0 = time.perf_counter()
    (root / "policy").mkdir(parents=True)
    (root / "learner" / "learner").mkdir(parents=True)
    parts = {root / "policy" / "model.bin": {"w": torch.randn(params).to(torch.bfloat16)},
             root / "learner" / "learner" / "mp_rank_00_model_states.pt":
                 {"module": torch.randn(params)},
             root / "learner" / "learner" / "zero_pp_rank_0_mp_rank_00_optim_states.pt":
                 {"exp_avg": torch.randn(params), "exp_avg_sq": torch.rand(params),
                  "master": torch.randn(params)}}
    for path, state in parts.items():
        torch.save(state, path)
        with path.open("rb+") as f:
            os.fsync(f.fileno())
    (root / checkpoint.STATE_FILE).write_text(checkpoint.Progress(step=1).to_json())
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", default="3.5e6,1e8",
                   help="model sizes in parameters, comma-separated")
    a = p.parse_args()
    print("| parameters | checkpoint MB | write s | manifest s | verify s | manifest / write |")
    print("|---|---|---|---|---|---|")
    for n in (int(float(x)) for x in a.params.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "ckpt"
            t_write = write(root, n)
            mb = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20
            t0 = time.perf_counter()
            (root / checkpoint.MANIFEST).write_text(json.dumps(checkpoint.manifest(root)))
            t_manifest = time.perf_counter() - t0
            t0 = time.perf_counter()
            assert checkpoint.verify(root) is None
            t_verify = time.perf_counter() - t0
        print(f"| {n:.3g} | {mb:.0f} | {t_write:.2f} | {t_manifest:.2f} | {t_verify:.2f} | "
              f"{t_manifest / t_write:.2f} |", flush=True)


if __name__ == "__main__":
    main()
