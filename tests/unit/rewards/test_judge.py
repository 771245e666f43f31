"""The AI-judge client against a real local HTTP server (no mocks)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import pickle
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rewards import (
    JudgeClient,
    JudgeConfig,
    JudgeReward,
    RewardSet,
    RewardSpec,
    Target,
    parse_judge_reply,
)

GOOD = '{"path": 4, "timing": 3, "logic": 5}'  # mean 4 -> 0.8


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is part of the tests


class JudgeServer:
    """An OpenAI-compatible stub: ``mode`` decides each reply; requests are recorded."""

    def __init__(self) -> None:
        self.mode = "good"
        self.delay_s = 0.0
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with server._lock:
                    server.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
                    n = len(server.requests)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, content = server.reply(n)
                    if server.delay_s:
                        server.stop.wait(server.delay_s)
                finally:
                    # Stop counting before replying: once the reply is out, the client may
                    # rightly free its slot and send the next request before this thread
                    # would get back to decrement.
                    with server._lock:
                        server.in_flight -= 1
                self._send(status, content)

            def _send(self, status: int, content: str | None) -> None:
                if content is None:
                    payload = b"this is not json"
                else:
                    msg = {"role": "assistant", "content": content}
                    payload = json.dumps({"choices": [{"index": 0, "message": msg}]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def reply(self, n: int) -> tuple[int, str | None]:
        """(status, judge text) for the n-th request (1-based)."""
        mode = self.mode
        if mode == "lines":
            return 200, "Scores:\npath: 4\ntiming: 3\nlogic: 5"
        if mode == "garbage":
            return 200, "I would rather not grade this."
        if mode == "out_of_range":
            return 200, '{"path": 7, "timing": 3, "logic": 5}'
        if mode == "flaky":
            return (500, GOOD) if n == 1 else (200, GOOD)
        if mode == "rate_limited":
            return (429, GOOD) if n == 1 else (200, GOOD)
        if mode == "always_500":
            return 500, GOOD
        if mode == "http_400":
            return 400, GOOD
        if mode == "not_json":
            return 200, None
        return 200, GOOD

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests]

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[JudgeServer]:
    s = JudgeServer()
    yield s
    s.close()


def client(base_url: str, **kw: Any) -> JudgeClient:
    opts: dict[str, Any] = {"timeout_s": 0.5, "max_retries": 2, "backoff_s": 0.01} | kw
    return JudgeClient(JudgeConfig(base_url=base_url, model="judge-m", **opts))


def test_good_json_reply_and_request_shape(
    server: JudgeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRL_TEST_JUDGE_KEY", "sekret")
    c = client(server.base_url, api_key_env="STRL_TEST_JUDGE_KEY", max_tokens=77)
    (r,) = c.score_batch(["Which path?"], ["Node 0 -> Node 2 after 3 steps"], ["Node 0 -> Node 2"])
    assert (r.score, r.aspects, r.error, r.attempts) == (
        0.8,
        {"path": 4, "timing": 3, "logic": 5},
        None,
        1,
    )
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer sekret"
    body = json.loads(req["body"])
    assert body["model"] == "judge-m" and body["max_tokens"] == 77 and body["temperature"] == 0.0
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user"]
    system, user = (m["content"] for m in body["messages"])
    assert "0 to 5" in system and '"path": <0-5>' in system
    assert (
        "Node 0 -> Node 2 after 3 steps" in user and "Reference answer:\nNode 0 -> Node 2" in user
    )
    assert "Which path?" in user


def test_line_reply_is_parsed(server: JudgeServer) -> None:
    server.mode = "lines"
    (r,) = client(server.base_url).score_batch(["q"], ["a"], ["ref"])
    assert r.aspects == {"path": 4, "timing": 3, "logic": 5} and r.score == 0.8


@pytest.mark.parametrize(
    ("mode", "error"),
    [("garbage", "unparseable"), ("out_of_range", "out_of_range"), ("not_json", "bad_response")],
)
def test_garbage_replies_are_retried_then_fail(server: JudgeServer, mode: str, error: str) -> None:
    server.mode = mode
    c = client(server.base_url, max_retries=1)
    (r,) = c.score_batch(["q"], ["a"], ["ref"])
    assert (r.score, r.aspects, r.error, r.attempts) == (0.0, None, error, 2)
    assert len(server.requests) == 2


@pytest.mark.parametrize("mode", ["flaky", "rate_limited"])
def test_transient_error_then_success(server: JudgeServer, mode: str) -> None:
    server.mode = mode
    c = client(server.base_url)
    (r,) = c.score_batch(["q"], ["a"], ["ref"])
    assert (r.score, r.error, r.attempts) == (0.8, None, 2)
    assert c.stats()["retries"] == 1 and c.stats()["failures"] == 0


def test_always_500_fails_and_is_counted(server: JudgeServer) -> None:
    server.mode = "always_500"
    c = client(server.base_url, max_retries=2)
    results = c.score_batch(["q", "q"], ["a", "b"], ["ref", "ref"])
    assert [(r.score, r.error, r.attempts) for r in results] == [(0.0, "http_500", 3)] * 2
    stats = c.stats()
    assert (stats["items"], stats["requests"], stats["retries"], stats["failures"]) == (2, 6, 4, 2)
    assert stats["by_error"] == {"http_500": 2} and stats["mean_latency_s"] > 0


def test_client_error_is_not_retried(server: JudgeServer) -> None:
    server.mode = "http_400"
    (r,) = client(server.base_url).score_batch(["q"], ["a"], ["ref"])
    assert (r.error, r.attempts) == ("http_400", 1) and len(server.requests) == 1


def test_slow_server_times_out_within_bounds(server: JudgeServer) -> None:
    server.delay_s = 5.0
    c = client(server.base_url, timeout_s=0.2, max_retries=1, backoff_s=0.01)
    t0 = time.perf_counter()
    (r,) = c.score_batch(["q"], ["a"], ["ref"])
    elapsed = time.perf_counter() - t0
    assert (r.score, r.error, r.attempts) == (0.0, "timeout", 2)
    assert 0.4 <= elapsed < 1.5  # two attempts of ~0.2 s plus back-off, nowhere near 5 s
    assert c.stats()["by_error"] == {"timeout": 1}


def test_server_down_is_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed on exit: nothing listens there
    c = client(f"http://127.0.0.1:{port}/v1", max_retries=1)
    (r,) = c.score_batch(["q"], ["a"], ["ref"])
    assert (r.score, r.error, r.attempts) == (0.0, "connection_refused", 2)
    assert c.stats()["failures"] == 1


def test_concurrency_limit_is_respected(server: JudgeServer) -> None:
    server.delay_s = 0.2  # long enough that requests overlap even on a loaded machine
    c = client(server.base_url, max_concurrency=3)
    n = 12
    results = c.score_batch(["q"] * n, [f"answer {i}" for i in range(n)], ["ref"] * n)
    assert all(r.score == 0.8 for r in results)
    assert 2 <= server.max_in_flight <= 3
    users = [b["messages"][1]["content"] for b in server.bodies()]
    assert len(users) == n  # each answer sent exactly once
    assert all(sum(f"answer {i}\n" in u for u in users) == 1 for i in range(n))


def test_concurrency_limit_holds_across_callers(server: JudgeServer) -> None:
    server.delay_s = 0.05
    c = client(server.base_url, max_concurrency=2)
    threads = [
        threading.Thread(target=c.score_batch, args=(["q"] * 4, ["a"] * 4, ["r"] * 4))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.max_in_flight <= 2 and len(server.requests) == 12


def test_parse_judge_reply_edge_cases() -> None:
    assert parse_judge_reply("<think>path: 1</think>path: 5\ntiming: 5\nlogic: 4") == {
        "path": 5,
        "timing": 5,
        "logic": 4,
    }
    assert parse_judge_reply('{"Path": 4.0, "timing": "3", "logic": 0}') == {
        "path": 4,
        "timing": 3,
        "logic": 0,
    }
    assert parse_judge_reply('{"path": 2.5, "timing": 3, "logic": 0}') == "unparseable"
    assert parse_judge_reply('{"path": true, "timing": 3, "logic": 0}') == "unparseable"
    assert parse_judge_reply("path: 4\ntiming: 3") == "unparseable"
    assert parse_judge_reply("path: -1\ntiming: 3\nlogic: 2") == "out_of_range"
    assert parse_judge_reply('{"route": 5}', aspects=("route",)) == {"route": 5}


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="base_url"):
        JudgeConfig(base_url="127.0.0.1:8000", model="m")
    with pytest.raises(ValueError, match="max_concurrency"):
        JudgeConfig(base_url="http://x/v1", model="m", max_concurrency=0)
    assert JudgeConfig(base_url="http://x/v1", model="m", aspects=["a"]).aspects == ("a",)  # type: ignore[arg-type]
    assert "sekret" not in repr(JudgeConfig(base_url="http://x/v1", model="m", api_key="sekret"))


def test_reward_params_mirror_config_fields() -> None:
    params = list(inspect.signature(JudgeReward).parameters)
    assert params == [f.name for f in dataclasses.fields(JudgeConfig)]


def test_judge_reward_through_a_reward_set(server: JudgeServer) -> None:
    params = {
        "base_url": server.base_url,
        "model": "judge-m",
        "timeout_s": 0.5,
        "backoff_s": 0.01,
        "aspects": ["path", "timing", "logic"],
    }
    rs = RewardSet([RewardSpec("judge", params=params), RewardSpec("format", weight=0.5)])
    t = Target("path_description", "text", "Node 0 -> Node 2", question="How did it spread?")
    choice = Target("entity", "choice", "A", n_options=4)
    completions = [
        "<think>secret reasoning</think><answer>From Node 0 to Node 2</answer>",
        "<think>more secret reasoning</think>Node 0 then Node 2",  # no tag: minus thinking
        "<think>x</think><answer> </answer>",  # empty: 0 without asking the judge
        "<think>x</think><answer>A</answer>",  # choice: judge does not apply
    ]
    out = rs.score(completions, [t, t, t, choice])
    assert out.components["judge"] == [0.8, 0.8, 0.0, None]
    assert out.total == [pytest.approx(1.3), 0.8, 0.5, 0.5]
    users = sorted(b["messages"][1]["content"] for b in server.bodies())
    assert len(users) == 2
    assert any("Candidate answer:\nFrom Node 0 to Node 2\n" in u for u in users)
    assert any("Candidate answer:\nNode 0 then Node 2\n" in u for u in users)
    assert not any("secret" in u for u in users)
    assert all("How did it spread?" in u and "Node 0 -> Node 2" in u for u in users)


def test_judge_reward_pickles_after_use(server: JudgeServer) -> None:
    r = JudgeReward(base_url=server.base_url, model="judge-m", timeout_s=0.5)
    t = Target("path_description", "text", "ref")
    assert r(["<answer>x</answer>"], [t]) == [0.8]
    back = pickle.loads(pickle.dumps(r))
    assert back.cfg == r.cfg
    assert back(["<answer>y</answer>"], [t]) == [0.8]
    assert back.stats()["items"] == 1 and r.stats()["items"] == 1
