"""The time-series encoder and the prompt layout every path shares: patches and masks,
normalisation, placeholder positions, rows in the right places, gradients, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from envs.detect import baselines, departures  # noqa: E402
from envs.prompt import PLACEHOLDER  # noqa: E402
from envs.stream import SampleStream  # noqa: E402
from envs.tasks import EnvConfig  # noqa: E402
from rlsys.model.build import build_model  # noqa: E402
from rlsys.model.chat import chat_ids  # noqa: E402
from rlsys.model.series import (  # noqa: E402
    LAYOUT,
    MIN_SCALE,
    EncoderShape,
    SeriesLM,
    TSEncoder,
    embed_rows,
    load_encoder,
    n_patches,
    normalise,
    onset_loss,
    patchify,
    placeholder_token,
    save_encoder,
    series_ids,
    series_patches,
    series_text,
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("series") / "m", "tiny", seed=0,
                       corpus_size=200, progress=False)


@pytest.fixture(scope="module")
def tok(model_dir: Path):
    return transformers.AutoTokenizer.from_pretrained(model_dir)


def test_patches_cover_every_step_once_and_mask_the_padding() -> None:
    values, mask = patchify(np.arange(1, 20, dtype=float), 8)
    assert values.shape == mask.shape == (3, 8) and n_patches(19, 8) == 3
    assert mask.sum() == 19 and mask[2, 3:].sum() == 0
    assert values.flatten()[:19].tolist() == list(range(1, 20)) and values[2, 3:].sum() == 0
    assert n_patches(16, 8) == 2 and n_patches(1, 8) == 1


def test_normalise_reads_a_series_against_its_baseline() -> None:
    """Offset: the baseline level; scale: TAU of it, so +-1 is the departure threshold and
    the sign the direction; floors for a baseline near 0 and for a flat series."""
    v = np.array([100.0, 101, 99, 100, 100, 102, 100, 100, 100, 100, 130, 140, 60, 100])
    norm, offset, scale = normalise(v)
    assert offset == float(baselines(v[None])[0]) == 100.0 and scale == pytest.approx(10.0)
    assert norm[10:13].tolist() == pytest.approx([3.0, 4.0, -4.0])  # 30% up: 3 thresholds
    d = departures(v[None])
    over = np.abs(norm) > 1
    assert int(np.argmax(over[:-1] & over[1:])) == int(d.onset[0]) == 10
    mirrored = 2 * offset - v  # a fall of the same size: the same rows, negated
    assert normalise(mirrored)[0] == pytest.approx(-norm)
    norm, offset, scale = normalise(np.array([0.0, 0.1, -0.1, 0.0, 0.0, 0.0, 5.0, -5.0]))
    assert offset == 0.0 and scale == pytest.approx(1.0) and np.abs(norm).max() == 5.0
    norm, offset, scale = normalise(np.full(5, 300.0))
    assert offset == 300.0 and scale == pytest.approx(30.0) and (norm == 0).all()
    norm, offset, scale = normalise(np.zeros(3))  # shorter than a baseline window
    assert offset == 0.0 and scale == pytest.approx(MIN_SCALE) and (norm == 0).all()
    for bad in ([], [1.0, float("nan")], [[1.0, 2.0]]):
        with pytest.raises(ValueError, match="non-empty 1-D array of finite"):
            normalise(np.array(bad))


def test_the_encoder_maps_patches_to_rows_ignores_padding_and_learns() -> None:
    torch.manual_seed(0)
    enc = TSEncoder(EncoderShape(hidden_size=32, patch=4, width=16, depth=2))
    series = [np.arange(10.0), np.sin(np.arange(7.0))]
    patches, mask = series_patches(series, 4)
    assert patches.shape == mask.shape == (3 + 2, 4)
    rows = enc(patches, mask)
    assert rows.shape == (5, 32) and torch.equal(enc.rows(series), rows)
    junk = patches.clone()
    junk[mask == 0] = 1e6  # values under a zero mask change nothing
    assert torch.equal(enc(junk, mask), rows)
    moved = patches.clone()
    moved[0, 1] += 0.5  # a real value does
    assert not torch.allclose(enc(moved, mask)[0], rows[0]) and torch.equal(
        enc(moved, mask)[1:], rows[1:])
    rows.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


def _stepped(rng: np.random.Generator, at: int | None, length: int = 36) -> np.ndarray:
    """A noisy level of 100 that jumps by 30 at step `at` (None: never)."""
    x = 100 + rng.normal(0, 1, length)
    if at is not None:
        x[at:] += 30
    return x.round()


def test_the_onset_head_adds_one_reading_to_every_row_of_its_series() -> None:
    torch.manual_seed(0)
    enc = TSEncoder(EncoderShape(hidden_size=32, patch=4, width=16, depth=1, onset=True))
    rng = np.random.default_rng(0)
    series = [_stepped(rng, 20), _stepped(rng, None, 22)]
    added = enc.rows(series) - enc(*series_patches(series, 4))
    assert added.shape == (9 + 6, 32)
    assert torch.allclose(added[:9], added[0].expand(9, 32))  # one reading per series
    assert torch.allclose(added[9:], added[9].expand(6, 32))
    p = enc.onset.logp(torch.from_numpy(normalise(series[0])[0])).exp()
    assert p.shape == (37,) and torch.isclose(p.sum(), torch.tensor(1.0), atol=1e-5)
    onset_loss(enc, series).backward()  # the head's gate learns from the loss
    assert enc.onset.gate[0].weight.grad.abs().sum() > 0
    enc.zero_grad()
    enc.rows(series).square().mean().backward()  # and, straight through, from the rows
    assert enc.onset.gate[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="onset head"):
        onset_loss(TSEncoder(EncoderShape(hidden_size=8, patch=4)), series)


def test_the_onset_head_learns_the_detectors_departure_step() -> None:
    """Fitted on the onset loss alone, the head names `envs.detect`'s departure step
    (within 1) of series it never saw, and says never where nothing departs."""
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    enc = TSEncoder(EncoderShape(hidden_size=8, patch=4, width=8, depth=1, onset=True))

    def draw(n: int) -> list[np.ndarray]:
        return [_stepped(rng, None if k % 4 == 0 else int(rng.integers(14, 32)))
                for k in range(n)]

    opt = torch.optim.AdamW(enc.onset.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        onset_loss(enc, draw(16)).backward()
        opt.step()
    fresh = draw(40)
    right = 0
    for x in fresh:
        gold = int(departures(x[None]).onset[0])
        got = int(enc.onset.logp(torch.from_numpy(normalise(x)[0])).argmax())
        right += (got == len(x)) if gold < 0 else (abs(got - gold) <= 1)
    assert right >= 36, right


def test_every_placeholder_becomes_its_series_patches(tok) -> None:
    token, tid = placeholder_token(tok)
    assert token == "<|reserved_0|>" and tok.convert_ids_to_tokens(tid) == token
    series = [np.arange(36.0), np.ones(20) * 5.0]
    text = f"Node 0 series: {PLACEHOLDER}; Node 1 series: {PLACEHOLDER}. Which node?"
    laid = series_text(text, series, 8, token)
    assert laid.count(token) == 5 + 3 and PLACEHOLDER not in laid
    assert "[offset 5, scale 3.5] " in laid and "[offset 5, scale 0.5] " in laid
    ids = series_ids(tok, text, series, 8)
    assert sum(i == tid for i in ids) == 8
    with pytest.raises(ValueError, match="2 <ts><ts/> placeholders but 1 series"):
        series_text(text, series[:1], 8, token)


def test_a_generated_question_is_many_times_shorter_than_inline(tok) -> None:
    s = SampleStream(3, ["root_cause"], EnvConfig(nodes=(10,), lengths=(168,))).sample(0)
    row = s.to_streasoner()
    inline = chat_ids(tok, s.prompt())
    enc = series_ids(tok, row["input"], row["timeseries"], 8)
    assert sum(i == placeholder_token(tok)[1] for i in enc) == 10 * 21
    assert len(inline) > 4 * len(enc), (len(inline), len(enc))


def test_rows_are_token_embeddings_except_at_placeholders(tok, model_dir: Path) -> None:
    lm = transformers.AutoModelForCausalLM.from_pretrained(model_dir)
    emb = lm.get_input_embeddings()
    series = [np.arange(12.0), np.cos(np.arange(9.0))]
    ids = series_ids(tok, f"A {PLACEHOLDER} B {PLACEHOLDER} C", series, 4)
    _, tid = placeholder_token(tok)
    enc = TSEncoder(EncoderShape(hidden_size=emb.weight.shape[1], patch=4, width=8, depth=1))
    rows = embed_rows(enc, emb, ids, series, tid)
    at = [i for i, t in enumerate(ids) if t == tid]
    other = [i for i, t in enumerate(ids) if t != tid]
    assert rows.shape == (len(ids), emb.weight.shape[1]) and len(at) == 3 + 3
    assert torch.equal(rows[other], emb(torch.tensor(ids))[other])
    assert torch.allclose(rows[at], enc.rows(series).to(rows.dtype))
    # a placeholder token in the completion (the policy may sample any token) is a token
    longer = embed_rows(enc, emb, ids + [5, tid, 6], series, tid)
    assert torch.equal(longer[: len(ids)], rows)
    assert torch.equal(longer[len(ids):], emb(torch.tensor([5, tid, 6])))
    with pytest.raises(ValueError, match="6 placeholder positions but 7 patches"):
        embed_rows(enc, emb, ids, [np.arange(16.0), np.arange(9.0)], tid)


def test_the_encoder_is_saved_beside_the_model_and_loaded_back(tmp_path: Path) -> None:
    torch.manual_seed(1)
    enc = TSEncoder(EncoderShape(hidden_size=24, patch=6, width=12, depth=3, step_dim=4))
    save_encoder(enc, tmp_path)
    back = load_encoder(tmp_path)
    assert back is not None and back.shape == enc.shape
    assert torch.equal(back.rows([np.arange(13.0)]), enc.rows([np.arange(13.0)]))
    assert not list(tmp_path.glob("*.safetensors"))  # vLLM would load those as the LM's
    assert load_encoder(tmp_path / "nothing") is None  # an inline model: no encoder
    with_onset = TSEncoder(EncoderShape(hidden_size=24, patch=6, width=12, onset=True))
    save_encoder(with_onset, tmp_path / "onset")
    back = load_encoder(tmp_path / "onset")
    assert back is not None and back.shape.onset and torch.equal(
        back.rows([np.arange(13.0)]), with_onset.rows([np.arange(13.0)]))
    config = tmp_path / "ts_encoder" / "config.json"
    saved = json.loads(config.read_text())
    del saved["onset"]  # as the encoders before the onset head were saved
    config.write_text(json.dumps(saved))
    old = load_encoder(tmp_path)
    assert old is not None and old.onset is None
    (tmp_path / "ts_encoder" / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(ValueError, match="the time-series encoder cannot be loaded"):
        load_encoder(tmp_path)


def test_an_encoder_of_another_layout_is_refused_not_misread(tmp_path: Path) -> None:
    """An encoder saved before layouts (mean and standard deviation) reads every series
    wrongly under today's layout: loading it fails and says what to do."""
    save_encoder(TSEncoder(EncoderShape(hidden_size=8, patch=4, width=8, depth=1)), tmp_path)
    config = tmp_path / "ts_encoder" / "config.json"
    saved = json.loads(config.read_text())
    assert saved["layout"] == LAYOUT == "baseline"
    del saved["layout"]  # as the encoders before it were saved
    config.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="normalised by layout 'mean'.*Retrain it"):
        load_encoder(tmp_path)
    with pytest.raises(ValueError, match="layout 'median'"):
        EncoderShape(hidden_size=8, layout="median")


