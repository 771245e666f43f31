"""Load test: N concurrent clients for T seconds against `strl serve`'s application.

Each client sends `POST /v1/reason` requests back to back (a new one as soon as the last
one is answered): the eval suite's questions (one per cell, 3 to 10 nodes) in turn, with
a fixed max_tokens. It reports requests/s, generated tokens/s, p50/p95/p99 latency,
errors (a non-200 reply) and dropped requests (no reply at all: a reset connection or a
timeout). The target is zero errors and zero dropped requests under 64 clients.

The baseline, measured in the same run after the application is taken down: the same
engine settings as an offline in-process `vllm.LLM`, given the same prompts all at once
(vLLM's best batching, no HTTP, no Serve). `served / offline` is the share of the
engine's own throughput that reaches clients through the whole HTTP path.

Run: `python benchmarks/serve_load.py [--checkpoint DIR] [--clients 64] [--seconds 60]
[--max-tokens 32] [--max-replicas 2]` (default checkpoint: models/tiny, built if missing);
or `--url URL` to load a running server (no baseline then). With `--max-replicas` above 1
the model replicas autoscale from one, and the run prints when Serve added them.

Overload (`--shed 64,256`, `make bench-shed`): the same application loaded with each
client count in turn, 30 s each, after a warm-up load of the first count that is not
measured. A client that gets 429 waits its Retry-After and asks again. Per load: requests
answered, shed (429) and how fast a 429 came back, 5xx, and the admitted requests'
p50/p99 latency; the baseline is the first (smallest) load's p99, and the target is no
5xx, every 429 within a second, and admitted p99 within 2x of it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from envs.evalsuite import items
from rlsys.config import API_KEY_ENV, ServeConfig
from rlsys.model.build import ensure_model
from rlsys.model.card import read_card
from rlsys.model.chat import chat_ids, stop_ids
from rlsys.model.engine import check_checkpoint, local_device, model_context, prepare_vllm
from rlsys.reason import from_sample, parse_question

OFFLINE_CAP = 256  # requests in the offline baseline batch


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    tokens: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    sent: int = 0
    shed: list[float] = field(default_factory=list)  # seconds until each 429 came back
    server_errors: int = 0  # 5xx


def questions(max_tokens: int) -> list[dict]:
    """The eval suite's first question of every cell, as /v1/reason bodies."""
    out = []
    for it in items(1):
        body = from_sample(it.sample).to_json()
        body.update(max_tokens=max_tokens, temperature=1.0)
        out.append(body)
    return out


async def client(session, url: str, bodies: list[dict], start: int, deadline: float,
                 tally: Tally) -> None:
    import aiohttp

    k = start
    while time.perf_counter() < deadline:
        body = bodies[k % len(bodies)]
        k += 1
        tally.sent += 1
        t0 = time.perf_counter()
        try:
            async with session.post(url, json=body) as r:
                data = await r.json(content_type=None)
                if r.status == 429:  # shed: a polite client waits as told, then asks again
                    tally.shed.append(time.perf_counter() - t0)
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                    continue
                tally.server_errors += r.status >= 500
                if r.status != 200:
                    key = f"{r.status}: {data.get('error', {}).get('message', '')[:80]}"
                    tally.errors[key] = tally.errors.get(key, 0) + 1
                    continue
                tally.tokens += data["usage"]["completion_tokens"]
        except (TimeoutError, aiohttp.ClientError, ValueError) as e:
            tally.dropped += 1
            tally.errors[f"dropped: {type(e).__name__}"] = tally.errors.get(
                f"dropped: {type(e).__name__}", 0) + 1
            continue
        tally.latencies.append(time.perf_counter() - t0)


def replica_states(app: str) -> str:
    """The model deployment's replicas by state (Serve's own status), e.g. "RUNNING 1"."""
    from ray import serve  # heavy: Ray, only while this run's own application is up

    status = serve.status().applications.get(app)
    if status is None or "model" not in status.deployments:
        return "-"
    states = status.deployments["model"].replica_states
    return ", ".join(f"{getattr(k, 'value', k)} {n}" for k, n in sorted(
        states.items(), key=lambda kv: str(kv[0])) if n)


