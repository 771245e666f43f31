"""`strl serve` on the checkpoint of a real tiny training run: a real local Ray cluster,
Ray Serve's HTTP proxy, the front end and a vLLM replica; real HTTP requests. Valid ones
(OpenAI's own client, our questions, the ST-Test fixture rows), every kind of bad one
(each a 4xx naming the field, after which the replica still answers), the metrics,
`strl eval --endpoint` against it, and the browser view in headless Chromium. The server
runs with an API key (STRL_API_KEY), as one reachable from other machines must: every
client here sends it, and requests without it are refused."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from envs import evalsuite
from rlsys.weightsync import free_port
from tests.integration.runner import ROOT, start, wait_for

pytestmark = pytest.mark.slow
FIXTURES = ROOT / "tests" / "unit" / "rewards" / "data" / "streasoner_st_test_cases.jsonl"
BODY_LIMIT = 262_144
KEY = "integration-test-key-7f3a"


@dataclass
class Server:
    host: str
    port: int
    checkpoint: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(self, method: str, path: str, body: bytes | None = None,
                timeout: float = 300) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        conn.request(method, path, body=body, headers={"Content-Type": "application/json",
                                                       "Authorization": f"Bearer {KEY}"})
        resp = conn.getresponse()
        return resp.status, resp.read()

    def post(self, path: str, obj) -> tuple[int, dict]:
        status, data = self.request("POST", path, json.dumps(obj).encode())
        return status, json.loads(data)


@pytest.fixture(scope="module")
def server(trained_run, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    port = free_port()
    before = os.environ.get("STRL_API_KEY")
    os.environ["STRL_API_KEY"] = KEY  # the server's, and `strl eval --endpoint`'s below
    try:
        proc = start([sys.executable, "-m", "rlsys.cli", "serve", "--checkpoint",
                      str(trained_run.checkpoint), f"port={port}", "num_cpus=3",
                      f"limits.max_body_bytes={BODY_LIMIT}"], log)
        wait_for(lambda: "serving strl at" in log.read_text(), proc, log, timeout=600)
        yield Server("127.0.0.1", port, trained_run.checkpoint, log)
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the application is taken down, exit 0
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        if before is None:
            os.environ.pop("STRL_API_KEY", None)
        else:
            os.environ["STRL_API_KEY"] = before


def test_without_the_key_the_api_is_closed_and_health_open(server: Server) -> None:
    for header in ({}, {"Authorization": "Bearer not-the-key"}, {"Authorization": KEY}):
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/reason"),
                             ("POST", "/v1/chat/completions"), ("GET", "/metrics")):
            conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
            conn.request(method, path, body=b"{}" if method == "POST" else None,
                         headers=header)
            resp = conn.getresponse()
            assert resp.status == 401, (path, header)
            assert b"Authorization: Bearer" in resp.read()
    for path in ("/healthz", "/view"):
        conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
        conn.request("GET", path)
        assert conn.getresponse().status == 200, path


def _rows() -> list[dict]:
    return [json.loads(x) for x in FIXTURES.read_text().splitlines() if x.strip()]


def _expected_prompt(server: Server, req: dict) -> str:
    from rlsys.model.card import read_card
    from rlsys.reason import parse_question

    return parse_question(req).prompt(read_card(server.checkpoint).precision)


def test_health_models_and_metrics(server: Server) -> None:
    status, body = server.request("GET", "/healthz")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and health["prompt_card"] is True
    assert health["precision"] == 0 and health["context"] == 8192  # from the card / model
    status, body = server.request("GET", "/v1/models")
    assert status == 200 and json.loads(body)["data"][0]["id"] == "strl"
    status, body = server.request("GET", "/metrics")
    assert status == 200 and b"strl_requests_total" in body


def test_openai_clients_work_unchanged(server: Server) -> None:
    import openai  # installed with vllm (a dependency of the cpu and gpu extras)

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY)
    msgs = [{"role": "user", "content": "Which node leads?"}]
    out = client.chat.completions.create(model="strl", messages=msgs, max_tokens=8,
                                         temperature=1.0)
    assert out.choices[0].message.role == "assistant"
    assert out.usage.completion_tokens >= 1 and out.usage.prompt_tokens > 0
    assert out.choices[0].finish_reason in ("stop", "length")
    # streamed and whole, greedy: the same text (sampled, the model may stop at once)
    whole = client.chat.completions.create(model="strl", messages=msgs, max_tokens=8,
                                           temperature=0.0)
    chunks = list(client.chat.completions.create(model="strl", messages=msgs, max_tokens=8,
                                                 temperature=0.0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == \
        whole.choices[0].message.content
    with pytest.raises(openai.NotFoundError, match="serves 'strl'"):
        client.chat.completions.create(model="gpt-4", messages=msgs, max_tokens=4)


def _check_answer(server: Server, req: dict, reply: dict) -> None:
    """The reply is the training prompt, and the model's completion read as training
    scored it (recomputed here from the completion)."""
    from rlsys.reason import parse_question, read

    q = parse_question(req)
    assert reply["prompt"] == _expected_prompt(server, req)
    assert reply["kind"] == q.kind and reply["gold"] == q.gold
    mine = read(reply["completion"], q)
    assert {k: reply[k] for k in ("reasoning", "answer", "valid", "invalid_reason",
                                  "correct", "mae")} == mine.to_json()
    assert reply["valid"] == (reply["invalid_reason"] is None)
    if q.kind == "choice":
        assert reply["correct"] == (reply["valid"] and reply["answer"] == q.gold)
    assert 0 < reply["usage"]["completion_tokens"] <= 16  # the card's max_tokens


def test_questions_in_both_shapes_are_answered(server: Server) -> None:
    status, listing = server.request("GET", "/v1/examples")
    examples = json.loads(listing)["data"]
    assert status == 200 and len(examples) == len(evalsuite.cells())
    assert {e["split"] for e in examples} == {"id", "ood"}
    for e in examples[::7]:
        status, ex = server.request("GET", f"/v1/examples/{e['id']}")
        req = json.loads(ex)["request"]
        status, reply = server.post("/v1/reason", req)
        assert status == 200, reply
        _check_answer(server, req, reply)
        assert reply["graph_in_prompt"] and "Graph Structure" in reply["prompt"]
    rows = _rows()  # the public ST-Test rows, as they are
    for row in rows[:2] + rows[3:]:
        status, reply = server.post("/v1/reason", row)
        assert status == 200, reply
        _check_answer(server, row, reply)
        assert "<ts><ts/>" not in reply["prompt"]
    # 10 nodes x 240 steps: over the tiny model's context with its tokenizer; refused
    status, reply = server.post("/v1/reason", rows[2])
    assert status == 400 and "exceed the model's context of 8192" in reply["error"]["message"]
    forecast = _rows()[3]
    status, reply = server.post("/v1/reason", forecast)
    assert reply["kind"] == "sequence" and reply["gold"] == "[19.86, 19.97, 20.05]"
    free = {**json.loads(server.request("GET", f"/v1/examples/{examples[0]['id']}")[1])[
        "request"], "with_graph": False}
    status, reply = server.post("/v1/reason", free)
    assert status == 200 and not reply["graph_in_prompt"]
    assert "Graph Structure" not in reply["prompt"]


def test_the_prompt_is_the_one_training_wrote(server: Server) -> None:
    """Questions the simulator wrote for training (the tiny preset's own settings) come
    back with exactly the prompt text the policy was trained on."""
    from envs.stream import SampleStream
    from rlsys.config import env_config, load_config
    from rlsys.reason import from_sample

    cfg = load_config(ROOT / "configs" / "tiny_cpu.yaml")
    for s in SampleStream(5, cfg.data.tasks, env_config(cfg)).take(5):
        status, reply = server.post("/v1/reason", from_sample(s).to_json())
        assert status == 200, reply
        assert reply["prompt"] == s.prompt(), s.id
        status, reply = server.post("/v1/reason", {**s.to_streasoner(), "with_graph": False})
        assert status == 200 and reply["prompt"] == s.prompt_no_graph, s.id


def _bad_cases(server: Server) -> list[tuple[str, str, bytes, int, str]]:
    ok = {"series": [[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [5.0, 6.0, 7.0]],
          "edges": [[0, 1, 2], [1, 2]], "question": "Which node leads?",
          "options": ["Node 0", "Node 1", "Node 2"]}
    big = {"series": [[float(t % 97) + 0.25 for t in range(2000)] for _ in range(12)],
           "edges": [[0, 1]], "question": "Next?", "horizon": 3}

    def j(obj) -> bytes:
        return json.dumps(obj).encode()

    raw_nan = (b'{"series": [[1.0, NaN, 3.0], [1, 2, 3]], "question": "q?", '
               b'"options": ["a", "b"]}')
    raw_inf = (b'{"series": [[1.0, 2.0, Infinity]], "question": "q?", '
               b'"options": ["a", "b"]}')
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    return [
        ("POST", "/v1/reason", b"{not json", 400, "body: not JSON"),
        ("POST", "/v1/reason", b"[1, 2]", 400, "body: must be a JSON object"),
        ("POST", "/v1/reason", b"\xff\xfe\x00", 400, "body: not JSON"),
        ("POST", "/v1/reason", b"x" * (BODY_LIMIT + 1), 413, "more than the limit"),
        ("POST", "/v1/reason", j({**ok, "series": [[1.0, 2.0], [1.0, 2.0, 3.0], [1.0]]}), 400,
         "every node needs the same number of steps; node 0 has 2, node 1 has 3"),
        ("POST", "/v1/reason", j({**ok, "edges": [[0, 5]]}), 400,
         "edges[0].to: node 5 is not one of the 3 nodes"),
        ("POST", "/v1/reason", raw_nan, 400, "series[0][1]: not a finite number"),
        ("POST", "/v1/reason", raw_inf, 400, "series[0][2]: not a finite number"),
        ("POST", "/v1/reason", j(big), 400, "exceed the model's context of 8192 tokens"),
        ("POST", "/v1/reason", j({**big, "series": big["series"][:2], "horizon": 0}), 400,
         "horizon: an integer number of steps in [1, 256]"),
        ("POST", "/v1/reason", j({**big, "series": big["series"][:2], "horizon": 10_000}),
         400, "horizon: an integer number of steps in [1, 256]"),
        ("POST", "/v1/reason", j({**ok, "max_tokens": 100_000}), 400, "max_tokens"),
        ("POST", "/v1/reason", j({**ok, "temperature": -1}), 400, "temperature"),
        ("POST", "/v1/reason", j({**ok, "seed": 3}), 400, "seed: per-request seeds"),
        ("POST", "/v1/reason", j({**ok, "sereis": []}), 400, "unknown field 'sereis'"),
        ("POST", "/v1/reason", j({**ok, "model": "other"}), 404, "model: this server"),
        ("POST", "/v1/reason", j({**ok, "answer": "Z"}), 400, "answer: one of the option"),
        ("POST", "/v1/reason", j({"input": "hello", "timeseries": [[1.0]]}), 400, "input"),
        ("POST", "/v1/chat/completions", j({**chat, "n": 4}), 400, "n: only 1"),
        ("POST", "/v1/chat/completions", j({"messages": "hi"}), 400, "messages"),
        ("POST", "/v1/chat/completions", j({**chat, "max_tokens": 10_000}), 400, "max_tokens"),
        ("GET", "/v1/reason", None, 405, "use POST"),
        ("POST", "/healthz", b"{}", 405, "use GET"),
        ("GET", "/v1/nothing", None, 404, "no route GET /v1/nothing"),
        ("GET", "/v1/examples/nope", None, 404, "no example 'nope'"),
    ]


def test_bad_requests_get_a_4xx_naming_the_field_and_the_replica_keeps_serving(
        server: Server) -> None:
    for method, path, body, status, message in _bad_cases(server):
        got, data = server.request(method, path, body)
        reply = json.loads(data)
        assert got == status, (path, message, reply)
        assert message in reply["error"]["message"], (message, reply)
    # text that looks like code is a question like any other: nothing runs it
    sneaky = {"series": [[1.0, 2.0, 3.0], [2.0, 3.0, 4.0]], "edges": [[0, 1]],
              "question": "__import__('os').system('touch /tmp/strl-pwned'); DROP TABLE x;"}
    status, reply = server.post("/v1/reason", sneaky)
    assert status == 200 and reply["kind"] == "text" and "DROP TABLE" in reply["prompt"]
    assert not Path("/tmp/strl-pwned").exists()
    status, body = server.request("GET", "/healthz")
    assert status == 200
    status, reply = server.post("/v1/reason", _rows()[0])
    assert status == 200 and reply["gold"] == "D"
    metrics = server.request("GET", "/metrics")[1].decode()
    assert 'strl_requests_total{route="/v1/reason",status="400"}' in metrics
    assert 'strl_requests_total{route="/v1/reason",status="413"} 1.0' in metrics
    assert 'strl_answers_total{kind="choice"' in metrics
    assert "strl_completion_tokens_total" in metrics


def test_strl_eval_scores_the_endpoint(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "rlsys.cli", "eval", "--endpoint",
                           server.url, "--per-cell", "1", "--max-tokens", "16",
                           "--temperature", "1.0", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "eval.json").read_text())
    assert result["tasks"]["all"]["n"] == len(evalsuite.cells())
    assert result["tasks"]["all"]["request_failed"] == 0
    assert result["model"].endswith("(strl)") and "| path_description |" in proc.stdout
    records = [json.loads(x) for x in (out / "completions.jsonl").read_text().splitlines()]
    reasons = [r["reading"]["invalid_reason"] for r in records]
    assert "over_context" not in reasons and "request_failed" not in reasons, reasons
    # the free-text task scored by an AI judge: here the same server, with the rubric's
    # JSON schema (structured outputs), so every judge reply parses
    judged = tmp_path / "judged"
    proc = subprocess.run([sys.executable, "-m", "rlsys.cli", "eval", "--endpoint",
                           server.url, "--tasks", "path_description", "--per-cell", "1",
                           "--max-tokens", "16", "--temperature", "1.0", "--judge",
                           f"{server.url}/v1", "--judge-model", "strl", "--out", str(judged)],
                          capture_output=True, text=True, timeout=900, cwd=ROOT,
                          env=dict(os.environ, OPENAI_API_KEY=KEY))  # the judge's key
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((judged / "eval.json").read_text())
    task = result["tasks"]["path_description"]
    assert task["n"] == sum(c.task == "path_description" for c in evalsuite.cells())
    assert 0.0 <= task["score"] <= 1.0
    assert result["judge"]["failures"] == 0, result["judge"]
    from rewards.judge import candidate_text

    texts = [json.loads(x)[key]["completion"]
             for x in (judged / "completions.jsonl").read_text().splitlines()
             for key in ("reading", "reading_no_graph")]
    assert result["judge"]["calls"] == sum(1 for t in texts if candidate_text(t))


def _chromium() -> str | None:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None and os.environ.get("STRL_REQUIRE_BROWSER"):
        pytest.fail("chromium is required here (STRL_REQUIRE_BROWSER): apt-get install chromium")
    return path


def test_the_browser_view_shows_a_question_and_the_models_answer(
        server: Server, trained_run, tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:  # CI sets STRL_REQUIRE_BROWSER: there this fails instead
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    from playwright.sync_api import sync_playwright  # the dev extra
    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=flags)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: d.accept(KEY))  # the view asks for the API key once
        page.goto(f"{server.url}/view")
        page.wait_for_selector("#series path.series-line")
        assert page.locator("#series path.series-line").count() == 3  # etiological, 3 nodes
        assert page.locator("#graph circle.node").count() == 3
        assert page.locator("#graph line.edge").count() >= 2
        assert page.locator("#options li").count() == 4
        with page.expect_response(lambda r: r.url.endswith("/v1/reason"),
                                  timeout=120_000) as info:
            page.click("#ask")
        reply = info.value.json()
        page.wait_for_function("!document.querySelector('#verdict').textContent"
                               ".startsWith('not asked')", timeout=120_000)
        verdict = page.locator("#verdict").text_content()
        answer = page.locator("#answer").text_content()
        if not reply["valid"]:  # the page shows what the server answered: the raw
            # <answer> text when there is one (say "AB"), else "(none)"
            shown = "(none)" if reply["answer"] is None else str(reply["answer"])
            assert verdict == f"invalid ({reply['invalid_reason']})" and answer == shown
        else:
            assert verdict == ("correct" if reply["correct"] else "wrong")
            assert re.fullmatch("[ABCD]", answer) and answer == reply["answer"]
        # the raw completion, as sent (it may be empty: the model can stop at once)
        assert page.locator("#completion").text_content() == reply["completion"]
        page.screenshot(path=str(tmp_path / "served.png"), full_page=True)

        page.fill("#paste", json.dumps(_rows()[1]))  # an ST-Test row: 10 nodes, 9 edges
        page.click("#ask")
        page.wait_for_function("document.querySelector('#question').textContent"
                               ".includes('Node 9 correspond')", timeout=120_000)
        assert page.locator("#series path.series-line").count() == 10
        assert page.locator("#graph line.edge").count() == 9
        assert page.locator("#gold").text_content() == "C"

        page.fill("#paste", '{"series": [[1, 2], [1]], "question": "q", "options": ["a", "b"]}')
        page.click("#ask")
        page.wait_for_function("document.querySelector('#status').className === 'error'")
        assert "node 0 has 2, node 1 has 1" in page.locator("#status").text_content()

        # the page `strl eval` wrote at the end of the training run: no server needed
        page.goto((trained_run.run / "eval" / "samples.html").as_uri())
        page.wait_for_selector("#series path.series-line")
        cells = len(evalsuite.cells())
        assert page.locator("#record option").count() == cells
        assert page.locator("#status").text_content() == f"1 of {cells}"
        page.click("#next")
        assert page.locator("#status").text_content() == f"2 of {cells}"
        assert page.locator("#verdict").text_content() != "not asked yet"
        page.screenshot(path=str(tmp_path / "eval.png"), full_page=True)
        browser.close()
    assert errors == []
