"""The AI judge in the loop. The judge actor serves the tiny model over OpenAI-compatible
HTTP; with the rubric's JSON schema (structured outputs) even a random 3.5M model answers
in a shape the judge client parses, and bad requests get a 400 naming the field. A run on
the `path_description` task trains with the judge actor; a run whose external judge is
unreachable logs the failed calls, scores them 0, and stops with a message and a
checkpoint once failures pass `judge_server.max_failure_fraction`."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from pathlib import Path

import pytest

from rlsys.config import load_config
from rlsys.weightsync import free_port
from tests.integration.runner import finish, grpo_rows, start, train_cmd

pytestmark = pytest.mark.slow
JUDGE_TASKS = ["data.tasks={path_description: 1, root_cause: 1}",
               "reward.rewards=[{name: accuracy, weight: 1.0}, {name: judge, weight: 1.0}]"]


def _post(base_url: str, body: bytes) -> tuple[int, dict]:
    u = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    conn.request("POST", u.path + "/chat/completions", body=body,
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def test_judge_actor_serves_parseable_rubric_scores_and_rejects_bad_requests(
        tiny_model: Path) -> None:
    import ray

    from actors.judge_server import JudgeServerActor, JudgeServerSettings
    from rewards.judge import JudgeClient, JudgeConfig

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        settings = JudgeServerSettings.from_config(load_config(), str(tiny_model), "cpu",
                                                   "float32", max_model_len=1024)
        judge = JudgeServerActor.options(num_cpus=1).remote(settings)
        url = ray.get(judge.start.remote())["base_url"]
        client = JudgeClient(JudgeConfig(base_url=url, model="judge", structured=True,
                                         max_tokens=48, max_concurrency=4))
        results = client.score_batch(["How did it travel?"] * 4,
                                     ["Node 1 then Node 2", "no idea", "Node 2", "x"],
                                     ["Node 1 -> Node 2 after 2 steps"] * 4)
        assert [r.error for r in results] == [None] * 4, results
        assert all(0.0 <= r.score <= 1.0 and set(r.aspects) == {"path", "timing", "logic"}
                   for r in results)
        assert ray.get(judge.stats.remote())["served"] == 4  # batched, all answered
        for body, field in ((b"{not json", "not JSON"), (b'{"messages": []}', "messages"),
                            (b'{"messages": [{"role": "user", "content": "x"}], '
                             b'"max_tokens": 99999}', "max_tokens"),
                            (b'{"messages": [{"role": "user", "content": "x"}], '
                             b'"response_format": {"type": "json_schema"}}', "schema")):
            status, reply = _post(url, body)
            assert status == 400 and field in reply["error"]["message"], (body, reply)
    finally:
        ray.shutdown()


def test_training_with_the_judge_actor(tmp_path: Path, tiny_model: Path) -> None:
    log = tmp_path / "judge.log"
    proc = start(train_cmd(tiny_model, tmp_path / "runs", "judged", "trainer.steps=2",
                           "judge_server.mode=actor", "rollout.prompts_per_step=4",
                           *JUDGE_TASKS), log)
    assert finish(proc, log) == 0, log.read_text()[-3000:]
    rows = grpo_rows(tmp_path / "runs" / "judged")
    assert sorted(rows) == [0, 1]
    assert sum(r.get("judge/calls", 0) for r in rows.values()) > 0
    assert sum(r.get("judge/failures", 0) for r in rows.values()) == 0
    assert any("reward/judge" in r for r in rows.values())


def test_unreachable_judge_scores_zero_then_stops_the_run_with_a_checkpoint(
        tmp_path: Path, tiny_model: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    log = tmp_path / "dead.log"
    proc = start(train_cmd(tiny_model, tmp_path / "runs", "dead", "trainer.steps=4",
                           "judge_server.mode=endpoint", f"judge_server.base_url={dead}",
                           "judge_server.max_failure_fraction=0.5", "rollout.prompts_per_step=4",
                           *JUDGE_TASKS), log)
    assert finish(proc, log) == 1, log.read_text()[-3000:]  # a runtime failure
    text = log.read_text()
    assert "judge calls failed (scored 0)" in text
    assert f"the AI judge at {dead} failed" in text and "strl train --resume" in text
    run = tmp_path / "runs" / "dead"
    rows = grpo_rows(run)
    assert rows and sum(r.get("judge/calls", 0) for r in rows.values()) > 0
    assert all(r.get("judge/failures", 0) == r.get("judge/calls", 0) for r in rows.values())
    assert any(p.name.startswith("grpo-step-") for p in (run / "checkpoints").iterdir())