async def watch(app: str, t0: float, until: float, seen: list[tuple[float, str]]) -> None:
    """Record (time, replicas by state) whenever they change."""
    while time.perf_counter() < until:
        now = await asyncio.to_thread(replica_states, app)
        if not seen or seen[-1][1] != now:
            seen.append((time.perf_counter() - t0, now))
        await asyncio.sleep(2)


async def load(url: str, bodies: list[dict], clients: int, seconds: float,
               app: str | None = None) -> tuple[Tally, float, list[tuple[float, str]]]:
    import aiohttp

    tally = Tally()
    replicas: list[tuple[float, str]] = []
    timeout = aiohttp.ClientTimeout(total=600)
    conn = aiohttp.TCPConnector(limit=clients)
    key = os.environ.get(API_KEY_ENV)  # the server's key, where it has one
    headers = {"Authorization": f"Bearer {key}"} if key else None
    async with aiohttp.ClientSession(timeout=timeout, connector=conn,
                                     headers=headers) as session:
        t0 = time.perf_counter()
        deadline = t0 + seconds
        watcher = [watch(app, t0, deadline, replicas)] if app else []
        await asyncio.gather(*(client(session, url, bodies, i, deadline, tally)
                               for i in range(clients)), *watcher)
        wall = time.perf_counter() - t0  # in-flight requests at the deadline are awaited
    return tally, wall, replicas


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def start_app(checkpoint: str, num_cpus: float, max_replicas: int) -> tuple[str, object]:
    # heavy: Ray and Serve (rlsys.serve.app), torch (rlsys.weightsync); `--url` needs none
    import ray
    from ray import serve

    from rlsys.serve.app import build
    from rlsys.weightsync import free_port

    check_checkpoint(checkpoint)  # a clear line, not a replica's traceback
    port = free_port()
    cfg = ServeConfig(checkpoint=checkpoint, port=port,
                      replicas={"max_replicas": max_replicas, "upscale_delay_s": 5})
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    t0 = time.perf_counter()
    serve.run(build(cfg), name=cfg.name)
    print(f"application up in {time.perf_counter() - t0:.0f} s on port {port}", flush=True)
    return f"http://127.0.0.1:{port}", cfg


def offline(checkpoint: str, bodies: list[dict], n: int, max_tokens: int) -> tuple[float, float]:
    """req/s and tokens/s of the same prompts on an offline engine, all in one batch."""
    prepare_vllm(local_device(), 1)
    # vLLM must be imported after prepare_vllm set its environment
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams, TokensPrompt

    card = read_card(checkpoint)
    tok = AutoTokenizer.from_pretrained(checkpoint)
    prompts = []
    for k in range(n):
        body = {key: v for key, v in bodies[k % len(bodies)].items()
                if key not in ("max_tokens", "temperature")}
        prompts.append(chat_ids(tok, parse_question(body).prompt(card.precision), card.system))
    llm = LLM(model=checkpoint, max_model_len=model_context(checkpoint, None),
              enforce_eager=True, gpu_memory_utilization=0.3, max_num_seqs=64)
    params = SamplingParams(max_tokens=max_tokens, temperature=1.0,
                            stop_token_ids=list(stop_ids(tok)))
    t0 = time.perf_counter()
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params,
                        use_tqdm=False)
    sec = time.perf_counter() - t0
    return n / sec, sum(len(o.outputs[0].token_ids) for o in outs) / sec


