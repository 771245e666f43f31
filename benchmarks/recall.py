"""Benchmark: how fast a tiny model forms in-context retrieval, on clean data.

Every task of the simulator needs retrieval: the lag of a named link, a named node's
series, an option's letter. The tiny model has not formed it on the real prompts
(docs/results.md, 2026-12-06 night). This benchmark measures, on short synthetic
sequences and many steps a minute, what makes retrieval form faster: learning rate,
warm-up, precision, model shape, the values' vocabulary.

Two tasks, loss on the retrieved value only:

- `mqar` (multi-query associative recall, Zoology's task): `--pairs` pairs of a key of
  `--key-tokens` tokens and a value of one token, then as many queries, keys drawn with
  replacement, each followed by its value. Keys are drawn from the tokenizer's ~1,900
  ordinary tokens (`--keys vocab`, or the first `--key-vocab N` of them) or the ten digits
  (`--keys digits`, as node ids are written); values likewise (`--values`; digits as lags
  and steps are written). `--gap TEXT` stands between each key and its value, in the pairs
  and the queries, and `--sep TEXT` after each value: `--gap "->Node 2 (lag " --sep "); Node "`
  writes the pairs as the graph clause writes its links.
- `lookup`: the issue's lag lookup in the prompts' own words: 2-5 links into one node,
  `Node s->Node t (lag L)`, then `What is the lag of Node s->Node t? L`.

It prints the level to beat first: the recall of picking any value of the context (1/pairs
for mqar with distinct values, 0.25 with digit values; about 0.40 for lookup). Queries are
drawn with replacement: asking each key once lets a model that rules out the values already
answered score 0.41 at 6 pairs without retrieving anything.

Each arm (`--arm "key=value ..."`, repeatable) is a fresh model of the tiny preset's shape
(or `layers=`, `heads=`, `kv=`, `hidden=`, `mlp=` changed; `conv=W` adds a causal
convolution on the embeddings) from its seeded random init (`seed=`), or the model
`--init DIR` names; AdamW (no weight decay), gradient clip 1, a linear warm-up (`warmup=`)
then a constant rate (`lr=`), bf16 autocast (`dtype=fp32` for full precision). Every
`--eval-every` steps it prints the loss and the recall (greedy, teacher-forced) on held-out
sequences; at the end, the steps each arm took to first reach recall 0.5 and 0.9, and the
ratio against the first arm. Retrieval forms abruptly: recall jumps from the level of a
guess to 1.0 within a few hundred steps, after a plateau whose length the learning rate
and the seed decide (docs/results.md, 2026-12-07).

`--save DIR` writes the last arm's model with the tiny tokenizer, as a model directory
that `--init DIR` and `benchmarks/st_align.py --model DIR` load (a `conv` arm's
convolution is not part of the Qwen2 model and is lost there).

Run: `python benchmarks/recall.py [--task mqar] [--keys digits --values digits]
[--steps 2000] [--arm "lr=1e-4"] [--arm "lr=3e-4 layers=2 seed=1"] ...` (about 10 steps a
second of 6 short pairs at batch 32 for the tiny shape on one core of this machine, 20 for
2 layers; the clause and the lookup drill are 3-7x slower; set OMP_NUM_THREADS=1 to run two
at once).
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
MODEL = ROOT / "models" / "tiny"
SHAPE_KEYS = {"layers": "num_hidden_layers", "heads": "num_attention_heads",
              "kv": "num_key_value_heads", "hidden": "hidden_size",
              "mlp": "intermediate_size"}


@dataclass(frozen=True)
class Arm:
    """One training setting; `key=value` words on the command line."""

    lr: float = 3e-4
    warmup: int = 0
    dtype: str = "bf16"
    """bf16 (autocast, as the learner trains) or fp32."""
    layers: int = 0
    heads: int = 0
    kv: int = 0
    hidden: int = 0
    mlp: int = 0
    """Shape overrides; 0 keeps the tiny preset's."""
    conv: int = 0
    """A causal depthwise convolution of this width added to the token embeddings, so each
    position also sees the tokens just before it (a "Canon layer", Allen-Zhu 2025, on the
    input only); 0: none, the plain Qwen2 shape."""
    seed: int = 0

    @classmethod
    def parse(cls, words: str) -> Arm:
        arm, types = cls(), {f.name: f.type for f in fields(cls)}
        for word in words.split():
            key, _, value = word.partition("=")
            if key not in types:
                raise SystemExit(f"unknown arm setting {key!r}; known: {', '.join(types)}")
            cast = {"float": float, "int": int}.get(str(types[key]), str)
            arm = replace(arm, **{key: cast(value)})
        if arm.dtype not in ("bf16", "fp32"):
            raise SystemExit(f"dtype={arm.dtype}: use bf16 or fp32")
        return arm


