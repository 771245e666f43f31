"""Benchmark: how fast the tiny model learns ST-Align, with and without the one-node-first
curriculum, measured in one run.

The learner's supervised step without Ray or DeepSpeed: `models/tiny` and a fresh encoder
(the run's seed), `SeriesLM`, AdamW at the tiny preset's ST-Align settings
(`trainer.align`: batch 16, its learning rate cosine-decayed to 10%, gradient clip 1),
bfloat16 autocast. Each arm trains on the same ST-Align split the `sft_align` stage draws
from:

- `node`: the series skills on one node alone only (`align_node`);
- `curriculum`: the run's schedule scaled to `--steps` (`PromptSource.align_step`: the
  preset's `trainer.align.one_node_steps` on one node alone, then the full mix with
  `trainer.align.node_share` of each batch on one node);
- `full`: the full mix from the first step (the preset before the curriculum).

`--norm mean` measures the encoder's layout before 2026-12-06 (each series normalised by
its mean and standard deviation) against today's (offset: its baseline level, scale: a
tenth of it; `rlsys.model.series.LAYOUT`), by replacing `rlsys.model.series.normalise` in
this process only, so prompts and rows agree. Any other setting of the preset can be
given as `key=value` (e.g. `model.encoder.patch=4`).

`--locate N` asks where the one-node departure step is lost after training: linear
probes of it from the encoder's rows and from each layer of the language model at the
answer's position. `--oracle-row` hands the language model the answer: each series'
last row becomes a learned embedding of its true departure step.

With the encoder's onset head (`model.encoder.onset`, the default) each arm first fits
it alone for `trainer.align.onset_steps` steps, then adds its loss to every step, as the
run does.

At every quarter of the steps it prints the teacher-forced decision accuracy per skill
label (as `strl probe` scores it) on held-out questions: the stratified ST-Align split
for `curriculum` and `full`, one-node questions for `node`; how often the onset head's
most likely step is within 1 of each held-out series' departure step ("onset head (every
series)"); and the mean norm of the encoder's rows (a token embedding's is about 0.8).

`--model DIR` starts from another language model than `models/tiny` (e.g. one
`benchmarks/recall.py --save` wrote after in-context retrieval formed).

Run: `python benchmarks/st_align.py [--steps 200] [--arms curriculum,full] [--norm mean]
[--locate N] [--oracle-row] [--model DIR] [key=value ...]` (about 50 s per 100 one-node steps on
one core of this machine).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
MODEL = ROOT / "models" / "tiny"
CONFIG = ROOT / "configs" / "tiny_cpu.yaml"


def _arm(arm: str, steps: int, n_held: int, overrides: list[str],
         model_dir: Path = MODEL) -> tuple[Any, ...]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from envs.tasks.align import skill_label
    from rlsys.config import load_config
    from rlsys.evals.probe import completion_offsets, decision_right
    from rlsys.model.series import (
        SeriesLM,
        initial_encoder,
        onset_loss,
        placeholder_token,
        teacher_forced,
    )
    from rlsys.train.data import PromptSource, reference_ids

    cfg = load_config(CONFIG, overrides)
    s = cfg.trainer.align
    torch.manual_seed(cfg.trainer.seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    enc = initial_encoder(model_dir, lm.config.hidden_size, cfg.trainer.seed,
                          **cfg.model.encoder_shape)
    model = SeriesLM(lm, enc, placeholder_token(tok)[1])
    source = PromptSource(cfg, tok)
    held = (source.align(10**6, n_held, one_node=True) if arm == "node"
            else source.align_held_out(n_held))
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=0.0)

    def seqs(prompts):
        return [(p.ids + reference_ids(tok, p, cfg.rollout.max_tokens)[0], len(p.ids),
                 p.series) for p in prompts]

    def evaluate() -> tuple[dict[str, float], float]:
        model.eval()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            guesses = teacher_forced(model, seqs(held), 16)
        hits: dict[str, list[bool]] = defaultdict(list)
        for p, g in zip(held, guesses, strict=True):
            gold, off = completion_offsets(tok, p.completion)
            hits[skill_label(json.loads(p.target["meta"]))].append(decision_right(
                tok, p.completion, off, gold, g, str(p.target["answer"]),
                float(p.target.get("tolerance") or 0)))
        with torch.no_grad():
            rows = torch.cat([enc.rows(p.series)
                              for p in held[:20]])
            if enc.onset is not None:
                hits["onset head (every series)"] = [
                    _onset_right(enc, x) for p in held for x in p.series]
        model.train()
        return ({k: sum(v) / len(v) for k, v in sorted(hits.items())},
                float(rows.norm(dim=-1).mean()))

    if enc.onset is not None and s.onset_steps:  # as the run fits it (rlsys.train.run)
        for k in range(s.onset_steps):
            part = [x for p in source.align(k * s.batch_size, s.batch_size) for x in p.series]
            opt.zero_grad()
            onset_loss(enc, part).backward()
            opt.step()
        print(f"onset head fitted in {s.onset_steps} steps", flush=True)
    t0 = time.perf_counter()
    for step in range(steps):
        if arm == "curriculum":  # the run's schedule, scaled to --steps
            batch = source.align_step(step * s.batch_size, round(step * s.steps / steps))
        else:
            batch = source.align(step * s.batch_size, s.batch_size, one_node=arm == "node")
        part = seqs(batch)
        width = max(len(x) for x, _, _ in part)
        ids = torch.zeros(len(part), width, dtype=torch.long)
        attn, mask = torch.zeros_like(ids), torch.zeros(len(part), width - 1)
        for i, (x, n, _) in enumerate(part):
            ids[i, :len(x)], attn[i, :len(x)] = torch.tensor(x), 1
            mask[i, n - 1:len(x) - 1] = 1
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=ids, attention_mask=attn,
                           series=[p.series for p in batch]).logits[:, :-1].float()
        logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
        loss = -(logp * mask).sum() / mask.sum()
        if enc.onset is not None and cfg.model.encoder.onset_weight > 0:
            loss = loss + cfg.model.encoder.onset_weight * torch.stack(
                [onset_loss(enc, p.series) for p in batch]).mean()
        done = step / max(1, steps - 1)
        for g in opt.param_groups:
            g["lr"] = s.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.learner.grad_clip)
        opt.step()
        if (step + 1) % max(1, steps // 4) == 0:
            acc, norm = evaluate()
            print(f"{arm} step {step + 1} ({(step + 1) * s.batch_size} seqs) loss "
                  f"{float(loss.detach()):.3f} row norm {norm:.1f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
            print("  " + ", ".join(f"{k} {v:.2f}" for k, v in acc.items()), flush=True)
    return model, tok, source, cfg


def _onset_right(enc: Any, values: Any) -> bool:
    """Whether the onset head's most likely step is within 1 of the series' departure step
    (`envs.detect`), or both say never."""
    import numpy as np
    import torch

    from envs.detect import departures
    from rlsys.model.series import normalise

    x = np.asarray(values, dtype=np.float64)
    onset = int(departures(x[None]).onset[0])
    got = int(enc.onset.logp(torch.from_numpy(normalise(x)[0])).argmax())
    if onset < 0 or got == len(x):
        return onset < 0 and got == len(x)
    return abs(got - onset) <= 1


def _locate(model: Any, tok: Any, source: Any, cfg: Any, n: int) -> None:
    """Where the one-node departure step is lost: linear probes (multinomial logistic
    regression, fit on 3/4 of `n` drawn questions, scored within 1 step on the rest) of
    the step from the encoder's rows (every row of the series, concatenated) and from the
    language model's hidden state, at every layer, at the position that predicts the
    decision's first token."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    from rlsys.evals.probe import completion_offsets, decision
    from rlsys.model.series import embed_rows
    from rlsys.train.data import reference_ids

    pool = [p for p in source.align(2 * 10**6, n, one_node=True)
            if json.loads(p.target["meta"]).get("skill") == "departure"
            and str(p.target["answer"]).isdigit()]
    feats: dict[str, list[np.ndarray]] = defaultdict(list)
    model.eval()
    with torch.no_grad():
        for p in pool:
            ids = p.ids + reference_ids(tok, p, cfg.rollout.max_tokens)[0]
            _, off = completion_offsets(tok, p.completion)
            lo, hi = decision(p.completion, str(p.target["answer"]))
            at = len(p.ids) + min(i for i, (a, b) in enumerate(off) if a < hi and b > lo) - 1
            rows = embed_rows(model.encoder, model.lm.get_input_embeddings(), ids, p.series,
                              model.placeholder_id)
            hidden = model.lm(inputs_embeds=rows[None], output_hidden_states=True).hidden_states
            prompt = rows[:len(p.ids)][torch.tensor(p.ids) == model.placeholder_id]
            feats["encoder rows"].append(prompt.flatten().numpy())
            for k, h in enumerate(hidden):
                feats[f"LM layer {k} at the answer"].append(h[0, at].float().numpy())
    y = np.array([int(p.target["answer"]) for p in pool])
    cut = 3 * len(y) // 4
    best = max(float(np.mean(np.abs(y[cut:] - c) <= 1)) for c in range(y.min(), y.max() + 1))
    print(f"where the departure step is: linear probes, within 1 step, on {len(y) - cut} "
          f"held-out of {len(y)} departure questions (the best constant: {best:.2f})")
    for name, f in feats.items():
        width = max(len(v) for v in f)
        x = np.stack([np.pad(v, (0, width - len(v))) for v in f])
        x = (x - x[:cut].mean(0)) / (x[:cut].std(0) + 1e-6)
        guess = LogisticRegression(max_iter=2000, C=0.1).fit(x[:cut], y[:cut]).predict(x[cut:])
        print(f"  {name}: {np.mean(np.abs(guess - y[cut:]) <= 1):.2f}", flush=True)


