"""RunLogger: JSONL, TensorBoard and offline wandb output of a run, resume and failure modes."""

from __future__ import annotations

import json
import logging
import math
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from rlsys.train.runlog import RunLogger, read_metrics, scan_metrics

CONFIG = {"model": {"path": "models/tiny"}, "trainer": {"steps": 2}}
SAMPLES = [
    {"task": "entity", "prompt": "Which node?", "completion": "<answer>B</answer>",
     "answer": "B", "reward": 1.0},
    {"task": "forecasting", "prompt": "Next 3 | steps?", "completion": "[1,\n2]",
     "answer": "[1, 2, 3]", "reward": float("nan")},
]


@pytest.fixture(scope="module", autouse=True)
def wandb_env(tmp_path_factory: pytest.TempPathFactory):
    """wandb with no network, no key and no user state, for the whole module."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_SILENT", "true")
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
        mp.setenv("WANDB_CONFIG_DIR", str(home / "config"))
        mp.setenv("WANDB_CACHE_DIR", str(home / "cache"))
        mp.setenv("WANDB_DATA_DIR", str(home / "data"))
        mp.setenv("NETRC", str(home / "netrc"))  # absent: no `wandb login` either
        mp.delenv("WANDB_API_KEY", raising=False)
        yield


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One offline run of two steps and a batch of samples (wandb init is the slow part)."""
    d = tmp_path_factory.mktemp("runs") / "tiny"
    with RunLogger(d, CONFIG, wandb_mode="offline") as log:
        assert log.wandb_mode == "offline"
        log.log(1, {"reward": 0.5, "loss": np.float32(0.25), "kl": float("nan"), "n": 3})
        log.log(2, {"reward": 0.75, "loss": 0.125, "kl": 0.01, "n": np.int64(4)})
        log.log_samples(2, SAMPLES)
    return d


def tb_events(run_dir: Path) -> list[event_pb2.Event]:
    """Every event of the run's TensorBoard files (TFRecord: length, crc, data, crc)."""
    events = []
    for path in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            events.append(event_pb2.Event.FromString(data[pos + 12:pos + 12 + n]))
            pos += 12 + n + 4
    return events


def test_metrics_lines_are_sorted_json_with_the_step_and_nan_as_null(run_dir: Path) -> None:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert list(first) == sorted(first) and first["step"] == 1
    assert first == {"step": 1, "reward": 0.5, "loss": 0.25, "kl": None, "n": 3}
    assert "NaN" not in lines[0]
    assert read_metrics(run_dir / "metrics.jsonl")[1]["n"] == 4


def test_tensorboard_has_every_finite_scalar_under_the_same_name(run_dir: Path) -> None:
    scalars = {(v.tag, e.step): v.simple_value
               for e in tb_events(run_dir) for v in e.summary.value if v.HasField("simple_value")}
    assert scalars[("reward", 1)] == 0.5 and scalars[("loss", 2)] == 0.125
    assert scalars[("n", 2)] == 4 and scalars[("kl", 2)] == pytest.approx(0.01)
    assert ("kl", 1) not in scalars  # NaN is left out, not plotted


def test_samples_go_to_jsonl_tensorboard_text_and_a_wandb_table(run_dir: Path) -> None:
    rows = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert [r["task"] for r in rows] == ["entity", "forecasting"]
    assert rows[0]["step"] == 2 and rows[1]["reward"] is None
    texts = [v for e in tb_events(run_dir) for v in e.summary.value if v.tag.startswith("samples")]
    assert texts and b"<answer>B</answer>" in texts[0].tensor.string_val[0]
    assert b"Next 3 \\| steps?" in texts[0].tensor.string_val[0]  # a pipe cannot break the table
    assert list(run_dir.glob("wandb/offline-run-*/files/media/table/samples_*.table.json"))


def test_wandb_offline_run_is_written_under_the_run_dir(run_dir: Path) -> None:
    run_id = (run_dir / "wandb_id.txt").read_text().strip()
    (offline,) = run_dir.glob("wandb/offline-run-*")
    assert offline.name.endswith(run_id)
    history = (offline / f"run-{run_id}.wandb").read_bytes()
    assert b"reward" in history and b"loss" in history


