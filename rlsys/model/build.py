"""The embedded default model: a tiny Qwen2-shaped model built locally, never downloaded.

`build_model` writes a complete Hugging Face model directory that both `transformers` and
vLLM load: a byte-level BPE tokenizer trained on the project's own generated questions, a
Qwen-style chat template, a randomly initialised Qwen2 config and weights (safetensors,
bf16, tied embeddings), a generation config, and `strl_model.json` describing the build.

The tokenizer splits text with Qwen2's own pre-tokenizer pattern, so every digit is its
own token, as in Qwen2.5: a number reads the same wherever it appears, and prompt lengths
here match what a Qwen2.5 model would see. The id space is padded with reserved special
tokens up to the preset's vocabulary size, so every id the model can emit decodes.

A build is a pure function of (preset, seed, corpus size): the corpus is stream `seed` of
`envs.stream`, BPE training is deterministic, and weights come from `torch.manual_seed`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from envs.prompt import FORMAT_INSTRUCTION
from envs.sample import TASKS
from envs.stream import TaskMix, generate
from envs.tasks import EnvConfig
from rlsys.files import replace_dir
from rlsys.model.chat import END_OF_TURN

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", END_OF_TURN
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)
"""Special tokens, ids 0, 1, 2 in this order."""
FORMAT_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
"""Added (non-special) tokens: each tag of the answer format is one token and decodes."""
RESERVED = "<|reserved_{}|>"

# Qwen2's pre-tokenizer split: words with their leading space, single digits, punctuation
# runs, newlines, whitespace. Used verbatim so numbers tokenize as in Qwen2.5.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
"""Qwen's ChatML layout, without Qwen's default system message."""

REQUIRED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")
INFO_FILE = "strl_model.json"


@dataclass(frozen=True)
class Preset:
    """The shape of one embedded model (a Qwen2 decoder)."""

    hidden_size: int
    """Width of the residual stream."""
    intermediate_size: int
    """Width of the SwiGLU MLP."""
    num_hidden_layers: int
    """Decoder layers."""
    num_attention_heads: int
    """Query heads; head_dim = hidden_size / num_attention_heads."""
    num_key_value_heads: int
    """Key/value heads (grouped-query attention)."""
    vocab_size: int
    """Embedding rows; BPE fills what the corpus supports, reserved tokens the rest."""
    max_position_embeddings: int = 8192
    """Longest sequence (prompt + completion) the model is configured for: room for the
    eval suite's 10-node prompts (about 4,600 tokens with the tiny tokenizer)."""
    about: str = ""
    """What the preset is for."""


PRESETS: dict[str, Preset] = {
    "tiny": Preset(256, 704, 4, 4, 2, 2048,
                   about="~3.5M params: the default for tests and CPU runs"),
    "small": Preset(512, 1536, 8, 8, 2, 2048,
                    about="~25M params: the CPU benchmarks' model"),
}

CORPUS_ENV = {"nodes": (3, 5), "lengths": (48,)}
"""The `EnvConfig` the tokenizer corpus is drawn from."""
CORPUS_TASKS = (*TASKS, "align")
"""The tasks of the tokenizer corpus. Fixed, not every registered family: a new family
(`align_node`, whose phrases `align` already has) must not change the tokenizer, and so
the model, that a fresh clone builds."""


