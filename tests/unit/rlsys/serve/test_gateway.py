"""The HTTP API's failure paths, which a real engine cannot be made to take on demand:
an engine that hangs, dies, refuses a request, or breaks mid-stream. (Every other path,
with the real vLLM engine behind Ray Serve, is in tests/integration/test_serve.py.)"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from rlsys.config import ServeConfig, load_config
from rlsys.sampling import Sampling
from rlsys.serve.gateway import Gateway


class Engine:
    """An engine that does what the test says."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    async def generate(self, ids, sampling, series=None):
        if self.mode == "hang":
            await asyncio.sleep(60)
        if self.mode == "refuse":
            return {"error": "invalid JSON schema"}
        if self.mode == "crash":
            raise RuntimeError("engine core died")
        return {"text": "<think>t</think><answer>B</answer>", "n_out": 7,
                "finish_reason": "stop"}

    async def stream(self, ids, sampling, series=None):
        yield {"text": "<think>", "n_new": 1, "finish_reason": None}
        if self.mode == "crash":
            raise RuntimeError("engine core died")
        yield {"text": "ok</think>", "n_new": 2, "finish_reason": "stop"}

    async def health(self) -> None:
        if self.mode == "crash":
            raise RuntimeError("engine core died")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rlsys.model.build import build_model

    return build_model(tmp_path_factory.mktemp("gw") / "m", corpus_size=200, progress=False)


def _ask(gw: Gateway, method: str, path: str, obj=None, authorization: str | None = None):
    body = json.dumps(obj).encode() if obj is not None else b""

    async def read() -> bytes:
        return body

    return asyncio.run(gw.handle(method, path, read, len(body), authorization))


QUESTION = {"series": [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], "edges": [[0, 1]],
            "question": "Which?", "options": ["x", "y"], "answer": "B"}
CHAT = {"messages": [{"role": "user", "content": "hi"}], "stream": True}


def _gateway(model: Path, mode: str) -> Gateway:
    return Gateway(ServeConfig(checkpoint=str(model), limits={"timeout_s": 0.5}), Engine(mode))


def _stream(reply) -> list[str]:
    async def drain() -> list[str]:
        return [x async for x in reply.body]

    return asyncio.run(drain())


def test_a_working_engine_answers_and_is_counted(model: Path) -> None:
    gw = _gateway(model, "ok")
    reply = _ask(gw, "POST", "/v1/reason", QUESTION)
    data = json.loads(reply.body)
    assert reply.status == 200 and data["answer"] == "B" and data["correct"] is True
    chunks = _stream(_ask(gw, "POST", "/v1/chat/completions", CHAT))
    assert chunks[-1] == "data: [DONE]\n\n" and '"finish_reason": "stop"' in chunks[-2]
    text = gw.metrics.text().decode()
    assert 'strl_answers_total{kind="choice",valid="true"} 1.0' in text
    assert "strl_completion_tokens_total 10.0" in text  # 7 whole + 3 streamed


def test_a_hanging_engine_is_a_504_and_a_dead_one_a_500_and_an_unhealthy_503(
        model: Path) -> None:
    reply = _ask(_gateway(model, "hang"), "POST", "/v1/reason", QUESTION)
    assert reply.status == 504 and b"limits.timeout_s=0.5" in reply.body
    crash = _gateway(model, "crash")
    reply = _ask(crash, "POST", "/v1/reason", QUESTION)
    assert reply.status == 500 and b"engine core died" in reply.body
    reply = _ask(crash, "GET", "/healthz")
    assert reply.status == 503 and json.loads(reply.body)["status"] == "unavailable"
    chunks = _stream(_ask(crash, "POST", "/v1/chat/completions", CHAT))
    assert '"content": "<think>"' in chunks[1] and '"code": 500' in chunks[-1]
    assert "[DONE]" not in chunks[-1]  # a broken stream does not claim to be complete
    assert 'route="/v1/reason",status="500"' in crash.metrics.text().decode()


def test_a_request_the_engine_refuses_is_the_clients_400(model: Path) -> None:
    reply = _ask(_gateway(model, "refuse"), "POST", "/v1/reason", QUESTION)
    assert reply.status == 400 and b"the engine refused it (invalid JSON schema)" in reply.body


