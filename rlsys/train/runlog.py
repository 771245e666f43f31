"""Run output: per-step metrics and sample completions to JSONL, TensorBoard and wandb.

`RunLogger` is what the trainer writes through; every metric goes to three sinks under
the same name:

    run_dir/metrics.jsonl      one JSON object per line, keys sorted, with "step"; the
                               source of truth that `strl` reports and plots are built from
    run_dir/samples.jsonl      example completions, one row per line, with "step"
    run_dir/prompts.jsonl      the ids of the prompts each GRPO step trained on (an audit
                               trail: a resumed run neither skips nor repeats data)
    run_dir/tensorboard/       tensorboardX event files (scalars; samples as text)
    run_dir/wandb/             wandb run files (offline by default; `wandb sync` uploads)

The JSONL files never lose a complete line: each line is written with one `write` call on
an append-only descriptor and fsynced, and re-opening a run directory (a resume) appends.
A line cut short by a crash is fenced off with a newline on the next open and skipped by
`read_metrics`. TensorBoard and wandb are optional extras: a missing package or a failing
wandb (no network, no API key) is a logged warning, never the end of a training run.
"""

from __future__ import annotations

import json
import logging
import math
import netrc
import numbers
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlparse

log = logging.getLogger(__name__)

WandbMode = Literal["offline", "online", "disabled"]

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
PROMPTS_FILE = "prompts.jsonl"
TENSORBOARD_DIR = "tensorboard"
WANDB_ID_FILE = "wandb_id.txt"  # a resume continues the same wandb run
SAMPLE_COLUMNS = ("task", "prompt", "completion", "answer", "reward")  # shown first


def _number(key: str, value: Any) -> float | int | None:
    """A metric value as a plain Python number; None passes (it is written as null)."""
    if value is None:
        return None
    if isinstance(value, numbers.Integral):  # bool and numpy ints too
        return int(value)
    if isinstance(value, numbers.Real):  # numpy floats too
        return float(value)
    raise TypeError(f"metric '{key}' is a {type(value).__name__}, not a number; "
                    "log a Python float or int (e.g. tensor.item())")


def _finite(value: float | int | None) -> bool:
    return value is not None and math.isfinite(value)


def _json_safe(value: Any) -> Any:
    """Non-finite floats become None, recursively, so `allow_nan=False` never trips."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return _json_safe(float(value))
    return value


def _append_lines(fd: int, objs: Iterable[dict[str, Any]]) -> None:
    """Append JSON lines with a single write (a crash leaves whole lines or none), then fsync."""
    data = "".join(json.dumps(_json_safe(o), sort_keys=True, allow_nan=False) + "\n"
                   for o in objs).encode()
    if not data:
        return
    written = os.write(fd, data)
    while written < len(data):  # short writes happen only on a full disk or a signal
        written += os.write(fd, data[written:])
    os.fsync(fd)


def _open_append(path: Path) -> int:
    """An append-only descriptor; a torn last line from a crash is closed with a newline."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    size = os.fstat(fd).st_size
    if size:
        with open(path, "rb") as f:
            f.seek(size - 1)
            torn = f.read(1) != b"\n"
        if torn:  # otherwise the next record would be glued onto the broken one
            os.write(fd, b"\n")
    return fd