class Drills:
    """Seeded batches of one task: (ids, positions whose next token is a value)."""

    def __init__(self, tok: Any, task: str, pairs: int, key_tokens: int, values: str,
                 key_vocab: int = 0, keys: str = "vocab", gap: str = "",
                 sep: str = ""):
        self.tok, self.task, self.pairs, self.key_tokens = tok, task, pairs, key_tokens
        self.gap, self.sep = (tok.encode(t) if t else [] for t in (gap, sep))
        special = set(tok.all_special_ids) | set(tok.added_tokens_decoder)
        words = [i for t, i in tok.get_vocab().items()
                 if i not in special and not t.startswith("<|")]
        self.digits = [tok.convert_tokens_to_ids(str(d)) for d in range(10)]
        other = sorted(set(words) - set(self.digits))
        self.keys = self.digits if keys == "digits" else other
        if key_vocab:
            self.keys = self.keys[:key_vocab]
        self.values = self.digits if values == "digits" else other

    def batch(self, rng: random.Random, n: int) -> tuple[list[list[int]], list[list[int]]]:
        seqs = [self.draw(rng)[:2] for _ in range(n)]
        return [s for s, _ in seqs], [a for _, a in seqs]

    def draw(self, rng: random.Random) -> tuple[list[int], list[int], float]:
        """One sequence, the positions whose next token is a value, and the recall of
        picking any value of the context at each of them (the level to beat)."""
        return self._mqar(rng) if self.task == "mqar" else self._lookup(rng)

    def _mqar(self, rng: random.Random) -> tuple[list[int], list[int], float]:
        keys: list[tuple[int, ...]] = []
        while len(keys) < self.pairs:
            k = tuple(rng.sample(self.keys, self.key_tokens))
            if k not in keys:
                keys.append(k)
        vals = [rng.choice(self.values) for _ in keys]
        ids = [self.tok.bos_token_id or 0]
        for k, v in zip(keys, vals, strict=True):
            ids += [*k, *self.gap, v, *self.sep]
        # queries drawn with replacement: with each key asked once, ruling out the values
        # already answered scores 0.41 at 6 pairs without any retrieval
        at, chance = [], 0.0
        for j in rng.choices(range(self.pairs), k=self.pairs):
            ids += [*keys[j], *self.gap]
            at.append(len(ids) - 1)
            ids += [vals[j], *self.sep]
            chance += vals.count(vals[j]) / self.pairs / self.pairs
        return ids, at, chance

    def _lookup(self, rng: random.Random) -> tuple[list[int], list[int], float]:
        t = rng.randrange(10)
        srcs = rng.sample([u for u in range(10) if u != t], rng.randint(2, 5))
        lags = {s: rng.randint(1, 9) for s in srcs}
        clause = "; ".join(f"Node {s}->Node {t} (lag {lags[s]})" for s in srcs)
        s = rng.choice(srcs)
        ids = self.tok.encode(f"Graph Structure: {clause}. What is the lag of "
                              f"Node {s}->Node {t}? {lags[s]}")
        chance = list(lags.values()).count(lags[s]) / len(srcs)
        return ids, [len(ids) - 2], chance


def _model(arm: Arm, init: Path | None) -> Any:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if init:
        model = AutoModelForCausalLM.from_pretrained(init, dtype=torch.float32)
    else:
        cfg = AutoConfig.from_pretrained(MODEL)
        for key, name in SHAPE_KEYS.items():
            if getattr(arm, key):
                setattr(cfg, name, getattr(arm, key))
        cfg.layer_types = cfg.layer_types[:1] * cfg.num_hidden_layers
        torch.manual_seed(arm.seed)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.conv = None
    if arm.conv:
        width = model.config.hidden_size
        model.conv = torch.nn.Conv1d(width, width, arm.conv, groups=width,
                                     padding=arm.conv - 1, bias=False)
        torch.nn.init.zeros_(model.conv.weight)  # starts as the plain model
    return model


def _forward(model: Any, seqs: list[list[int]], at: list[list[int]], dtype: str) -> Any:
    """Logits at the positions whose next token is a value, and those values."""
    import torch

    width = max(map(len, seqs))
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, :len(s)], attn[i, :len(s)] = torch.tensor(s), 1
    rows = torch.tensor([i for i, a in enumerate(at) for _ in a])
    cols = torch.tensor([p for a in at for p in a])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        x = model.get_input_embeddings()(ids)
        if model.conv is not None:
            x = x + model.conv(x.transpose(1, 2))[..., :width].transpose(1, 2)
        hidden = model.model(inputs_embeds=x, attention_mask=attn).last_hidden_state
        logits = model.lm_head(hidden[rows, cols]).float()
    return logits, ids[rows, cols + 1]