def test_the_body_limit_is_checked_before_the_body_is_read(model: Path) -> None:
    gw = _gateway(model, "ok")

    async def never() -> bytes:
        raise AssertionError("the body was read")

    reply = asyncio.run(gw.handle("POST", "/v1/reason", never, 1 << 30))
    assert reply.status == 413 and b"more than the limit" in reply.body


class Recorder(Engine):
    """A working engine that keeps what it was asked."""

    def __init__(self) -> None:
        super().__init__("ok")
        self.asked: list[tuple[list[int], Sampling, list | None]] = []

    async def generate(self, ids, sampling, series=None):
        self.asked.append((ids, sampling, series))
        return await super().generate(ids, sampling, series)


SERIES_CHAT = {"messages": [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": [
        {"type": "text", "text": "Node 0 time series with length of 20: "},
        {"type": "timeseries", "timeseries": [float(i) for i in range(20)]},
        {"type": "text", "text": "; Node 1 time series with length of 3: "},
        {"type": "timeseries", "timeseries": [7.25, 7.5, 9.0]},
        {"type": "text", "text": ". Which node rises faster?"}]}]}


def test_chat_timeseries_parts_are_written_inline_for_an_inline_checkpoint(
        model: Path) -> None:
    rec = Recorder()
    gw = Gateway(ServeConfig(checkpoint=str(model)), rec)
    reply = _ask(gw, "POST", "/v1/chat/completions", SERIES_CHAT)
    assert reply.status == 200, reply.body
    ids, sampling, series = rec.asked[0]
    text = gw.tok.decode(ids)
    assert "length of 20: [0.0, 1.0, 2.0" in text and "length of 3: [7.25, 7.5, 9.0]." in text
    assert series is None and sampling.n == 1 and sampling.stop_token_ids == gw.stop_ids
    bad = _ask(gw, "POST", "/v1/chat/completions", {**SERIES_CHAT, "prompt_embeds": "AAAA"})
    assert bad.status == 400 and b"raw embeddings are not accepted" in bad.body


def test_chat_timeseries_parts_go_to_the_encoder_of_an_encoder_checkpoint(
        model: Path, tmp_path: Path) -> None:
    import shutil

    from rlsys.model.card import PromptCard, write_card
    from rlsys.model.series import initial_encoder, placeholder_token, save_encoder

    enc_model = tmp_path / "enc"
    shutil.copytree(model, enc_model)
    write_card(PromptCard(series="encoder", patch=8), enc_model)
    from transformers import AutoConfig

    hidden = AutoConfig.from_pretrained(enc_model).hidden_size
    save_encoder(initial_encoder(enc_model, hidden, seed=0, patch=8), enc_model)
    rec = Recorder()
    gw = Gateway(ServeConfig(checkpoint=str(enc_model)), rec)
    reply = _ask(gw, "POST", "/v1/chat/completions", SERIES_CHAT)
    assert reply.status == 200, reply.body
    ids, _, series = rec.asked[0]
    pid = placeholder_token(gw.tok)[1]
    assert ids.count(pid) == 3 + 1  # ceil(20 / 8) + ceil(3 / 8) placeholder positions
    assert series == [[float(i) for i in range(20)], [7.25, 7.5, 9.0]]
    assert "7.25" not in gw.tok.decode(ids)  # the values travel as numbers, not text
    body = json.loads(reply.body)
    assert body["usage"]["prompt_tokens"] == len(ids)
    literal = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "x <ts><ts/>"},
        {"type": "timeseries", "timeseries": [1.0, 2.0]}]}]}
    bad = _ask(gw, "POST", "/v1/chat/completions", literal)
    assert bad.status == 400 and b"2 <ts><ts/> placeholders but 1 series" in bad.body


KEY = "s3cret-key-0123"