def shed_table(url: str, bodies: list[dict], loads: list[int], seconds: float) -> bool:
    """Each client count in turn against one application; prints the table, returns
    whether the overload target holds."""
    print(f"warm-up: {loads[0]} clients for {seconds:g} s (not measured: the engine's first "
          "batches are slow)", flush=True)
    asyncio.run(load(f"{url}/v1/reason", bodies, loads[0], seconds))
    rows = []
    for clients in loads:
        print(f"{clients} clients for {seconds:g} s ...", flush=True)
        tally, wall, _ = asyncio.run(load(f"{url}/v1/reason", bodies, clients, seconds))
        rows.append((clients, tally, wall))
    base = percentile(rows[0][1].latencies, 99)
    print("\n| clients | answered | req/s | shed (429) | 429 p50 s | 429 p99 s | slowest 429 s "
          "| 5xx | dropped | p50 s | p99 s | p99 / baseline |\n" + "|---" * 12 + "|")
    ok = True
    for clients, t, wall in rows:
        p99 = percentile(t.latencies, 99)
        slowest = max(t.shed, default=0.0)
        print(f"| {clients} | {len(t.latencies)} | {len(t.latencies) / wall:.2f} | "
              f"{len(t.shed)} | {percentile(t.shed, 50):.3f} | {percentile(t.shed, 99):.3f} | "
              f"{slowest:.3f} | "
              f"{t.server_errors} | {t.dropped} | "
              f"{percentile(t.latencies, 50):.2f} | {p99:.2f} | {p99 / base:.2f} |")
        ok &= t.server_errors == 0 and t.dropped == 0 and slowest < 1.0 and p99 <= 2 * base
    print(f"\ntarget (no 5xx, nothing dropped, every 429 within 1 s, admitted p99 within 2x "
          f"of {loads[0]} clients'): {'met' if ok else 'NOT met'}")
    return ok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="models/tiny")
    p.add_argument("--url", help="load a running server instead (no baseline)")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--seconds", type=float, help="per load (default 60; 30 with --shed)")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--num-cpus", type=float, default=3, help="logical CPUs of the local Ray")
    p.add_argument("--max-replicas", type=int, default=1,
                   help="autoscale the model replicas from 1 up to this many")
    p.add_argument("--shed", metavar="N,M", help="overload: these client counts in turn, "
                   "--seconds each (default 30 s), 429s counted apart")
    a = p.parse_args()

    bodies = questions(a.max_tokens)
    if a.url:
        url, cfg = a.url.rstrip("/"), None
    else:
        if a.checkpoint == "models/tiny":
            ensure_model(a.checkpoint, "tiny", 0)
        url, cfg = start_app(str(Path(a.checkpoint)), a.num_cpus, a.max_replicas)
    if a.shed:
        loads = sorted(int(x) for x in a.shed.split(","))
        raise SystemExit(0 if shed_table(url, bodies, loads, a.seconds or 30) else 1)
    a.seconds = a.seconds or 60
    print(f"{a.clients} clients for {a.seconds:g} s against {url}/v1/reason "
          f"({len(bodies)} questions, max_tokens {a.max_tokens}) ...", flush=True)
    tally, wall, replicas = asyncio.run(load(f"{url}/v1/reason", bodies, a.clients, a.seconds,
                                             cfg.name if cfg else None))
    done = len(tally.latencies)
    rps, tps = done / wall, tally.tokens / wall
    lat = tally.latencies
    print(json.dumps({"clients": a.clients, "seconds": round(wall, 1), "sent": tally.sent,
                      "answered": done, "errors": sum(tally.errors.values()) - tally.dropped,
                      "dropped": tally.dropped, "error_kinds": tally.errors}, indent=1))
    print(f"requests/s {rps:.2f}; generated tokens/s {tps:.0f}; latency p50 "
          f"{percentile(lat, 50):.2f} s, p95 {percentile(lat, 95):.2f} s, p99 "
          f"{percentile(lat, 99):.2f} s, mean {statistics.fmean(lat) if lat else 0:.2f} s")
    if replicas:
        print("model replicas over time: " + "; ".join(f"{t:.0f} s: {n}"
                                                       for t, n in replicas))
    ok = tally.dropped == 0 and not tally.errors
    print(f"target (zero errors, zero dropped): {'met' if ok else 'NOT met'}")
    if cfg is None:
        return
    import ray  # heavy: only when this run started its own application
    from ray import serve

    serve.shutdown()
    ray.shutdown()
    n = min(max(done, 1), OFFLINE_CAP)
    o_rps, o_tps = offline(a.checkpoint, bodies, n, a.max_tokens)
    print(f"baseline, offline vLLM, {n} of the same prompts in one batch: requests/s "
          f"{o_rps:.2f}, generated tokens/s {o_tps:.0f}")
    print(f"served / offline: requests/s {rps / o_rps:.2f}, tokens/s {tps / o_tps:.2f}")


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:  # bad input: one line, exit 2
        print(f"serve_load: {e}", file=sys.stderr)
        raise SystemExit(2) from None