def build_model(out_dir: str | Path, preset: str = "tiny", seed: int = 0,
                corpus_size: int = 3000, progress: bool = True,
                overwrite: bool = False) -> Path:
    """Build the embedded model into `out_dir` and return its path.

    The model is written to a temporary sibling directory and renamed into place, so an
    interrupted build never leaves a half-written `out_dir`. A non-empty `out_dir` is
    replaced only with `overwrite=True`.
    """
    shape = _preset(preset)
    if corpus_size < 1:
        raise ValueError(f"corpus_size must be >= 1, got {corpus_size}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    if _non_empty(out) and not overwrite:
        raise ValueError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace "
                         f"it, or choose another directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        texts = _corpus(seed, corpus_size, progress)
        t_corpus = time.perf_counter()
        tok = _train_tokenizer(texts, shape.vocab_size)
        _save_tokenizer(tok, tmp, shape.max_position_embeddings)
        t_tok = time.perf_counter()
        n_params = _save_weights(preset, seed, tmp, quiet=not progress)
        t_model = time.perf_counter()
        info = {
            "preset": preset, "seed": seed, "params": n_params,
            "vocab_size": shape.vocab_size,
            "bpe_vocab": tok.get_vocab_size() - len(FORMAT_TAGS) - _n_reserved(tok),
            "corpus_size": corpus_size, "corpus_env": CORPUS_ENV, "shape": asdict(shape),
            "build_seconds": round(t_model - t0, 2),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        _swap_in(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if progress:
        print(f"model: {n_params / 1e6:.2f}M params, {shape.vocab_size} ids "
              f"({info['bpe_vocab']} BPE) -> {out} in {info['build_seconds']:.1f} s "
              f"(corpus {t_corpus - t0:.1f} s, tokenizer {t_tok - t_corpus:.1f} s, "
              f"weights {t_model - t_tok:.1f} s)", file=sys.stderr)
    return out


def ensure_model(path: str | Path, preset: str = "tiny", seed: int = 0,
                 progress: bool = True) -> Path:
    """The model at `path`: built there if missing or empty, validated if present.

    A directory built by `build_model` must match `preset` and `seed`; any other Hugging
    Face model directory (a downloaded checkpoint) is only checked for its files.
    """
    p = Path(path)
    if not _non_empty(p):
        return build_model(p, preset, seed, progress=progress)
    info = validate_model(p)
    if info and (info["preset"], info["seed"]) != (preset, seed):
        raise ValueError(
            f"{p} holds the embedded model preset '{info['preset']}' seed {info['seed']}, not "
            f"preset '{preset}' seed {seed}; point to another directory or rebuild it with "
            f"overwrite")
    return p


def validate_model(path: str | Path) -> dict[str, Any]:
    """Check that `path` is a loadable model directory; return its `strl_model.json`
    ({} for a model not built here). Cheap: reads JSON only, imports no torch."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such model directory")
    missing = [f for f in REQUIRED_FILES if not (p / f).is_file()]
    if not (any(p.glob("*.safetensors")) or (p / "model.safetensors.index.json").is_file()):
        missing.append("*.safetensors")
    if missing:
        raise ValueError(f"{p} is not a complete model directory: missing {', '.join(missing)}"
                         f"; rebuild it (strl init-model --overwrite) or choose another")
    config = _read_json(p / "config.json")
    tok = _read_json(p / "tokenizer.json")
    ids = list(tok.get("model", {}).get("vocab", {}).values())
    ids += [t["id"] for t in tok.get("added_tokens", [])]
    if "vocab_size" in config and ids and max(ids) >= config["vocab_size"]:
        raise ValueError(f"{p}: tokenizer ids reach {max(ids)} but the model has only "
                         f"{config['vocab_size']} embedding rows")
    return _read_json(p / INFO_FILE) if (p / INFO_FILE).is_file() else {}


def corpus_texts(samples: list[Any]) -> Iterator[str]:
    """The tokenizer's training text: the system prompt, role names, and each sample's
    prompts (with and without the graph) and completion with its format tags cut out
    (the tags are added tokens, so BPE need not spend merges on them)."""
    tags = re.compile("|".join(re.escape(t) for t in FORMAT_TAGS))
    yield FORMAT_INSTRUCTION
    yield "system\nuser\nassistant\n"
    for s in samples:
        yield s.prompt()
        yield s.prompt_no_graph
        yield from (part for part in tags.split(s.completion) if part)


def _corpus(seed: int, n: int, progress: bool) -> list[str]:
    from tqdm import tqdm

    cfg, mix = EnvConfig(**CORPUS_ENV), TaskMix.of(CORPUS_TASKS)
    texts: list[str] = []
    with tqdm(total=n, unit="sample", desc="tokenizer corpus", disable=not progress,
              file=sys.stderr) as bar:
        for start in range(0, n, 256):
            samples = generate(seed, range(start, min(n, start + 256)), mix, cfg)
            texts.extend(corpus_texts(samples))
            bar.update(len(samples))
    return texts


def _train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        processors,
        trainers,
    )
    from tokenizers import pre_tokenizers as pre

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre.Sequence([
        pre.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(FORMAT_TAGS), min_frequency=2, show_progress=False,
        special_tokens=list(SPECIAL_TOKENS), initial_alphabet=pre.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer, length=len(texts))
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in FORMAT_TAGS])
    spare = vocab_size - tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(RESERVED.format(i), normalized=False, special=True)
                            for i in range(spare)])
    if tok.get_vocab_size() != vocab_size:
        raise RuntimeError(f"tokenizer has {tok.get_vocab_size()} ids, expected {vocab_size}")
    return tok


def _n_reserved(tok) -> int:
    return sum(1 for t in tok.get_added_tokens_decoder().values()
               if t.content.startswith("<|reserved_"))


def _save_tokenizer(tok, out: Path, max_length: int) -> None:
    # heavy: transformers, imported only when a model is built (`strl plan` reads PRESETS)
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=IM_END, pad_token=ENDOFTEXT,
        model_max_length=max_length, clean_up_tokenization_spaces=False,
        chat_template=CHAT_TEMPLATE)
    # The template goes into tokenizer_config.json (not chat_template.jinja), where every
    # transformers version and serving stack looks for it.
    hf.save_pretrained(out, save_jinja_files=False)


def qwen2_config(preset: str = "tiny"):
    """The `transformers.Qwen2Config` of a preset (ids of the embedded tokenizer)."""
    # heavy: transformers, imported only when a model is built (`strl plan` reads PRESETS)
    from transformers import Qwen2Config

    shape = _preset(preset)
    eot, im_end = SPECIAL_TOKENS.index(ENDOFTEXT), SPECIAL_TOKENS.index(IM_END)
    return Qwen2Config(
        vocab_size=shape.vocab_size, hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size, num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=True, bos_token_id=eot, eos_token_id=im_end, pad_token_id=eot,
        dtype="bfloat16")


def _save_weights(preset: str, seed: int, out: Path, quiet: bool) -> int:
    # heavy: torch and transformers, imported only when a model is built
    import torch
    from transformers import GenerationConfig, Qwen2ForCausalLM

    config = qwen2_config(preset)
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state alone
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    eot, im_end = config.pad_token_id, config.eos_token_id
    model.generation_config = GenerationConfig(
        bos_token_id=eot, eos_token_id=[im_end, eot], pad_token_id=eot)
    with _quiet_transformers(quiet):
        model.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())  # tied: the shared matrix counts once


@contextmanager
def _quiet_transformers(quiet: bool) -> Iterator[None]:
    # heavy: transformers, imported only when a model is built (`strl plan` reads PRESETS)
    from transformers.utils import logging

    was_on = logging.is_progress_bar_enabled()
    if quiet and was_on:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and was_on:
            logging.enable_progress_bar()


def _swap_in(tmp: Path, out: Path, overwrite: bool) -> None:
    # mkdtemp (and the safetensors writer) create owner-only modes: give the model the
    # modes of an ordinary directory before it appears under its name.
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    for f in tmp.iterdir():
        f.chmod(0o666 & ~umask)
    if _non_empty(out) and overwrite:
        replace_dir(tmp, out)
        return
    if out.is_dir() and not _non_empty(out):
        out.rmdir()
    try:
        tmp.rename(out)  # atomic; fails if another build filled `out` meanwhile
    except OSError as e:
        raise ValueError(f"{out} was filled by another process during this build ({e}); "
                         f"use it, or build again with overwrite") from None


def _non_empty(p: Path) -> bool:
    return p.is_dir() and any(p.iterdir())


def _preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model preset '{name}'; choose from "
                         f"{', '.join(PRESETS)}") from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None

