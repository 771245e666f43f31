"""Time series as a modality: the patch encoder (STReasoner's shape) and the prompt layout
that every path shares.

Each node's series of T steps is normalised against its own baseline (`LAYOUT`: offset =
its baseline level as `envs.detect` reads it, scale = `TAU` times it, floored; so a row
value of +-1 is the departure threshold and its sign the direction of a move), cut into
`ceil(T / p)` patches of `p` steps (the last one padded, a value mask saying which steps
are real), and each patch becomes one row of the language model's input embeddings:

    step j of a patch:  value_j -> Linear(1, d) + pos_j            (pos: learned, in-patch)
    patch:              [masked step features (p*d), mask (p)] -> MLP -> hidden_size

With `onset` each series is also read whole, step by step, by a first-passage head
(`OnsetHead`): it fires at most once, at the first step its learned gate opens, and names
that step by a learned embedding, added to every row of the series, so any attention over
the rows carries it (a step number read off one row's position is what the language
model did not learn: docs/results.md, 2026-12-06 evening). It is trained to fire where
`envs.detect` says the series departs from its baseline (`onset_loss`: fitted alone
before ST-Align, then beside the supervised stages' loss), the reading every task's
rationale starts from.

In the prompt, each `<ts><ts/>` placeholder becomes a short text prefix carrying the offset
and scale (the rows are scale-free), then exactly `ceil(T / p)` copies of one existing
special token (`placeholder_token`; no vocabulary change). The learner, the rollout
engines and the server all build their ids with `series_ids`, so they see identical id
sequences, and put the encoder's rows where `ids == placeholder` (`embed_rows`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from envs.detect import TAU, baselines, departures
from envs.prompt import FORMAT_INSTRUCTION, fill_placeholders
from rlsys.files import write_atomic
from rlsys.model.chat import template_ids

ENCODER_DIR = "ts_encoder"
"""Where a model directory keeps its encoder: a folder of its own, because vLLM loads every
`*.safetensors` at a model directory's top level as the language model's weights."""
ENCODER_FILE = f"{ENCODER_DIR}/model.safetensors"
ENCODER_CONFIG = f"{ENCODER_DIR}/config.json"
PLACEHOLDER_TOKENS = ("<|reserved_0|>", "<|image_pad|>", "<|vision_pad|>", "<|video_pad|>")
"""Special tokens a placeholder position may use, in order of preference: the embedded
model's first reserved token, then the ones Qwen2/Qwen3 vocabularies carry."""
SYNC_PREFIX = "strl_ts_encoder."
"""The encoder's parameters in a learner's full state (weight sync, saving): this prefix,
then the encoder's own names; the language model's keep their Hugging Face names."""
MIN_SCALE = 1e-3
"""Floor of a series' scale, relative to max(1, |offset|): a flat series stays finite."""
SPREAD_FLOOR = 0.1
"""Floor of a series' scale, relative to its range (max - min): a series whose baseline
is near 0 keeps its rows within about +-10 (the simulator's moves, 35-70% of a baseline,
never reach it: there the scale is `TAU` times the baseline)."""
LAYOUT = "baseline"
"""How the encoder's series are normalised, saved with every encoder: an encoder trained
on one layout misreads series laid out by another, so `load_encoder` refuses a mismatch.
'mean' (before 2026-12-06, saved without this field): offset the mean, scale the
standard deviation. The move's direction was not learnable from it (docs/results.md)."""


