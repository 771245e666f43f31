"""`strl serve`: the trained model behind Ray Serve, top to bottom.

config -> checks of the checkpoint -> Ray (a local cluster, or `address`) -> Serve's HTTP
proxy -> the application (`rlsys.serve.app.build`) -> wait for Ctrl-C / SIGTERM -> take the
application down. `--detach` leaves it running on an existing cluster; `--write-config`
writes a Serve config file for `serve deploy` instead of deploying.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from rlsys.config import API_KEY_ENV, ServeConfig
from rlsys.files import write_atomic
from rlsys.model.engine import check_checkpoint


def check_port(host: str, port: int) -> None:
    """An error naming the port when something on this machine already listens there
    (Serve's proxy would otherwise fail inside an actor, with a traceback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ValueError(f"port {port} on {host} is taken ({e.strerror}); serve on "
                             "another one with port=N") from None


def check_exposure(cfg: ServeConfig) -> None:
    """Refuse to serve other machines without a key, unless told that is intended."""
    try:
        loopback = cfg.host == "localhost" or ipaddress.ip_address(cfg.host).is_loopback
    except ValueError:  # a host name: assume other machines reach it
        loopback = False
    if not loopback and cfg.api_key is None and not cfg.allow_no_key:
        raise ValueError(f"host={cfg.host} lets other machines reach port {cfg.port}, and no "
                         f"API key is set: set {API_KEY_ENV} (or --api-key), or pass "
                         "allow_no_key=true to serve anyone who reaches it")


def serve_config_file(cfg: ServeConfig) -> dict[str, Any]:
    """A Serve config file (`serve deploy FILE`) deploying this application. The API key is
    never written into it: the application reads STRL_API_KEY where it runs (set it in the
    file's `runtime_env: {env_vars: ...}` or on the cluster's nodes)."""
    args = cfg.model_dump(mode="json", exclude={"address", "num_cpus", "host", "port",
                                                "route_prefix", "api_key"})
    args["checkpoint"] = str(Path(cfg.checkpoint).resolve())  # the controller's cwd differs
    return {"proxy_location": "EveryNode",
            "http_options": {"host": cfg.host, "port": cfg.port},
            "applications": [{"name": cfg.name, "route_prefix": cfg.route_prefix,
                              "import_path": "rlsys.serve.app:app", "args": args}]}


def write_serve_config(cfg: ServeConfig, out: Path) -> Path:
    check_checkpoint(cfg.checkpoint)
    check_exposure(cfg)
    return write_atomic(out, yaml.safe_dump(serve_config_file(cfg), sort_keys=False))


def run(cfg: ServeConfig, detach: bool = False) -> int:
    """Deploy and serve until interrupted (or, with `detach`, deploy and return)."""
    check_checkpoint(cfg.checkpoint)
    check_exposure(cfg)
    if cfg.address is None:
        check_port(cfg.host, cfg.port)
    if detach and cfg.address is None:
        raise ValueError("--detach needs an existing cluster (address=auto or "
                         "address=ray://...): a local cluster ends with this command")
    # heavy: Ray and Serve (rlsys.serve.app imports them too), imported once the checks
    # above passed, and never by `--write-config`
    import ray
    from ray import serve

    from rlsys.serve.app import build

    ray.init(address=cfg.address, num_cpus=cfg.num_cpus if cfg.address is None else None,
             include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve.start(http_options={"host": cfg.host, "port": cfg.port})
        r = cfg.replicas
        scale = (f"{r.min_replicas}" if r.max_replicas == r.min_replicas
                 else f"{r.min_replicas}-{r.max_replicas} (autoscaling)")
        print(f"starting {cfg.name}: {scale} model replica(s) of {cfg.checkpoint} "
              f"(vLLM, {r.cpus:g} CPU / {r.gpus:g} GPU each) ...", flush=True)
        t0 = time.perf_counter()
        serve.run(build(cfg), name=cfg.name, route_prefix=cfg.route_prefix)
        base = f"http://{cfg.host}:{cfg.port}{cfg.route_prefix.rstrip('/')}"
        print(f"serving {cfg.name} at {base} (ready in {time.perf_counter() - t0:.0f} s)\n"
              f"  POST {base}/v1/reason            a question -> reasoning, answer, validity\n"
              f"  POST {base}/v1/chat/completions  OpenAI-compatible\n"
              f"  GET  {base}/view                 the browser view\n"
              f"  GET  {base}/healthz, {base}/metrics", flush=True)
        if detach:
            print(f"detached: `serve shutdown` or `serve delete {cfg.name}` takes it down")
            return 0
        print("Ctrl-C to stop", flush=True)
        while not stop.wait(0.5):
            pass
        print("stopping ...", file=sys.stderr, flush=True)
        serve.delete(cfg.name)
        return 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if not detach:
            serve.shutdown()
        ray.shutdown()
