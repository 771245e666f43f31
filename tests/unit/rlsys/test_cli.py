"""The `strl` CLI as a user runs it: generate, show, score, quality, and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from envs.sample import TASKS
from rlsys.cli import main

FIXTURE = Path(__file__).parents[1] / "rewards" / "data" / "streasoner_st_test_cases.jsonl"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_generate_jsonl_and_parquet_hold_the_same_samples(tmp_path, capsys) -> None:
    j, p = tmp_path / "s.jsonl", tmp_path / "s.parquet"
    assert run(capsys, "generate", "--tasks", "all", "--n", "21", "--seed", "3",
               "--out", str(j), "--quiet")[0] == 0
    assert run(capsys, "generate", "--tasks", "all", "--n", "21", "--seed", "3",
               "--out", str(p), "--quiet")[0] == 0
    rows_j = [json.loads(x) for x in j.read_text().splitlines()]
    rows_p = pq.read_table(p).to_pylist()
    assert len(rows_j) == len(rows_p) == 21
    assert [r["id"] for r in rows_j] == [r["id"] for r in rows_p]
    assert rows_j[5]["prompt"] == rows_p[5]["prompt"]
    tasks = {r["task"] for r in rows_j}
    assert tasks <= set(TASKS) and len(tasks) >= 5  # 'all': the whole registry
    assert not list(tmp_path.glob(".*tmp*")), "no temp files left behind"


def test_generate_draws_its_worlds_from_the_domains_named(tmp_path, capsys) -> None:
    out = tmp_path / "d.jsonl"
    assert run(capsys, "generate", "--n", "12", "--domains", "climate, pollution",
               "--out", str(out), "--quiet")[0] == 0
    domains = {json.loads(json.loads(x)["meta"])["domain"]  # meta: a JSON string per row
               for x in out.read_text().splitlines()}
    assert domains == {"climate", "pollution"}


def test_generate_streasoner_format_matches_st_test_rows(tmp_path, capsys) -> None:
    out = tmp_path / "st.jsonl"
    rc, _, _ = run(capsys, "generate", "--tasks", "correlation,forecasting", "--n", "6",
                   "--out", str(out), "--format", "streasoner", "--quiet")
    assert rc == 0
    fixture_keys = set(json.loads(FIXTURE.read_text().splitlines()[0]))
    for row in map(json.loads, out.read_text().splitlines()):
        assert {"input", "timeseries", "output", "category"} <= set(row) & fixture_keys
        assert row["input"].count("<ts><ts/>") == len(row["timeseries"])
        if row["category"] == "forecasting":
            assert json.loads(row["output"])  # a bare list, as in ST-Test
        else:
            assert row["output"] in {f"<answer>{c}</answer>" for c in "ABCD"}


def test_score_fixture_rows_against_their_own_gold_is_one(capsys) -> None:
    rc, out, _ = run(capsys, "score", "--data", str(FIXTURE), "--predictions", str(FIXTURE),
                     "--prediction-column", "output", "--json", "-")
    assert rc == 0
    report = json.loads(out)["tasks"]
    assert set(report) == {"etiological", "entity", "correlation", "forecasting", "all"}
    for task, row in report.items():
        assert row["score"] == 1.0, task
        assert row["success_rate"] == 1.0, task
    assert report["forecasting"]["mae"] == 0.0


def test_score_generated_reference_completions_and_wrong_ones(tmp_path, capsys) -> None:
    data = tmp_path / "d.parquet"
    run(capsys, "generate", "--n", "40", "--seed", "1", "--out", str(data), "--quiet")
    rc, out, _ = run(capsys, "score", "--data", str(data), "--prediction-column", "completion",
                     "--json", str(tmp_path / "r.json"))
    assert rc == 0 and "task | n | success_rate" in out
    report = json.loads((tmp_path / "r.json").read_text())["tasks"]
    assert report["all"]["score"] == 1.0 and report["all"]["format"] == 1.0
    # predictions in a separate file, matched by id, all answering "A"
    rows = pq.read_table(data).to_pylist()
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": r["id"], "prediction":
                                         "<think>x</think><answer>A</answer>"}) + "\n"
                             for r in reversed(rows)))
    rc, out, _ = run(capsys, "score", "--data", str(data), "--predictions", str(preds),
                     "--json", "-")
    rep = json.loads(out)["tasks"]
    choice = [r for r in rows if r["kind"] == "choice"]
    expected = sum(r["answer"] == "A" for r in choice) / len(choice)
    assert rep["all"]["accuracy"] == pytest.approx(expected)
    assert rep["all"]["modal_answer"] == 1.0  # one letter whatever the question
    rc, out, _ = run(capsys, "score", "--data", str(data), "--predictions", str(preds))
    header = out.splitlines()[0].split(" | ")
    row = dict(zip(header, next(x for x in out.splitlines() if x.startswith("all |"))
                   .split(" | "), strict=True))
    assert rc == 0 and row["modal_answer"] == "1.000" and row["consistency"] == "-"


def test_show_prints_a_sample_and_plots_it(tmp_path, capsys) -> None:
    png = tmp_path / "s.png"
    rc, out, _ = run(capsys, "show", "--seed", "0", "--index", "4", "--plot", str(png))
    assert rc == 0
    assert "question" in out and "answer" in out and "rationale" in out
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_quality_command_reports_the_table(capsys, tmp_path) -> None:
    path = tmp_path / "quality.json"
    rc, out, _ = run(capsys, "quality", "--tasks", "correlation,root_cause", "--setting", "tiny",
                     "--n", "120", "--json", str(path))
    assert "tiny | correlation | series+graph | 120 | 0.333 | 1.000" in out
    assert "tiny | root_cause | series+graph | 120 | 0.333 | 1.000" in out
    # 120 questions are too few for the bounds to be sure: the exit code must follow them
    assert rc == (0 if "all bounds hold" in out else 1)
    rows = json.loads(path.read_text())
    assert [(r["task"], r["setting"]) for r in rows] == [("correlation", "tiny"),
                                                          ("root_cause", "tiny")]
    assert {"graph:ancestor", "series:xcorr", "text:learned"} <= set(rows[0]["baselines"])
    # world options given on the command line make a custom setting
    rc, out, _ = run(capsys, "quality", "--tasks", "etiological", "--nodes", "5", "--n", "60")
    assert "custom | etiological | series | 60 |" in out


@pytest.mark.parametrize("argv, needle", [
    (["score", "--data", "missing.jsonl", "--prediction-column", "output"], "no such file"),
    (["score", "--data", "{bad}", "--prediction-column", "output"], "malformed"),
    (["score", "--data", "{rows}", "--prediction-column", "nope"], "missing column 'nope'"),
    (["score", "--data", "data.csv"], "unsupported extension"),
    (["generate", "--n", "0", "--out", "x.jsonl"], "--n must be >= 1"),
    (["generate", "--n", "2", "--n-options", "9", "--out", "x.jsonl"], "n_options"),
    (["generate", "--n", "2", "--domains", "weather", "--out", "x.jsonl"],
     "unknown domains ['weather']; known: ['transportation'"),
    (["plan", "data.tasks={no_such_task: 1}"], "unknown task 'no_such_task'"),
    (["eval", "--per-cell", "1"], "give --checkpoint DIR or --endpoint URL"),
    (["eval", "--checkpoint", "nowhere"], "checkpoint nowhere is not a directory"),
    (["eval", "--checkpoint", "."], "is not an HF model directory (missing config.json"),
    (["eval", "--compare", "a", "b"], "a: no eval.json"),
    (["eval", "--compare", "bad.jsonl", "b"], "bad.jsonl is not valid JSON"),
    (["serve"], "checkpoint: give the model directory to serve"),
    (["serve", "--checkpoint", "nowhere"], "checkpoint nowhere is not a directory"),
    (["serve", "--checkpoint", ".", "replicas.max_replicas=0"], "max_replicas"),
    (["serve", "--checkpoint", ".", "replicas.min_replicas=3"], "is below replicas.min_rep"),
    (["serve", "--checkpoint", ".", "replicas.nope=1"], "unknown key 'replicas.nope'"),
])
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, capsys, monkeypatch, argv,
                                                needle) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.jsonl").write_text('{"input": "x"}\nnot json\n')
    (tmp_path / "rows.jsonl").write_text(FIXTURE.read_text())
    argv = [a.replace("{bad}", "bad.jsonl").replace("{rows}", "rows.jsonl") for a in argv]
    rc, _, err = run(capsys, *argv)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("strl: error:")
    if needle == "malformed":
        assert "bad.jsonl:2" in lines[0] and "not valid JSON" in lines[0]
    else:
        assert needle in lines[0]


def test_train_without_a_model_exits_2_and_leaves_no_run_directory(tmp_path, capsys,
                                                                   monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for path, needle in (("nowhere", "nowhere: no such model directory"),
                         (".", "is not a complete model directory: missing config.json")):
        rc, _, err = run(capsys, "train", "model.preset=null", f"model.path={path}")
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "runs").exists()


def test_a_runtime_failure_exits_1_not_2(tmp_path, capsys, monkeypatch) -> None:
    """A server that does not answer is not the user's bad input: exit 1, one clear line."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(capsys, "eval", "--endpoint", f"http://127.0.0.1:{port}", "--per-cell", "1")
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1
    assert lines[0].startswith("strl: error: cannot list the models of") and "is the server up" \
        in lines[0]