@dataclass(frozen=True)
class EncoderShape:
    """The encoder's configuration (saved beside its weights)."""

    hidden_size: int
    """The language model's embedding width: one encoder row per patch."""
    patch: int = 8
    """Steps per patch."""
    width: int = 256
    """Width of the MLP's hidden layers."""
    depth: int = 2
    """Hidden layers of the MLP (>= 1)."""
    step_dim: int = 16
    """Features per step before the MLP (value projection + in-patch position)."""
    layout: str = LAYOUT
    """How the series it reads are normalised (`LAYOUT`; the only one this code lays out)."""
    onset: bool = False
    """A first-passage head that reads the whole series (`OnsetHead`; off in every encoder
    saved before it existed)."""

    def __post_init__(self) -> None:
        for name in ("hidden_size", "patch", "width", "depth", "step_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"EncoderShape.{name} must be >= 1, got {getattr(self, name)}")
        if self.layout != LAYOUT:
            raise ValueError(
                f"the encoder was trained on series normalised by layout {self.layout!r}, and "
                f"this strl lays them out by {LAYOUT!r} (offset the baseline level, scale "
                f"{TAU:g} of it): it would misread every series. Retrain it (strl train "
                "from the base model), or read it with the strl version that wrote it")


ONSET_DIM = 32
"""Width of the onset head's step features and of the embedding that names its step."""
ONSET_STEPS = 1024
"""Steps the onset head tells apart; a longer series' later steps share the last one."""
ONSET_PRIOR = -4.0
"""Initial bias of the gate (sigmoid about 0.02 a step): at initialisation every step of a
series is reached unfired, so the gradient reaches every step (a gate that starts near 0.5
fires on the first steps and never learns of the later ones)."""


class OnsetHead(nn.Module):
    """A first-passage head over one series' steps. Its gate g(t) reads the values at t-1,
    t, t+1 and the step's position; it fires first at t with probability
    g(t) * prod_{s<t} (1 - g(s)), or never. Its reading is a learned embedding of the step
    it most likely fires at (or of "never"), mapped to a row: a clean name of one step, as
    the language model reads one (the expectation over steps, a blend, it did not learn to
    read: docs/results.md, 2026-12-07). The gradient reaches the gate straight through."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.position = nn.Embedding(ONSET_STEPS, ONSET_DIM)
        self.gate = nn.Sequential(nn.Linear(3 + ONSET_DIM, ONSET_DIM), nn.GELU(),
                                  nn.Linear(ONSET_DIM, 1))
        nn.init.constant_(self.gate[-1].bias, ONSET_PRIOR)
        self.step = nn.Embedding(ONSET_STEPS + 1, ONSET_DIM)
        self.out = nn.Linear(ONSET_DIM, hidden_size)
        nn.init.normal_(self.out.weight, std=ONSET_DIM ** -0.5)

    def logp(self, values: Tensor) -> Tensor:
        """`(T + 1,)` log-probabilities that the head fires first at step t (the last: never)
        on one normalised series `values` `(T,)`; the gate runs in the head's dtype, the
        probabilities in float32."""
        v = values.to(self.position.weight.dtype)
        window = torch.stack([torch.cat([v[:1], v[:-1]]), v, torch.cat([v[1:], v[-1:]])], -1)
        gate = self.gate(torch.cat([window, self.position(self._steps(v))], -1)).float()[:, 0]
        stay = torch.nn.functional.logsigmoid(-gate)  # log(1 - g)
        before = torch.cumsum(stay, 0) - stay  # log prod_{s<t} (1 - g(s))
        return torch.cat([torch.nn.functional.logsigmoid(gate) + before, stay.sum()[None]])

    def forward(self, values: Tensor) -> Tensor:
        """The head's reading of one normalised series `(T,)`: a `(hidden_size,)` vector."""
        p = self.logp(values).exp()
        hard = torch.nn.functional.one_hot(p.argmax(), len(p)).float() + p - p.detach()
        names = torch.cat([self._steps(values), torch.tensor([ONSET_STEPS], device=p.device)])
        read = hard @ self.step(names).float()
        return self.out(read.to(self.out.weight.dtype))

    @staticmethod
    def _steps(values: Tensor) -> Tensor:
        return torch.arange(len(values), device=values.device).clamp(max=ONSET_STEPS - 1)


class TSEncoder(nn.Module):
    """Patches of normalised values (with their mask) -> language-model embedding rows;
    with `onset`, each series' onset head's reading added to all of its rows."""

    def __init__(self, shape: EncoderShape) -> None:
        super().__init__()
        self.shape = shape
        p, d = shape.patch, shape.step_dim
        self.value = nn.Linear(1, d)
        self.pos = nn.Parameter(torch.randn(p, d) * 0.02)
        layers: list[nn.Module] = [nn.Linear(p * d + p, shape.width), nn.GELU()]
        for _ in range(shape.depth - 1):
            layers += [nn.Linear(shape.width, shape.width), nn.GELU()]
        layers.append(nn.Linear(shape.width, shape.hidden_size))
        self.mlp = nn.Sequential(*layers)
        self.onset = OnsetHead(shape.hidden_size) if shape.onset else None

    def forward(self, patches: Tensor, mask: Tensor) -> Tensor:
        """`patches`, `mask`: `(N, p)` -> rows `(N, hidden_size)`. Padded steps (mask 0)
        contribute nothing, whatever their value."""
        m = mask.to(patches.dtype)
        steps = (self.value(patches.unsqueeze(-1)) + self.pos) * m.unsqueeze(-1)
        return self.mlp(torch.cat([steps.flatten(1), m], dim=1))

    def rows(self, series: list[Any], device: torch.device | str = "cpu") -> Tensor:
        """`(N, hidden_size)` rows of a question's series, in node order (`series_patches`
        at this encoder's shape), computed in the encoder's own dtype."""
        own = next(self.parameters()).dtype
        norms = [normalise(np.asarray(s))[0] for s in series]
        patches, mask = _patches(norms, self.shape.patch)
        rows = self(patches.to(device, own), mask.to(device, own))
        if self.onset is None:
            return rows
        counts = [n_patches(len(v), self.shape.patch) for v in norms]
        read = torch.stack([self.onset(torch.from_numpy(v).to(device)) for v in norms])
        return rows + read.to(own).repeat_interleave(torch.tensor(counts, device=device), 0)


def onset_loss(encoder: TSEncoder, series: list[Any]) -> Tensor:
    """Mean negative log-likelihood, over `series`, that the onset head fires first at the
    step where `envs.detect` says the series departs from its baseline (or never): the
    supervised stages' extra loss (`model.encoder.onset_weight`) and the onset fit's."""
    if encoder.onset is None or not series:
        raise ValueError("onset_loss needs an encoder with an onset head and some series")
    dev = next(encoder.parameters()).device
    out = []
    for s in series:
        x = np.asarray(s, dtype=np.float64)
        onset = int(departures(x[None]).onset[0])
        logp = encoder.onset.logp(torch.from_numpy(normalise(x)[0]).to(dev))
        out.append(-logp[onset if onset >= 0 else -1])
    return torch.stack(out).mean()


# ---- one series -> patches ------------------------------------------------------------

def n_patches(steps: int, patch: int) -> int:
    """Placeholder positions of a series of `steps` values."""
    return math.ceil(steps / patch)


def question_patches(series: list[Any], patch: int) -> int:
    """Patches (encoder rows, placeholder positions) of a question's series, all nodes."""
    return sum(n_patches(len(x), patch) for x in series)


def normalise(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """`(values - offset) / scale` by `LAYOUT`: offset the series' baseline level
    (`envs.detect.baselines`), scale `TAU` times its magnitude, floored by `SPREAD_FLOOR`
    of the series' range (a baseline near 0) and by `MIN_SCALE` (a flat series)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0 or not np.isfinite(v).all():
        raise ValueError("a series must be a non-empty 1-D array of finite numbers")
    offset = float(baselines(v[None])[0])
    scale = max(TAU * abs(offset), SPREAD_FLOOR * float(v.max() - v.min()),
                MIN_SCALE * max(1.0, abs(offset)))
    return (v - offset) / scale, offset, scale


def patchify(norm: np.ndarray, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """`(n, patch)` values and mask of a normalised series; the last patch padded with 0."""
    n = n_patches(len(norm), patch)
    values = np.zeros(n * patch, dtype=np.float32)
    values[: len(norm)] = norm
    mask = np.zeros(n * patch, dtype=np.float32)
    mask[: len(norm)] = 1.0
    return values.reshape(n, patch), mask.reshape(n, patch)


def series_patches(series: list[Any], patch: int) -> tuple[Tensor, Tensor]:
    """Every series of a question, in node order, as one batch of patches and masks: the
    encoder's input (`TSEncoder.rows`)."""
    return _patches([normalise(np.asarray(s))[0] for s in series], patch)


def _patches(norms: list[np.ndarray], patch: int) -> tuple[Tensor, Tensor]:
    parts = [patchify(v, patch) for v in norms]
    return (torch.from_numpy(np.concatenate([v for v, _ in parts])),
            torch.from_numpy(np.concatenate([m for _, m in parts])))


# ---- the prompt layout ------------------------------------------------------------------

def placeholder_token(tokenizer: Any) -> tuple[str, int]:
    """The special token that marks encoder positions, and its id (the first of
    `PLACEHOLDER_TOKENS` the vocabulary has as one token)."""
    vocab = tokenizer.get_vocab()
    for tok in PLACEHOLDER_TOKENS:
        if tok in vocab:
            return tok, int(vocab[tok])
    raise ValueError(f"the tokenizer has none of {', '.join(PLACEHOLDER_TOKENS)} to mark "
                     "time-series positions; use series: inline with this model")


def series_text(text: str, series: list[Any], patch: int, token: str) -> str:
    """The prompt with its k-th `<ts><ts/>` replaced by series k's offset and scale and
    `ceil(T_k / patch)` placeholder tokens."""
    return fill_placeholders([text], _layouts(series, patch, token))[0]


def _layouts(series: list[Any], patch: int, token: str) -> list[str]:
    """What stands for each series in the prompt: its offset and scale, then its patches'
    placeholder tokens."""
    out = []
    for s in series:
        _, offset, scale = normalise(np.asarray(s))
        out.append(f"[offset {offset:.4g}, scale {scale:.4g}] "
                   + token * n_patches(len(s), patch))
    return out


def series_ids(tokenizer: Any, text: str, series: list[Any], patch: int,
               system: str = FORMAT_INSTRUCTION) -> list[int]:
    """Chat-templated ids of a question whose series the encoder reads (`text` in the
    ST-Test form, with `<ts><ts/>` placeholders). Every path builds its ids here."""
    return series_chat_ids(tokenizer, [{"role": "system", "content": system},
                                       {"role": "user", "content": text}], series, patch)


def series_chat_ids(tokenizer: Any, messages: list[dict[str, str]], series: list[Any],
                    patch: int) -> list[int]:
    """Chat-templated ids of a conversation whose `<ts><ts/>` placeholders, in order over
    its messages, stand for `series` (a question is the system message and one user
    message: `series_ids`; the chat endpoint sends whole conversations)."""
    token, tid = placeholder_token(tokenizer)
    texts = fill_placeholders([m["content"] for m in messages],
                              _layouts(series, patch, token))
    laid = [{**m, "content": t} for m, t in zip(messages, texts, strict=True)]
    ids = template_ids(tokenizer, laid)
    want = question_patches(series, patch)
    if sum(1 for i in ids if i == tid) != want:
        raise ValueError(f"the tokenizer does not keep {token} as one token: expected {want} "
                         "placeholder positions")
    return ids


def embed_rows(encoder: TSEncoder, embedding: nn.Embedding, ids: list[int],
               series: list[Any], placeholder_id: int) -> Tensor:
    """`(L, hidden)` input rows of a prompt (and its completion): the token embeddings,
    with the prompt's placeholder positions replaced, in order, by the encoder's rows of
    `series`. The prompt's are the first ones: a placeholder token the policy generated in
    its completion stays a token, as it was for the engine that sampled it."""
    dev = embedding.weight.device
    idx = torch.tensor(ids, device=dev)
    rows = embedding(idx)
    if not series:
        return rows
    at = (idx == placeholder_id).nonzero(as_tuple=True)[0]
    want = question_patches(series, encoder.shape.patch)
    if len(at) < want:
        raise ValueError(f"{len(at)} placeholder positions but {want} patches: the "
                         "prompt was not laid out for this encoder")
    enc = encoder.rows(series, dev)
    return rows.index_put((at[: len(enc)],), enc.to(rows.dtype))


def mixed_prompt(encoder: TSEncoder, ids: list[int], series: list[Any],
                 placeholder_id: int, dtype: torch.dtype) -> dict[str, Any]:
    """A vLLM request of one prompt laid out by `series_ids`: token ids, and the encoder's
    rows where `prompt_is_token_ids` is False (vLLM's mixed `EmbedsPrompt`; the stock model,
    no plug-in). Every engine (rollout, `strl eval`, serving) asks this way."""
    is_token = [t != placeholder_id for t in ids]
    want = question_patches(series, encoder.shape.patch)
    if want != is_token.count(False):
        raise ValueError(f"{is_token.count(False)} placeholder positions but {want} "
                         "patches: the prompt was not laid out for this encoder")
    with torch.no_grad():
        enc = encoder.rows(series)
    rows = torch.zeros(len(ids), enc.shape[1], dtype=dtype)
    rows[torch.tensor([not t for t in is_token])] = enc.to(dtype)
    return {"prompt_embeds": rows, "prompt_token_ids": list(ids),
            "prompt_is_token_ids": is_token}


class SeriesLM(nn.Module):
    """A causal LM that reads series through `encoder`: the module a learner trains (and
    its frozen reference runs). Gradients reach the encoder through the placeholder rows;
    a batch without series is the plain LM, exactly."""

    def __init__(self, lm: nn.Module, encoder: TSEncoder, placeholder_id: int) -> None:
        super().__init__()
        self.lm, self.encoder, self.placeholder_id = lm, encoder, int(placeholder_id)

    def forward(self, input_ids: Tensor, attention_mask: Tensor,
                series: list[list[Any] | None] | None = None) -> Any:
        """The LM's output on `input_ids` `(B, L)`; row b's placeholders (left-aligned
        sequences, padding after them) take the encoder's rows of `series[b]`."""
        if not series or all(s is None for s in series):
            return self.lm(input_ids=input_ids, attention_mask=attention_mask)
        emb = self.lm.get_input_embeddings()
        rows = [embed_rows(self.encoder, emb, ids.tolist(), s or [], self.placeholder_id)
                if s else emb(ids) for ids, s in zip(input_ids, series, strict=True)]
        return self.lm(inputs_embeds=torch.stack(rows), attention_mask=attention_mask)


def teacher_forced(model: nn.Module, seqs: list[tuple[list[int], int, list[Any] | None]],
                   batch_size: int, device: torch.device | str = "cpu") -> list[list[int]]:
    """The model's argmax at every completion token of each `(ids, prompt_len, series)`
    (prompt + reference completion), fed the reference up to it: `out[k][i]` is its guess
    for completion token i of sequence k. `model`: a `SeriesLM` or a plain causal LM."""
    out: list[list[int]] = []
    with torch.no_grad():
        for i in range(0, len(seqs), batch_size):
            part = seqs[i:i + batch_size]
            width = max(len(ids) for ids, _, _ in part)
            ids = torch.zeros(len(part), width, dtype=torch.long)
            attn = torch.zeros_like(ids)
            for k, (x, _, _) in enumerate(part):
                ids[k, :len(x)] = torch.tensor(x)
                attn[k, :len(x)] = 1
            kw = {"series": [s for _, _, s in part]} if isinstance(model, SeriesLM) else {}
            guess = model(input_ids=ids.to(device), attention_mask=attn.to(device),
                          **kw).logits.argmax(-1).cpu()
            out += [guess[k, n - 1:len(x) - 1].tolist() for k, (x, n, _) in enumerate(part)]
    return out


def load_policy(model_dir: str | Path, tokenizer: Any) -> nn.Module:
    """A saved policy for local float32 inference: the language model, wrapped in a
    `SeriesLM` with its encoder when the directory has one."""
    # heavy: the engines and the learner import this module without needing transformers
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    enc = load_encoder(model_dir)
    if enc is None:
        return lm
    return SeriesLM(lm, enc.float(), placeholder_token(tokenizer)[1]).eval()


# ---- saved beside the language model ----------------------------------------------------

def save_encoder(encoder: TSEncoder, model_dir: str | Path) -> Path:
    """`ts_encoder/model.safetensors` and `ts_encoder/config.json` in `model_dir`."""
    return save_encoder_state(encoder.state_dict(), encoder.shape, model_dir)


def save_encoder_state(state: dict[str, Tensor], shape: EncoderShape,
                       model_dir: str | Path) -> Path:
    """An encoder's weights (its own parameter names) and shape, saved in `model_dir`."""
    from safetensors.torch import save

    d = Path(model_dir)
    flat = {k: v.detach().float().contiguous().cpu() for k, v in state.items()}
    write_atomic(d / ENCODER_FILE, save(flat))
    write_atomic(d / ENCODER_CONFIG, json.dumps(asdict(shape), indent=1))
    return d / ENCODER_FILE


def initial_encoder(model_dir: str | Path, hidden_size: int, seed: int,
                    **shape: int) -> TSEncoder:
    """The encoder a run starts from: the one saved with the model, else a new one of
    `shape` initialised from `seed` alone (the learner ranks and every rollout engine
    build the same one, bit for bit, without exchanging it)."""
    found = load_encoder(model_dir)
    if found is not None:
        if found.shape.hidden_size != hidden_size:
            raise ValueError(f"{model_dir}: the saved encoder's rows have width "
                             f"{found.shape.hidden_size}, the model's embeddings {hidden_size}")
        return found
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TSEncoder(EncoderShape(hidden_size=hidden_size, **shape))


def split_state(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """A learner's full state -> (the language model's, the encoder's) by `SYNC_PREFIX`."""
    lm = {k: v for k, v in state.items() if not k.startswith(SYNC_PREFIX)}
    enc = {k[len(SYNC_PREFIX):]: v for k, v in state.items() if k.startswith(SYNC_PREFIX)}
    return lm, enc


def load_encoder(model_dir: str | Path) -> TSEncoder | None:
    """The encoder saved in `model_dir`, or None when the model reads series inline."""
    from safetensors.torch import load_file

    d = Path(model_dir)
    if not (d / ENCODER_CONFIG).is_file():
        return None
    try:
        saved = json.loads((d / ENCODER_CONFIG).read_text(encoding="utf-8"))
        shape = EncoderShape(**{"layout": "mean", **saved})  # saved before layouts: mean
        enc = TSEncoder(shape)
        enc.load_state_dict(load_file(d / ENCODER_FILE))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type too
        raise ValueError(f"{d}: the time-series encoder cannot be loaded ({e})") from None
    return enc.eval()