def test_the_lm_reads_series_through_the_encoder_and_trains_it(tok, model_dir: Path) -> None:
    lm = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    _, tid = placeholder_token(tok)
    torch.manual_seed(0)
    enc = TSEncoder(EncoderShape(hidden_size=lm.config.hidden_size, patch=4, width=16))
    model = SeriesLM(lm, enc, tid)
    a = [np.arange(10.0)]
    b = [np.arange(10.0) ** 2]
    ids = series_ids(tok, f"Node 0: {PLACEHOLDER}. Next?", a, 4)
    x = torch.tensor([ids, ids])
    attn = torch.ones_like(x)
    plain = lm(input_ids=x, attention_mask=attn).logits
    assert torch.equal(model(x, attn).logits, plain)  # no series: the LM itself
    both = model(x, attn, [a, b]).logits
    assert not torch.allclose(both[0, -1], both[1, -1])  # other values, other next token
    assert not torch.allclose(both[0, -1], plain[0, -1])  # the rows are really used
    assert torch.allclose(both[0], model(x[:1], attn[:1], [a]).logits[0], atol=1e-5)
    both[:, -1].logsumexp(-1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


def test_training_prompts_carry_their_series_and_the_encoder_layout(tok) -> None:
    from rlsys.config import load_config
    from rlsys.train.data import PromptSource

    _, tid = placeholder_token(tok)
    # small worlds only: an inline 9-node propagation prompt would be skipped as too long
    env = ["data.env.lengths=[36]", "data.env.nodes=[3]",
           "data.tasks={etiological: 1, root_cause: 1, intervention: 1}"]
    enc = PromptSource(load_config(None, ["model.series=encoder", "model.encoder.patch=6",
                                          "algorithm.spatial.enabled=true", *env]), tok)
    inline = PromptSource(load_config(None, env), tok)
    for p, q in zip(enc.next(4), inline.next(4), strict=True):
        assert p.id == q.id and q.series is None  # the same questions, two layouts
        n = len(p.series)
        assert n >= 3 and all(len(s) == 36 for s in p.series)
        assert sum(i == tid for i in p.ids) == n * 6  # ceil(36 / 6) positions per node
        assert sum(i == tid for i in p.ids_no_graph) == n * 6 and p.ids_no_graph != p.ids
        assert len(p.ids) < len(q.ids)
        assert p.series == [list(map(float, r)) for r in p.target["series"]]  # raw values