def test_unknown_task_exits_2_naming_the_known_ones(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["generate", "--tasks", "weather", "--n", "1", "--out", "x.jsonl"])
    assert e.value.code == 2
    assert "unknown task(s) weather" in capsys.readouterr().err


def test_serve_writes_a_config_file_that_serve_deploy_accepts(tmp_path, capsys) -> None:
    """`strl serve --write-config`: a Serve config file (Ray's own schema validates it)
    deploying `rlsys.serve.app:app` with the replicas, autoscaling bounds and limits."""
    import yaml
    from ray.serve import schema  # ray[serve] is pinned in the cpu extra

    from rlsys.model.build import build_model

    model = build_model(tmp_path / "m", corpus_size=200, progress=False)
    out = tmp_path / "serve.yaml"
    rc, text, _ = run(capsys, "serve", "--checkpoint", str(model), "--write-config", str(out),
                      "replicas.max_replicas=3", "port=8123", "limits.max_nodes=20")
    assert rc == 0 and f"serve deploy {out}" in text
    spec = yaml.safe_load(out.read_text())
    schema.ServeDeploySchema.model_validate(spec)
    app = spec["applications"][0]
    assert app["import_path"] == "rlsys.serve.app:app" and spec["http_options"]["port"] == 8123
    assert app["args"]["checkpoint"] == str(model.resolve())
    assert app["args"]["replicas"]["max_replicas"] == 3
    assert app["args"]["limits"]["max_nodes"] == 20

    # What the builder makes of those args (Ray's Application internals, pinned Ray 2.60):
    # model replicas autoscaling within the bounds, behind one light front end.
    from rlsys.serve.app import app as builder

    front = builder(app["args"])._bound_deployment
    model = front.init_args[1]._bound_deployment
    assert (front.name, front.num_replicas, model.name) == ("frontend", 1, "model")
    scaling = model._deployment_config.autoscaling_config
    assert (scaling.min_replicas, scaling.max_replicas) == (1, 3)
    assert model.max_ongoing_requests == 64 and model.ray_actor_options["num_cpus"] == 1
    fixed = builder({**app["args"], "replicas.max_replicas": "2",
                     "replicas.min_replicas": "2"}).\
        _bound_deployment.init_args[1]._bound_deployment
    assert fixed.num_replicas == 2 and fixed._deployment_config.autoscaling_config is None