def _have_wandb_key() -> bool:
    """Whether online wandb can authenticate: WANDB_API_KEY, or a netrc entry (`wandb login`)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return bool(host) and netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _md_cell(value: Any) -> str:
    """A value as one Markdown table cell (TensorBoard renders text as Markdown)."""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


class RunLogger:
    """Writes a run's metrics and samples to JSONL, TensorBoard and wandb.

    Use as a context manager, or call `close()`. Opening a run directory that already has
    output (a resume) appends to it and continues the same wandb run.
    """

    def __init__(self, run_dir: Path, config: dict[str, Any],
                 wandb_mode: WandbMode = "offline", project: str = "strl") -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._metrics_fd = _open_append(self.run_dir / METRICS_FILE)
        self._samples_fd: int | None = None  # opened on the first samples
        self._prompts_fd: int | None = None  # opened on the first prompt ids
        self._tb: Any = None
        self._wandb: Any = None  # the wandb module, once a run is up
        self._run: Any = None
        self.wandb_mode: WandbMode = "disabled"  # the mode actually in use
        self._closed = False
        self._open_tensorboard()
        if wandb_mode != "disabled":
            self._open_wandb(config, wandb_mode, project)

    # -- sinks ------------------------------------------------------------------------

    def _open_tensorboard(self) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError as e:
            log.warning("TensorBoard logging off: %s (install tensorboardX, which "
                           "ray[train] brings)", e)
            return
        self._tb = SummaryWriter(logdir=str(self.run_dir / TENSORBOARD_DIR))

    def _open_wandb(self, config: dict[str, Any], mode: WandbMode, project: str) -> None:
        try:
            import wandb
        except ImportError as e:
            log.warning("wandb logging off: %s (install the 'cpu' or 'gpu' extra)", e)
            return
        if mode == "online" and not _have_wandb_key():
            log.warning("wandb: no WANDB_API_KEY (and no `wandb login`): logging offline "
                           "under %s/wandb; upload later with `wandb sync`", self.run_dir)
            mode = "offline"
        id_file = self.run_dir / WANDB_ID_FILE
        if not id_file.exists():
            id_file.write_text(secrets.token_hex(4) + "\n")
        run_id = id_file.read_text().strip()
        modes = [mode, "offline"] if mode == "online" else [mode]
        for m in modes:
            try:
                run = wandb.init(mode=m, dir=str(self.run_dir), config=config,
                                 name=self.run_dir.name, project=project, id=run_id,
                                 resume="allow", reinit="create_new")
                # Our "step" is the x-axis: wandb's own step must only grow, and a resume
                # from an earlier checkpoint logs some steps again.
                run.define_metric("step")
                run.define_metric("*", step_metric="step")
            except Exception as e:  # third-party boundary: wandb raises many kinds
                log.warning("wandb %s init failed (%s: %s)", m, type(e).__name__, e)
                continue
            self._wandb, self._run, self.wandb_mode = wandb, run, m
            return
        log.warning("wandb logging off; metrics are still in %s and TensorBoard",
                       self.run_dir / METRICS_FILE)

    def _wandb_log(self, data: dict[str, Any]) -> None:
        if self._run is None:
            return
        try:
            self._run.log(data)
        except Exception as e:  # third-party boundary: a wandb failure must not end training
            log.warning("wandb log failed, wandb logging off (%s: %s)", type(e).__name__, e)
            self._finish_wandb()

    def _finish_wandb(self) -> None:
        run, self._run = self._run, None
        if run is None:
            return
        try:
            run.finish()
        except Exception as e:  # third-party boundary
            log.warning("wandb finish failed (%s: %s)", type(e).__name__, e)

    # -- public -----------------------------------------------------------------------

    def log(self, step: int, metrics: dict[str, float | int]) -> None:
        """Record the metrics of one step in every sink, under the same names.

        Non-finite values are written as null to JSONL and left out of TensorBoard and
        wandb (a chart with a NaN in it hides the rest of the curve).
        """
        self._check_open()
        if "step" in metrics:
            raise ValueError("'step' is a reserved metric name; pass it as the step argument")
        values = {k: _number(k, v) for k, v in metrics.items()}
        step = int(step)
        _append_lines(self._metrics_fd, [{"step": step, **values}])
        finite = {k: v for k, v in values.items() if _finite(v)}
        if self._tb is not None:
            for k, v in finite.items():
                self._tb.add_scalar(k, v, step)
            self._tb.flush()
        self._wandb_log({"step": step, **finite})

    def log_samples(self, step: int, rows: list[dict[str, str | float]]) -> None:
        """Record example completions (prompt, completion, answer, reward, task, ...)."""
        self._check_open()
        if not rows:
            return
        step = int(step)
        if self._samples_fd is None:
            self._samples_fd = _open_append(self.run_dir / SAMPLES_FILE)
        _append_lines(self._samples_fd, [{"step": step, **r} for r in rows])
        keys = {k for r in rows for k in r}
        columns = [c for c in SAMPLE_COLUMNS if c in keys] + sorted(keys - set(SAMPLE_COLUMNS))
        table = [[_json_safe(r.get(c)) for c in columns] for r in rows]
        if self._tb is not None:
            lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in table]
            self._tb.add_text("samples", "\n".join(lines), step)
            self._tb.flush()
        if self._run is not None:
            self._wandb_log({"step": step,
                             "samples": self._wandb.Table(columns=columns, data=table)})

    def log_prompts(self, step: int, ids: list[str]) -> None:
        """Record which prompts one step trained on (JSONL only)."""
        self._check_open()
        if self._prompts_fd is None:
            self._prompts_fd = _open_append(self.run_dir / PROMPTS_FILE)
        _append_lines(self._prompts_fd, [{"step": int(step), "ids": list(ids)}])

    def close(self) -> None:
        """Flush and close every sink; closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        os.close(self._metrics_fd)
        for fd in (self._samples_fd, self._prompts_fd):
            if fd is not None:
                os.close(fd)
        if self._tb is not None:
            self._tb.close()
        self._finish_wandb()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"RunLogger for {self.run_dir} is closed")

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def scan_metrics(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """The records of a metrics JSONL file, and the line numbers (1-based) that were malformed.

    A record is a JSON object with an integer "step". Blank lines are ignored.
    """
    records: list[dict[str, Any]] = []
    bad: list[int] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                bad.append(i)
                continue
            if isinstance(obj, dict) and isinstance(obj.get("step"), int):
                records.append(obj)
            else:
                bad.append(i)
    return records, bad


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics JSONL file in file order; malformed lines are skipped.

    The number of skipped lines is logged as a warning (`scan_metrics` returns them).
    A resumed run may hold a step more than once; the report keeps the last.
    """
    records, bad = scan_metrics(Path(path))
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
        log.warning("%s: skipped %d malformed line(s): %s", path, len(bad), shown)
    return records
