"""Prompts for training and evaluation: from the env stream or from a sample file,
rendered with the model's chat template and tokenized once, in the driver.

The training stream and the held-out split use different seeds of the same generator,
so evaluation questions are never trained on. The stream position is an integer (the
next sample index), which is all a resume needs to continue with the same prompts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from envs.prompt import with_placeholders
from envs.stream import TaskMix, generate, redrawn
from envs.tasks.align import LABELS, skill_label
from rlsys.config import Config, env_config
from rlsys.dataio import read_rows
from rlsys.model.chat import END_OF_TURN, chat_ids

EVAL_SEED_OFFSET = 1_000_003
SFT_SEED_OFFSET = 2_000_003
ALIGN_SEED_OFFSET = 3_000_003
ALIGN_EVAL_SEED_OFFSET = 4_000_003
ALIGN = TaskMix.of(["align"])
"""The ST-Align questions of the `sft_align` stage and of its held-out evaluation."""
ALIGN_NODE = TaskMix.of(["align_node"])
"""The first step of the `sft_align` curriculum: the series skills on one node alone."""
MAX_SKIPPED_IN_A_ROW = 1_000  # over-long prompts in a row that mean none will ever fit
STRATIFY_DRAWS = 50
"""Draws per held-out ST-Align question before a label that never comes is an error."""


@dataclass
class Prompt:
    """One question ready for the engines, the reward workers and the learner."""

    id: str
    task: str
    ids: list[int]  # chat-templated prompt tokens
    target: dict[str, Any]  # record for rewards.Target.from_record
    completion: str = ""  # reference completion (SFT)
    ids_no_graph: list[int] | None = None  # the same question without its graph (S-GRPO)
    series: list[list[float]] | None = None  # each node's series (series: encoder)


def reference_ids(tokenizer: Any, p: Prompt, max_tokens: int,
                  answer_only: bool = False) -> tuple[list[int], bool]:
    """The ids of prompt `p`'s reference completion (or of its answer alone) as training
    and the probe feed it, and whether it was cut: the policy never writes more than
    `max_tokens`, so a longer one is cut (and counted by SFT, since a cut reference
    teaches completions that never finish)."""
    text = (f"<think></think><answer>{p.target['answer']}</answer>" if answer_only
            else p.completion)
    ids = tokenizer(text + END_OF_TURN, add_special_tokens=False)["input_ids"]
    return ids[:max_tokens], len(ids) > max_tokens


def copy_drill(tokenizer: Any, p: Prompt, ids: list[int], keep: int = 6) -> list[int] | None:
    """A drill for the answer tag's copy of the option its think concludes with: the
    prompt's first token, then `<think>` and the reference's first token, its last `keep`
    tokens before `<answer>`, and the tag (None when the reference has no tag). The full
    sequences never form the attention head that copies (a 1000-token prompt leaves it
    ~1/1000 of the gradient); on ~10 tokens it forms (docs/results.md, 2026-12-05 evening)."""
    start = tokenizer.convert_tokens_to_ids("<answer>")
    if start not in ids:
        return None
    i = ids.index(start)
    return p.ids[:1] + ids[:2] + ids[max(2, i - keep):]


DRILL_KEEPS = (6, 3, 10, 4, 8, 14, 5, 12)
"""The tokens before the tag that a reference's successive drills keep: one reference gives
several drills, each of another length, so the copy is drilled at several distances from
the start (one length was learnt by position, not by the letter's place)."""


def copy_drills(tokenizer: Any, prompts: list[Prompt], refs: list[list[int]],
                n: int) -> list[list[int]]:
    """`n` copy drills cut from the references `refs` of `prompts` in turn: the first of
    each reference keeps `DRILL_KEEPS[0]` tokens, the second `DRILL_KEEPS[1]`, ...; fewer
    when the references have no tag or more drills than `DRILL_KEEPS` allows are asked."""
    out: list[list[int]] = []
    for keep in DRILL_KEEPS:
        for p, ids in zip(prompts, refs, strict=True):
            if len(out) == n:
                return out
            d = copy_drill(tokenizer, p, ids, keep)
            if d is not None:
                out.append(d)
    return out


def _record_prompt(tokenizer: Any, rec: dict[str, Any], no_graph: bool = False,
                   patch: int | None = None) -> Prompt:
    """A sample record as the policy sees it: inline numbers, or (`patch`: series through
    the encoder) `<ts><ts/>` placeholders laid out by `rlsys.model.series`."""
    if patch is None:
        free = chat_ids(tokenizer, rec["prompt_no_graph"]) if no_graph else None
        return Prompt(rec["id"], rec["task"], chat_ids(tokenizer, rec["prompt"]), rec,
                      rec.get("completion", ""), free)
    # heavy: rlsys.model.series imports torch, which only a run with the encoder needs
    from rlsys.model.series import series_ids

    series = [list(map(float, row)) for row in rec["series"]]
    ids = series_ids(tokenizer, with_placeholders(rec["prompt"]), series, patch)
    free = (series_ids(tokenizer, with_placeholders(rec["prompt_no_graph"]), series, patch)
            if no_graph else None)
    return Prompt(rec["id"], rec["task"], ids, rec, rec.get("completion", ""), free, series)


class PromptSource:
    """Training prompts in order from a position; also the held-out and SFT splits."""

    def __init__(self, cfg: Config, tokenizer: Any, position: int = 0) -> None:
        self.cfg, self.tok = cfg, tokenizer
        self.position = position
        self.skipped_long = 0
        self.redrawn = 0  # samples whose first question design was redrawn (envs.stream)
        self.patch = cfg.model.encoder.patch if cfg.model.series == "encoder" else None
        self.mix = TaskMix.of(cfg.data.tasks)
        self.env = env_config(cfg)
        self.rows = read_rows(cfg.data.file) if cfg.data.source == "file" else None
        if self.rows is not None and not self.rows:
            raise ValueError(f"data.file {cfg.data.file} has no rows")

    def state(self) -> dict[str, int]:
        """The run-wide counters a checkpoint keeps (the position is kept on its own)."""
        return {"skipped_long_prompts": self.skipped_long, "redrawn_samples": self.redrawn}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue the counters of `state()` (missing keys: 0, as in older checkpoints)."""
        self.skipped_long = int(state.get("skipped_long_prompts", 0))
        self.redrawn = int(state.get("redrawn_samples", 0))

    def _records(self, seed: int, start: int, n: int,
                 mix: TaskMix | None = None) -> list[dict[str, Any]]:
        if self.rows is not None and mix is None:
            return [self.rows[(start + i) % len(self.rows)] for i in range(n)]
        samples = generate(seed, range(start, start + n), mix or self.mix, self.env)
        self.redrawn += redrawn(samples)
        return [s.to_record() for s in samples]

    def _fit(self, recs: list[dict[str, Any]], no_graph: bool = False) -> list[Prompt]:
        out = []
        for r in recs:
            p = _record_prompt(self.tok, r, no_graph, self.patch)
            if len(p.ids) > self.cfg.rollout.max_prompt_tokens:
                self.skipped_long += 1  # counted, never truncated: a cut prompt lies
                continue
            out.append(p)
        return out

    def next(self, n: int) -> list[Prompt]:
        """The next n training prompts (skipping over-long ones, which are counted)."""
        out: list[Prompt] = []
        tried = 0
        while len(out) < n:
            want = n - len(out)
            out += self._fit(self._records(self.cfg.data.seed, self.position, want),
                             no_graph=self.cfg.algorithm.spatial.enabled)
            self.position += want
            tried += want
            if not out and tried >= max(MAX_SKIPPED_IN_A_ROW, len(self.rows or ())):
                raise ValueError(
                    f"{tried} prompts in a row are longer than rollout.max_prompt_tokens="
                    f"{self.cfg.rollout.max_prompt_tokens}; raise it, or ask for shorter "
                    "questions (data.env.nodes / lengths, or another data.file)")
        return out

    def held_out(self) -> list[Prompt]:
        """The evaluation split (never trained on)."""
        n = self.cfg.data.eval_size
        return self._fit(self._records(self.cfg.data.seed + EVAL_SEED_OFFSET, 0, n)) if n else []

    def sft(self, start: int, n: int) -> list[Prompt]:
        """Supervised warm-start samples, from their own split."""
        return self._fit(self._records(self.cfg.data.seed + SFT_SEED_OFFSET, start, n))

    def align(self, start: int, n: int, one_node: bool = False) -> list[Prompt]:
        """ST-Align questions for the `sft_align` stage, from their own split (generated
        in the run's world settings, `data.env`, also when the tasks come from a file);
        `one_node`: the series skills on one node alone only (`align_node`)."""
        return self._fit(self._records(self.cfg.data.seed + ALIGN_SEED_OFFSET, start, n,
                                       ALIGN_NODE if one_node else ALIGN))

    def align_step(self, start: int, step: int) -> list[Prompt]:
        """The batch of step `step` of the `sft_align` stage (`trainer.align`) from
        position `start`: the curriculum's one-node questions for its first
        `one_node_steps`, then the full mix (`align_mix`)."""
        s = self.cfg.trainer.align
        if step < s.one_node_steps:
            return self.align(start, s.batch_size, one_node=True)
        return self.align_mix(start, s.batch_size)

    def align_mix(self, start: int, n: int) -> list[Prompt]:
        """`n` ST-Align questions to train on after the curriculum's first step (the
        `sft_align` stage's full mix, the later stages' rehearsal): the full mix, with
        `trainer.align.node_share` of them from the one-node questions."""
        alone = round(self.cfg.trainer.align.node_share * n)
        return (self.align(start, n - alone)
                + (self.align(start, alone, one_node=True) if alone else []))

    def align_held_out(self, n: int | None = None) -> list[Prompt]:
        """Held-out ST-Align questions (never trained on): `n`, else
        `data.align_eval_size` of them when the stages include `sft_align`, else none.
        Stratified: each of the skill labels (`envs.tasks.align.LABELS`) gets an equal
        share of them (the first labels one more when n does not divide), the first of its
        split in stream order, so that every skill is measured on as many questions."""
        if n is None:
            n = self.cfg.data.align_eval_size if "sft_align" in self.cfg.trainer.stages else 0
        want = {label: n // len(LABELS) + (k < n % len(LABELS)) for k, label in
                enumerate(LABELS)}
        picked: list[dict[str, Any]] = []
        start, chunk = 0, max(64, 2 * n)
        while len(picked) < n:
            if start > STRATIFY_DRAWS * n:
                missing = {k: v for k, v in want.items() if v}
                raise RuntimeError(f"the ST-Align held-out split has too few questions of "
                                   f"{missing} in {start} draws under data.env")
            for rec in self._records(self.cfg.data.seed + ALIGN_EVAL_SEED_OFFSET, start,
                                     chunk, ALIGN):
                label = skill_label(json.loads(rec.get("meta") or "{}"))
                if want.get(label, 0) > 0:
                    want[label] -= 1
                    picked.append(rec)
            start += chunk
        return self._fit(picked)