def test_reopening_appends_and_continues_the_wandb_run(tmp_path: Path) -> None:
    d = tmp_path / "resumed"
    with RunLogger(d, CONFIG, wandb_mode="offline") as log:
        log.log(1, {"reward": 0.1})
        log.log(2, {"reward": 0.2})
    with RunLogger(d, CONFIG, wandb_mode="offline") as log:  # resumed from step 1
        log.log(2, {"reward": 0.3})
    assert [(m["step"], m["reward"]) for m in read_metrics(d / "metrics.jsonl")] == [
        (1, 0.1), (2, 0.2), (2, 0.3)]
    run_id = (d / "wandb_id.txt").read_text().strip()
    # the same id twice (a second within one second gets a "-1" suffix)
    assert len(list(d.glob(f"wandb/offline-run-*-{run_id}*"))) == 2


def test_online_without_a_key_falls_back_to_offline(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, "rlsys.train.runlog"):
        with RunLogger(tmp_path / "r", CONFIG, wandb_mode="online") as log:
            assert log.wandb_mode == "offline"
            log.log(1, {"reward": 1.0})
    assert "WANDB_API_KEY" in caplog.text
    assert list((tmp_path / "r").glob("wandb/offline-run-*"))


def test_wandb_init_failure_is_a_warning_not_a_crash(tmp_path: Path, monkeypatch,
                                                     caplog) -> None:
    import wandb

    def broken(**kw):
        raise wandb.errors.CommError("network is down")

    monkeypatch.setattr(wandb, "init", broken)
    with caplog.at_level(logging.WARNING, "rlsys.train.runlog"):
        with RunLogger(tmp_path / "r", CONFIG, wandb_mode="online") as log:
            assert log.wandb_mode == "disabled"
            log.log(1, {"reward": 1.0})
            log.log_samples(1, SAMPLES)
    assert "network is down" in caplog.text and "wandb logging off" in caplog.text
    assert read_metrics(tmp_path / "r" / "metrics.jsonl") == [{"step": 1, "reward": 1.0}]


def test_missing_wandb_package_is_a_warning(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with caplog.at_level(logging.WARNING, "rlsys.train.runlog"):
        with RunLogger(tmp_path / "r", CONFIG) as log:
            log.log(1, {"reward": 1.0})
    assert "wandb logging off" in caplog.text
    assert not (tmp_path / "r" / "wandb").exists()


def test_a_line_torn_by_a_crash_is_fenced_off_and_skipped(tmp_path: Path, caplog) -> None:
    d = tmp_path / "r"
    d.mkdir()
    (d / "metrics.jsonl").write_text('{"reward": 0.5, "step": 1}\n{"reward": 0.')
    with RunLogger(d, CONFIG, wandb_mode="disabled") as log:
        log.log(2, {"reward": 0.7})
    with caplog.at_level(logging.WARNING, "rlsys.train.runlog"):
        assert [m["step"] for m in read_metrics(d / "metrics.jsonl")] == [1, 2]
    assert "skipped 1 malformed line(s): 2" in caplog.text


def test_read_metrics_skips_and_counts_malformed_lines(tmp_path: Path) -> None:
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 1, "reward": 0.5}\n'
                 "not json\n"
                 "\n"  # blank: ignored, not counted
                 "[1, 2]\n"
                 '{"reward": 0.5}\n'  # no step
                 '{"step": "3"}\n'
                 '{"step": 4, "kl": null}\n')
    records, bad = scan_metrics(p)
    assert [r["step"] for r in records] == [1, 4] and bad == [2, 4, 5, 6]
    assert read_metrics(p) == records


def test_log_rejects_what_it_cannot_write(tmp_path: Path) -> None:
    with RunLogger(tmp_path / "r", CONFIG, wandb_mode="disabled") as log:
        with pytest.raises(TypeError, match=r"metric 'loss' is a list.*\.item\(\)"):
            log.log(1, {"loss": [0.5]})
        with pytest.raises(ValueError, match="reserved"):
            log.log(1, {"step": 1})
        log.log(1, {"inf": math.inf, "flag": True, "none": None})
    assert read_metrics(tmp_path / "r" / "metrics.jsonl") == [
        {"step": 1, "inf": None, "flag": 1, "none": None}]
    with pytest.raises(RuntimeError, match="closed"):
        log.log(2, {"reward": 1.0})
    log.close()  # twice is harmless