def _oracle_row() -> None:
    """Replace, in this process, each series' last encoder row by a learned embedding of
    its true departure step (`envs.detect.departures`): the answer handed to the language
    model as one row, an upper bound on what reading it from a row takes."""
    import numpy as np
    import torch
    from torch import nn

    import rlsys.model.series as series
    from envs.detect import departures

    initial, rows = series.initial_encoder, series.TSEncoder.rows
    never = 1024  # the index of "no departure"

    def initial_encoder(*args: Any, **kwargs: Any) -> Any:
        enc = initial(*args, **kwargs)
        enc.oracle = nn.Embedding(never + 1, enc.shape.hidden_size)
        return enc

    def oracle_rows(self: Any, data: list[Any], device: Any = "cpu") -> Any:
        out, at = rows(self, data, device), 0
        for s in data:
            at += series.n_patches(len(s), self.shape.patch)
            onset = int(departures(np.asarray(s, dtype=float)[None]).onset[0])
            step = torch.tensor(min(onset, never) if onset >= 0 else never, device=device)
            out = out.index_put((torch.tensor([at - 1], device=device),),
                                self.oracle(step)[None].to(out.dtype))
        return out

    series.initial_encoder, series.TSEncoder.rows = initial_encoder, oracle_rows


def _mean_norm() -> None:
    """Replace the encoder's normalisation, in this process, by the one before layouts."""
    import numpy as np

    import rlsys.model.series as series

    def normalise(values):
        v = np.asarray(values, dtype=np.float64)
        offset = float(v.mean())
        scale = max(float(v.std()), series.MIN_SCALE * max(1.0, abs(offset)))
        return (v - offset) / scale, offset, scale

    series.normalise = normalise


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=200, help="steps per arm (default 200)")
    ap.add_argument("--arms", default="curriculum,full",
                    help="comma-separated: node, curriculum, full (default curriculum,full)")
    ap.add_argument("--held-out", type=int, default=160,
                    help="held-out questions (default 160: 10 per skill label)")
    ap.add_argument("--norm", choices=("baseline", "mean"), default="baseline",
                    help="the encoder's normalisation: the system's (baseline) or the one "
                         "before it (mean; see the module docstring)")
    ap.add_argument("--locate", type=int, default=0, metavar="N",
                    help="after each arm, linear probes of the one-node departure step on "
                         "the encoder's rows and the LM's layers, from N drawn questions "
                         "(about a sixth are departure questions; e.g. 3000)")
    ap.add_argument("--oracle-row", action="store_true",
                    help="each series' last row holds its true departure step (an upper "
                         "bound; see _oracle_row)")
    ap.add_argument("--model", type=Path, default=MODEL,
                    help="the language model to start from (default models/tiny; e.g. "
                         "one `benchmarks/recall.py --save` wrote)")
    ap.add_argument("overrides", nargs="*", metavar="key=value",
                    help="settings of configs/tiny_cpu.yaml to change")
    a = ap.parse_args()
    if not (a.model / "config.json").is_file():
        raise SystemExit(f"{a.model} is missing: build it first (`make run` does, or "
                         "`strl init-model`)")
    if a.norm == "mean":
        _mean_norm()
    if a.oracle_row:
        _oracle_row()
    for arm in a.arms.split(","):
        if arm not in ("node", "curriculum", "full"):
            raise SystemExit(f"unknown arm {arm!r}; known: node, curriculum, full")
        trained = _arm(arm, a.steps, a.held_out, a.overrides, a.model)
        if a.locate:
            _locate(*trained, a.locate)


if __name__ == "__main__":
    main()
