"""Serve's own tools: `strl serve --write-config` then `serve deploy` onto a head node
started with `ray start`, with autoscaling bounds; the application answers; `serve
shutdown` takes it down."""

from __future__ import annotations

import http.client
import json
import sys
import time
from pathlib import Path

import pytest

from rlsys.weightsync import free_port
from tests.integration.runner import ROOT, ray_cli

pytestmark = pytest.mark.slow
SERVE = str(Path(sys.executable).with_name("serve"))
STRL = str(Path(sys.executable).with_name("strl"))
FIXTURES = ROOT / "tests" / "unit" / "rewards" / "data" / "streasoner_st_test_cases.jsonl"


def _get(port: int, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST" if body else "GET", path, body=body)
    resp = conn.getresponse()
    return resp.status, resp.read()


def test_serve_deploy_of_the_written_config(head_node: str, trained_run,
                                            tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "serve.yaml"
    wrote = ray_cli("serve", "--checkpoint", str(trained_run.checkpoint), "--write-config",
                    str(config), f"port={port}", "replicas.max_replicas=2", tool=STRL)
    assert wrote.returncode == 0, wrote.stderr
    deployed = ray_cli("deploy", str(config), "--address", head_node, tool=SERVE, timeout=300)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    try:
        t0, status = time.monotonic(), 0
        while time.monotonic() - t0 < 600:
            try:
                status, _ = _get(port, "/healthz")
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(2)
        assert status == 200, ray_cli("status", "--address", head_node, tool=SERVE).stdout
        row = FIXTURES.read_text().splitlines()[0]
        status, body = _get(port, "/v1/reason", row.encode())
        reply = json.loads(body)
        assert status == 200 and reply["gold"] == "D" and reply["kind"] == "choice"
        shown = ray_cli("status", "--address", head_node, tool=SERVE).stdout
        assert "strl" in shown and "RUNNING" in shown, shown
        assert "model" in shown and "frontend" in shown, shown
    finally:
        down = ray_cli("shutdown", "-y", "--address", head_node, tool=SERVE, timeout=180)
        assert down.returncode == 0, down.stdout + down.stderr