def test_with_a_key_every_api_route_needs_it_health_and_the_page_do_not(
        model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRL_API_KEY", KEY)  # the default source of the key
    gw = Gateway(ServeConfig(checkpoint=str(model)), Engine("ok"))
    assert gw.cfg.api_key == KEY and KEY not in repr(gw.cfg)
    for method, path, body in (("POST", "/v1/reason", QUESTION),
                               ("POST", "/v1/chat/completions", CHAT),
                               ("GET", "/v1/models", None), ("GET", "/v1/examples", None),
                               ("GET", "/metrics", None)):
        for header in (None, "Bearer wrong-key-0123", f"Basic {KEY}", KEY):
            reply = _ask(gw, method, path, body, header)
            assert reply.status == 401 and b"Authorization: Bearer" in reply.body, (path,
                                                                                    header)
        assert _ask(gw, method, path, body, f"Bearer {KEY}").status == 200, path
    assert _ask(gw, "GET", "/healthz").status == 200
    assert _ask(gw, "GET", "/view").status == 200
    assert 'strl_requests_total{route="/v1/reason",status="401"} 4.0' in gw.metrics.text().decode()


def test_without_a_key_nothing_is_asked(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRL_API_KEY", raising=False)
    gw = _gateway(model, "ok")
    assert gw.cfg.api_key is None and _ask(gw, "POST", "/v1/reason", QUESTION).status == 200


def test_a_short_key_is_refused_without_repeating_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRL_API_KEY", "hunter2")
    with pytest.raises(ValueError, match="api_key: String should have at least 8") as e:
        load_config(None, [], ServeConfig)
    assert "hunter2" not in str(e.value)


def test_past_max_in_flight_requests_get_429_at_once_and_slots_come_back(
        model: Path) -> None:
    """Two slots: two slow requests hold them (one a stream), a third is shed at once with
    Retry-After, health still answers; when they finish, a new one is admitted."""
    gw = Gateway(ServeConfig(checkpoint=str(model), limits={"max_in_flight": 2}),
                 Engine("ok"))
    gate = asyncio.Event()

    async def slow_generate(ids, sampling, series=None):
        await gate.wait()
        return {"text": "<answer>B</answer>", "n_out": 2, "finish_reason": "stop"}

    async def slow_stream(ids, sampling, series=None):
        await gate.wait()
        yield {"text": "done", "n_new": 1, "finish_reason": "stop"}

    gw.engine.generate, gw.engine.stream = slow_generate, slow_stream

    async def call(method, path, obj=None):
        body = json.dumps(obj).encode() if obj is not None else b""

        async def read() -> bytes:
            return body

        return await gw.handle(method, path, read, len(body))

    async def scenario():
        held = asyncio.create_task(call("POST", "/v1/reason", QUESTION))
        stream = await call("POST", "/v1/chat/completions", CHAT)  # returns, slot held
        await asyncio.sleep(0.05)
        assert gw.admitted == 2
        t0 = asyncio.get_running_loop().time()
        shed = await call("POST", "/v1/reason", QUESTION)
        assert asyncio.get_running_loop().time() - t0 < 0.5
        health = await call("GET", "/healthz")
        gate.set()
        chunks = [c async for c in stream.body]
        done = await held
        after = await call("POST", "/v1/reason", QUESTION)
        return shed, health, chunks, done, after

    shed, health, chunks, done, after = asyncio.run(scenario())
    assert shed.status == 429 and shed.headers == {"Retry-After": "1"}
    assert b"limits.max_in_flight=2" in shed.body
    assert health.status == 200 and done.status == 200 and chunks[-1] == "data: [DONE]\n\n"
    assert after.status == 200 and gw.admitted == 0
    text = gw.metrics.text().decode()
    assert "strl_requests_shed_total 1.0" in text
    assert 'strl_requests_total{route="/v1/reason",status="429"} 1.0' in text


def test_the_default_admission_cap_is_what_the_replicas_take(model: Path) -> None:
    cfg = ServeConfig(checkpoint=str(model), replicas={"max_replicas": 3,
                                                       "max_ongoing_requests": 16,
                                                       "frontend_replicas": 2})
    assert Gateway(cfg, Engine("ok")).max_in_flight == 24  # 3 x 16 shared by 2 front ends
    gw = _gateway(model, "hang")
    assert _ask(gw, "POST", "/v1/reason", QUESTION).status == 504
    assert "strl_requests_timed_out_total 1.0" in gw.metrics.text().decode()
    assert gw.admitted == 0