def run_arm(arm: Arm, drills: Drills, steps: int, batch: int, every: int,
            held_out: int, init: Path | None = None) -> tuple[Any, dict[float, int | None]]:
    """Train one arm; print its curve; return the model and the first step at which
    held-out recall reached 0.5 and 0.9 (None if never)."""
    import torch

    model = _model(arm, init)
    opt = torch.optim.AdamW(model.parameters(), lr=arm.lr, weight_decay=0.0)
    held = drills.batch(random.Random(10**9 + arm.seed), held_out)
    rng = random.Random(arm.seed)
    reached: dict[float, int | None] = {0.5: None, 0.9: None}
    t0 = time.perf_counter()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"arm {arm} ({n_params / 1e6:.2f}M params)", flush=True)
    for step in range(1, steps + 1):
        for g in opt.param_groups:
            g["lr"] = arm.lr * min(1.0, step / arm.warmup) if arm.warmup else arm.lr
        logits, gold = _forward(model, *drills.batch(rng, batch), arm.dtype)
        loss = torch.nn.functional.cross_entropy(logits, gold)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % every == 0 or step == steps:
            model.eval()
            with torch.no_grad():
                logits, gold = _forward(model, *held, arm.dtype)
            model.train()
            recall = float((logits.argmax(-1) == gold).float().mean())
            for level, first in reached.items():
                if first is None and recall >= level:
                    reached[level] = step
            print(f"  step {step} ({step * batch} seqs) loss {float(loss.detach()):.3f} "
                  f"recall {recall:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return model, reached


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=("mqar", "lookup"), default="mqar")
    ap.add_argument("--steps", type=int, default=2000, help="steps per arm (default 2000)")
    ap.add_argument("--batch", type=int, default=32, help="sequences a step (default 32)")
    ap.add_argument("--pairs", type=int, default=6, help="mqar: key-value pairs (default 6)")
    ap.add_argument("--key-tokens", type=int, default=1,
                    help="mqar: tokens a key (default 1)")
    ap.add_argument("--key-vocab", type=int, default=0,
                    help="mqar: draw keys from this many tokens (default 0: all ~1,900)")
    ap.add_argument("--keys", choices=("vocab", "digits"), default="vocab",
                    help="mqar: the keys' vocabulary (digits: as node ids are written)")
    ap.add_argument("--gap", default="",
                    help="mqar: text between each key and its value, in the pairs and the "
                         "queries: '->Node 2 (lag ' puts the value 8 tokens after its key, as "
                         "the graph clause and a rationale's copy of it do (default: none, "
                         "the value right after its key)")
    ap.add_argument("--sep", default="",
                    help="mqar: text after each pair's value, e.g. '); Node ' as the graph "
                         "clause writes it (default: none)")
    ap.add_argument("--values", choices=("vocab", "digits"), default="vocab",
                    help="mqar: the values' vocabulary (default vocab)")
    ap.add_argument("--eval-every", type=int, default=200, help="default 200")
    ap.add_argument("--held-out", type=int, default=128, help="held-out sequences")
    ap.add_argument("--arm", action="append", default=[], metavar="'key=value ...'",
                    help="one arm's settings (lr, warmup, dtype, layers, heads, kv, "
                         "hidden, mlp, seed); repeat for more arms (default: lr=3e-4)")
    ap.add_argument("--init", type=Path,
                    help="start every arm from this model directory (e.g. one --save "
                         "wrote) instead of a fresh init; shape settings are then ignored")
    ap.add_argument("--save", type=Path, help="write the last arm's model here")
    a = ap.parse_args()
    if not (MODEL / "config.json").is_file():
        raise SystemExit(f"{MODEL} is missing: build it first (`make run` does, or "
                         "`strl init-model`)")
    from transformers import AutoTokenizer

    drills = Drills(AutoTokenizer.from_pretrained(MODEL), a.task, a.pairs, a.key_tokens,
                    a.values, a.key_vocab,
                    a.keys, a.gap, a.sep)
    rng = random.Random(0)
    chance = sum(drills.draw(rng)[2] for _ in range(2000)) / 2000
    print(f"{a.task}: picking any value of the context recalls {chance:.3f}")
    arms = [Arm.parse(w) for w in a.arm] or [Arm()]
    results = []
    for arm in arms:
        model, reached = run_arm(arm, drills, a.steps, a.batch, a.eval_every, a.held_out,
                                 a.init)
        results.append(reached)
    print("steps to recall 0.5 / 0.9 (ratio against the first arm; - never):")
    for arm, reached in zip(arms, results, strict=True):
        cells = []
        for level, first in reached.items():
            base = results[0][level]
            ratio = f" ({first / base:.2f}x)" if first and base else ""
            cells.append(f"{first or '-'}{ratio}")
        print(f"  {arm}: {' / '.join(cells)}")
    if a.save:
        model.save_pretrained(a.save)
        drills.tok.save_pretrained(a.save)
        print(f"saved the last arm's model to {a.save}")


if __name__ == "__main__":
    main()
