"""The embedded default model: a complete model directory that transformers loads, that
chats in the trained format, and that a seed rebuilds byte for byte."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from envs.prompt import FORMAT_INSTRUCTION  # noqa: E402
from envs.stream import SampleStream  # noqa: E402
from envs.tasks import EnvConfig  # noqa: E402
from rlsys.model import build as modelinit  # noqa: E402
from rlsys.model.build import (  # noqa: E402
    FORMAT_TAGS,
    INFO_FILE,
    PRESETS,
    build_model,
    ensure_model,
    qwen2_config,
    validate_model,
)

CORPUS = 400  # a smaller tokenizer corpus than the default: the vocabulary saturates anyway
FILES = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
         "tokenizer_config.json", INFO_FILE}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("tiny") / "model", corpus_size=CORPUS,
                       progress=False)


@pytest.fixture(scope="module")
def tok(model_dir: Path):
    return transformers.AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def model(model_dir: Path):
    return transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()


@pytest.fixture(scope="module")
def samples():
    # Another stream seed and the default (bigger) config than the tokenizer corpus.
    return SampleStream(123, "all", EnvConfig()).take(14)


def test_build_writes_a_complete_model_dir_and_nothing_else(model_dir: Path) -> None:
    assert {p.name for p in model_dir.iterdir()} == FILES
    assert [p.name for p in model_dir.parent.iterdir()] == ["model"], "no temp dirs left"
    info = json.loads((model_dir / INFO_FILE).read_text())
    assert (info["preset"], info["seed"], info["corpus_size"]) == ("tiny", 0, CORPUS)
    assert info["vocab_size"] == 2048 and 1000 < info["bpe_vocab"] <= 2048 - len(FORMAT_TAGS)
    assert info["build_seconds"] > 0 and info["built_at"].endswith("Z")
    assert validate_model(model_dir) == info


def test_config_is_a_tied_bf16_qwen2(model_dir: Path, model) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["architectures"] == ["Qwen2ForCausalLM"]
    assert config["tie_word_embeddings"] and config["dtype"] == "bfloat16"
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["num_key_value_heads"], config["max_position_embeddings"]) == (
                256, 4, 4, 2, 8192)
    assert model.dtype == torch.bfloat16
    assert model.lm_head.weight is model.model.embed_tokens.weight
    from safetensors import safe_open

    with safe_open(model_dir / "model.safetensors", "pt") as f:
        assert "lm_head.weight" not in f.keys(), "a tied head is stored once, as embed_tokens"
    n = sum(p.numel() for p in model.parameters())
    assert 3.0e6 < n < 4.0e6
    assert n == json.loads((model_dir / INFO_FILE).read_text())["params"]


@pytest.mark.parametrize(("preset", "low", "high"), [("tiny", 3.0e6, 4.0e6),
                                                     ("small", 23e6, 27e6)])
def test_preset_sizes(preset: str, low: float, high: float) -> None:
    with torch.device("meta"):
        m = transformers.Qwen2ForCausalLM(qwen2_config(preset))
    assert low < sum(p.numel() for p in m.parameters()) < high


def test_chat_template_is_qwen_chatml(tok) -> None:
    msgs = [{"role": "system", "content": FORMAT_INSTRUCTION},
            {"role": "user", "content": "Node 0 ... question?"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == (f"<|im_start|>system\n{FORMAT_INSTRUCTION}<|im_end|>\n"
                    "<|im_start|>user\nNode 0 ... question?<|im_end|>\n"
                    "<|im_start|>assistant\n")
    without = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
    assert text == without + "<|im_start|>assistant\n"
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_dict=False)
    assert ids == tok.encode(text, add_special_tokens=False)
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")


def test_special_and_format_tokens(model_dir: Path, tok) -> None:
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert len(tok) == 2048
    ids = {t: tok.encode(t, add_special_tokens=False) for t in
           ("<|endoftext|>", "<|im_start|>", "<|im_end|>", *FORMAT_TAGS)}
    assert all(len(v) == 1 for v in ids.values()), ids
    assert [ids[t][0] for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")] == [0, 1, 2]
    gen = json.loads((model_dir / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [2, 0] and gen["pad_token_id"] == 0
    # The tags are not special: they survive decoding with skip_special_tokens, which is
    # how vLLM returns text, so rewards see them.
    out = "<think>x 1.5</think><answer>B</answer>"
    assert tok.decode(tok.encode(out) + [2], skip_special_tokens=True) == out


def test_real_prompts_round_trip_and_digits_are_single_tokens(model_dir: Path, tok,
                                                              samples) -> None:
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    for s in samples:
        for text in (s.prompt(), s.prompt_no_graph, s.prompt(inline=False), s.completion):
            ids = tok.encode(text, add_special_tokens=False)
            assert tok.decode(ids) == text
            assert ids == raw.encode(text).ids, "transformers reads tokenizer.json as written"
            pieces = tok.convert_ids_to_tokens(ids)
            assert all(len(p) == 1 for p in pieces if any(c.isdigit() for c in p))
    assert tok.tokenize(" 38.31,") == ["Ġ", "3", "8", ".", "3", "1", ","]


def test_greedy_generate_runs(tok, model) -> None:
    msgs = [{"role": "user", "content": "Node 0 time series with length of 3: [1.5, 2.0]"}]
    ids = torch.tensor([tok.apply_chat_template(msgs, add_generation_prompt=True,
                                                return_dict=False)])
    out = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert out.shape == (1, ids.shape[1] + 8) or tok.eos_token_id in out[0, ids.shape[1]:]
    assert out[0, ids.shape[1]:].max() < len(tok), "every id the model emits decodes"


def test_same_seed_rebuilds_the_same_files(model_dir: Path, tmp_path: Path) -> None:
    again = build_model(tmp_path / "again", corpus_size=CORPUS, progress=False)
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "config.json"):
        assert sha(again / name) == sha(model_dir / name), name


def test_refuses_a_non_empty_dir_unless_overwrite(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty.*overwrite"):
        build_model(out, corpus_size=20, progress=False)
    assert (out / "keep.txt").read_text() == "mine"
    build_model(out, seed=1, corpus_size=20, progress=False, overwrite=True)
    assert {p.name for p in out.iterdir()} == FILES
    assert json.loads((out / INFO_FILE).read_text())["seed"] == 1
    assert sha(out / "model.safetensors") != sha(model_dir / "model.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["m"], "no temp dirs left"


def test_an_empty_existing_dir_is_filled(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    assert {p.name for p in build_model(tmp_path / "m", corpus_size=20,
                                        progress=False).iterdir()} == FILES


def test_an_interrupted_build_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(modelinit, "_save_weights", boom)
    with pytest.raises(KeyboardInterrupt):
        build_model(tmp_path / "m", corpus_size=20, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_dir_filled_during_the_build_is_left_alone(tmp_path: Path, monkeypatch) -> None:
    real = modelinit._save_weights

    def racing(*args, **kwargs):
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "theirs.txt").write_text("x")
        return real(*args, **kwargs)

    monkeypatch.setattr(modelinit, "_save_weights", racing)
    with pytest.raises(ValueError, match="filled by another process"):
        build_model(tmp_path / "m", corpus_size=20, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["theirs.txt"]


def test_bad_arguments_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown model preset 'huge'.*tiny, small"):
        build_model(tmp_path / "m", preset="huge")
    with pytest.raises(ValueError, match="corpus_size"):
        build_model(tmp_path / "m", corpus_size=0)
    assert set(PRESETS) == {"tiny", "small"}


def test_ensure_model_reuses_a_matching_build(model_dir: Path, monkeypatch) -> None:
    def no_rebuild(*args, **kwargs):
        raise AssertionError("ensure_model rebuilt a model that was already there")

    monkeypatch.setattr(modelinit, "build_model", no_rebuild)
    assert ensure_model(model_dir, "tiny", 0) == model_dir
    with pytest.raises(ValueError, match="preset 'tiny' seed 0, not preset 'tiny' seed 1"):
        ensure_model(model_dir, "tiny", 1)


def test_ensure_model_builds_when_missing(tmp_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(modelinit, "build_model", lambda *a, **k: calls.append(a) or a[0])
    assert ensure_model(tmp_path / "new", "small", 3) == tmp_path / "new"
    assert calls == [(tmp_path / "new", "small", 3)]


def test_validate_rejects_incomplete_dirs_and_accepts_foreign_models(
        model_dir: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    shutil.copytree(model_dir, foreign)
    (foreign / INFO_FILE).unlink()
    assert validate_model(foreign) == {}
    assert ensure_model(foreign, "tiny", 7) == foreign  # not built here: files checked only
    (foreign / "config.json").unlink()
    with pytest.raises(ValueError, match="missing config.json"):
        ensure_model(foreign)
    with pytest.raises(FileNotFoundError):
        validate_model(tmp_path / "nope")