def test_serve_to_other_machines_needs_a_key_and_never_writes_it(tmp_path, capsys,
                                                                  monkeypatch) -> None:
    import yaml

    from rlsys.model.build import build_model

    monkeypatch.delenv("STRL_API_KEY", raising=False)
    model = build_model(tmp_path / "m", corpus_size=200, progress=False)
    out = tmp_path / "serve.yaml"
    base = ["serve", "--checkpoint", str(model), "--write-config", str(out)]
    for host in ("0.0.0.0", "10.1.2.3", "myhost.example"):
        rc, _, err = run(capsys, *base, f"host={host}")
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert f"host={host} lets other machines reach port 8000" in err and "STRL_API_KEY" in err
    assert not out.exists()
    rc, _, err = run(capsys, *base, "host=0.0.0.0", "--api-key", "short")
    assert rc == 2 and "--api-key: at least 8 characters" in err
    for ok in (["host=0.0.0.0", "allow_no_key=true"], ["host=0.0.0.0", "--api-key", "k" * 12],
               ["host=127.0.0.1"], ["host=::1"]):
        rc, _, err = run(capsys, *base, *ok)
        assert rc == 0, (ok, err)
    monkeypatch.setenv("STRL_API_KEY", "from-the-environment")
    assert run(capsys, *base, "host=0.0.0.0")[0] == 0
    assert "from-the-environment" not in out.read_text()  # a secret stays out of files
    assert "api_key" not in yaml.safe_load(out.read_text())["applications"][0]["args"]


def test_serve_refuses_a_port_that_is_taken(tmp_path, capsys) -> None:
    import socket

    from rlsys.model.build import build_model

    model = build_model(tmp_path / "m", corpus_size=200, progress=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc, _, err = run(capsys, "serve", "--checkpoint", str(model), f"port={port}")
    assert rc == 2 and f"port {port} on 127.0.0.1 is taken" in err


def test_installed_console_script_runs(tmp_path) -> None:
    exe = shutil.which("strl") or str(Path(sys.executable).parent / "strl")
    out = tmp_path / "x.jsonl"
    proc = subprocess.run([exe, "generate", "--n", "3", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 3
    assert "wrote 3 samples" in proc.stderr


def test_probe_names_two_runs_final_policies_apart(tmp_path) -> None:
    """Two runs' `final` policies seen for the same budget would share one column of
    `strl probe`'s tables: each is named by its run; one checkpoint given twice fails."""
    from rlsys.cli import _distinct_labels

    def point(run: str, name: str = "final", label: str = "final (10,240 ex)") -> dict:
        return {"policy": tmp_path / run / "checkpoints" / name, "label": label}

    pts = _distinct_labels([point("a0"), point("a0cot"),
                            point("a0", "sft_cot-step-4/policy", "sft_cot-step-4 (32 ex)")])
    assert [p["label"] for p in pts] == ["a0/final (10,240 ex)", "a0cot/final (10,240 ex)",
                                         "sft_cot-step-4 (32 ex)"]
    full = [point("r", "grpo-step-3/policy", "grpo-step-3 (60 ex)") for _ in range(2)]
    with pytest.raises(ValueError, match="r/grpo-step-3 .*given twice"):
        _distinct_labels(full)
