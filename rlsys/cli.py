"""The `strl` command line: generate, show, score, quality, plan, init-model, train, sft,
serve, eval.

Each command parses its arguments, then imports what it needs and runs top to bottom.
Bad input (unknown task, malformed file, missing column, ...) prints one line
`strl: error: ...` and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envs.sample import PERCEPTION, TASKS
from rlsys.dataio import RowWriter, fresh_dir, iter_chunks, read_rows
from rlsys.evals import report as evalreport
from rlsys.files import write_atomic
from rlsys.model.engine import check_checkpoint
from rlsys.sampling import Sampling

# `strl --help` must answer at once, and `plan` and `show` must not import torch, vLLM or
# Ray: a command imports what is costly to import (the env stream, the config and its
# pydantic, training, serving, evaluation, progress bars) inside its function, after the
# arguments parsed. Only modules that import in a few milliseconds are imported up here.

EXIT_FAILURE = 1
"""The work failed while running: actors died past the restart budget, the AI judge kept
failing, placement groups timed out, a server did not answer."""
EXIT_USAGE = 2
"""Bad input or configuration: fix the command, the config or the file it names."""


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got '{text}'") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _tasks(text: str) -> list[str]:
    known = [*TASKS, *PERCEPTION]
    names = (list(TASKS) if text.strip() == "all"
             else [t.strip() for t in text.split(",") if t.strip()])
    unknown = [t for t in names if t not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown task(s) {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(known)} or 'all' (the reasoning tasks)")
    return names


def _env_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("world and difficulty")
    g.add_argument("--tasks", type=_tasks, default=list(TASKS),
                   help="comma-separated task names, or 'all' (default: all)")
    g.add_argument("--seed", type=int, default=0, help="stream seed (default 0)")
    g.add_argument("--nodes", type=_ints, default=(3, 5, 10), help="node counts, e.g. 3,5,10")
    g.add_argument("--lengths", type=_ints, default=(48, 96, 168), help="series lengths")
    g.add_argument("--horizons", type=_ints, default=(3, 6, 12), help="forecast horizons")
    g.add_argument("--n-options", type=int, default=4, help="options per question (2-6)")
    g.add_argument("--noise", type=float, default=1.0, help="noise multiplier (default 1.0)")
    g.add_argument("--hardness", type=float, default=0.5, help="hard-distractor probability")
    g.add_argument("--precision", type=int, default=2, help="decimals of inline numbers")
    g.add_argument("--domains", type=_names, default=None,
                   help="comma-separated domains to draw worlds from (default: all), e.g. "
                        "transportation,pollution (the tiny presets' data.env.domains)")
    g.add_argument("--placeholders", action="store_true",
                   help="write <ts><ts/> placeholders instead of inline numbers")


def _env_config(a: argparse.Namespace):
    from envs.tasks import EnvConfig

    extra = {"domains": a.domains} if a.domains else {}
    return EnvConfig(nodes=a.nodes, lengths=a.lengths, noise=a.noise, n_options=a.n_options,
                     hardness=a.hardness, horizons=a.horizons, precision=a.precision,
                     inline=not a.placeholders, **extra)


def cmd_generate(a: argparse.Namespace) -> int:
    from tqdm import tqdm

    from envs.stream import TaskMix, generate, redrawn

    if a.n < 1:
        raise ValueError(f"--n must be >= 1, got {a.n}")
    cfg, mix = _env_config(a), TaskMix.of(a.tasks)
    n_redrawn = 0
    with RowWriter(a.out) as out, tqdm(total=a.n, unit="sample", disable=a.quiet,
                                       desc="generate") as bar:
        for chunk in iter_chunks(a.n, 256):
            samples = generate(a.seed, [a.start + i for i in chunk], mix, cfg)
            n_redrawn += redrawn(samples)
            out.write(s.to_streasoner() if a.format == "streasoner" else s.to_record()
                      for s in samples)
            bar.update(len(samples))
    note = f"; {n_redrawn} with a redrawn question design" if n_redrawn else ""
    print(f"wrote {a.n} samples ({', '.join(a.tasks)}) to {a.out}{note}", file=sys.stderr)
    return 0


def cmd_show(a: argparse.Namespace) -> int:
    from envs.show import describe, plot
    from envs.stream import SampleStream

    sample = SampleStream(a.seed, a.tasks, _env_config(a)).sample(a.index)
    print(describe(sample))
    if a.prompt:
        print("\nprompt:\n" + sample.prompt())
    if a.plot:
        print(f"\nplot written to {plot(sample, a.plot)}")
    return 0


def cmd_score(a: argparse.Namespace) -> int:
    from rlsys.evals.scoring import align, pick_column, score

    data = read_rows(a.data)
    if a.predictions:
        preds = read_rows(a.predictions)
        col = pick_column(preds, a.prediction_column, a.predictions)
        completions = align(data, preds, col, a.predictions)
    else:
        col = pick_column(data, a.prediction_column or "prediction", a.data)
        completions = [str(r[col] or "") for r in data]
    report = score(data, completions)
    if a.json == "-":
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.table())
        if a.json:
            write_atomic(a.json, json.dumps(report.as_dict(), indent=2))
            print(f"\nJSON written to {a.json}")
    return 0


def cmd_quality(a: argparse.Namespace) -> int:
    from tqdm import tqdm

    from envs.quality import (
        ORACLE_MIN,
        SETTINGS,
        SHORTCUT_MAX_GAP,
        audit,
        audit_perception,
        format_perception,
        format_table,
    )
    from envs.tasks import get_task

    if a.n < 50:
        raise ValueError(f"--n must be >= 50 (the learned baselines train on it), got {a.n}")
    given = _env_config(a)
    if a.setting == "all":  # world options on the command line make a custom setting
        settings = {"custom": given} if given != SETTINGS["default"] else dict(SETTINGS)
    elif a.setting in SETTINGS:
        settings = {a.setting: SETTINGS[a.setting]}
    else:
        settings = {"custom": given}
    # the default (every reasoning task) audits the perception families too
    asked = [*a.tasks, *PERCEPTION] if list(a.tasks) == list(TASKS) else list(a.tasks)
    tasks = [t for t in asked if get_task(t).kind == "choice"]
    seen = [t for t in asked if get_task(t).perception]
    rows, skills = [], []
    with tqdm(total=len(settings) * (len(tasks) + len(seen)), desc="quality",
              unit="task") as bar:
        for name, cfg in settings.items():
            for task in tasks:
                bar.set_postfix_str(f"{name}/{task}")
                rows += audit([task], a.n, a.seed, cfg, name)
                bar.update()
            for task in seen:
                bar.set_postfix_str(f"{name}/{task}")
                skills += audit_perception(task, a.n, a.seed, cfg, name)
                bar.update()
    if rows:
        print(format_table(rows))
    if skills:
        print("\nperception questions (exempt from the both-inputs rule; prior: the skill's "
              "most common answer in training data; domain prior: its most common answer "
              "in the domain the question names, a text-only solver)\n"
              + format_perception(skills))
    problems = [p for r in [*rows, *skills] for p in r.problems()]
    print("\n" + ("\n".join(problems) if problems else
                  f"all bounds hold: oracle >= {ORACLE_MIN}; every solver deprived of a "
                  f"needed input, and every text-only one, within {SHORTCUT_MAX_GAP:.2f} "
                  "of chance"))
    if a.json:
        write_atomic(a.json, json.dumps([r.as_dict() for r in [*rows, *skills]], indent=2))
        print(f"JSON written to {a.json}")
    return 1 if problems else 0


def cmd_plan(a: argparse.Namespace) -> int:
    from rlsys.config import explain, load_config
    from rlsys.train import plugins
    from rlsys.train.topology import plan_topology

    cfg = load_config(a.config, a.overrides)
    if a.explain:
        print("\n".join(explain()))
        return 0
    plugins.check(cfg)  # what `strl train` refuses at start, `strl plan` refuses too
    print(f"config: {a.config or '(defaults)'}; run directory: {cfg.run_dir}")
    print(f"model: {cfg.model.path}; GRPO: {cfg.trainer.steps} steps x "
          f"{cfg.rollout.prompts_per_step} prompts x {cfg.rollout.n} completions; "
          f"stages: {', '.join(cfg.trainer.stages)}; learner ZeRO-{cfg.learner.zero_stage}")
    print(_series_line(cfg))
    print(plan_topology(cfg).table())
    return 0


def _series_line(cfg: Any) -> str:
    """How the run's policy reads series, for `strl plan` (with the encoder's output width:
    the model's hidden size, from its config.json or its embedded preset)."""
    if cfg.model.series == "inline":
        return "series: inline (numbers in the prompt)\n"
    from rlsys.model.build import PRESETS

    e, m = cfg.model.encoder, cfg.model
    conf = Path(m.path) / "config.json"
    if conf.is_file():
        out = f"-> hidden size {json.loads(conf.read_text())['hidden_size']} (from {conf})"
    elif m.preset in PRESETS:
        out = f"-> hidden size {PRESETS[m.preset].hidden_size} (the '{m.preset}' preset)"
    else:
        out = f"-> the model's hidden size (read from {conf} when the run starts; not here)"
    return (f"series: through the time-series encoder: patches of {e.patch} steps, MLP "
            f"{e.depth} x {e.width} {out}, lr {e.lr or cfg.learner.lr:g}; "
            f"ceil(T / {e.patch}) prompt positions per node\n")


def cmd_init_model(a: argparse.Namespace) -> int:
    from rlsys.model.build import build_model

    out = build_model(a.out, preset=a.preset, seed=a.seed, overwrite=a.overwrite)
    print(f"model written to {out}")
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from rlsys.config import load_config
    from rlsys.train import checkpoint
    from rlsys.train.run import Interrupted, run

    overrides = list(a.overrides)
    if a.command == "sft":
        overrides.append("trainer.stages=[sft_align, sft_cot]")
    config = a.config
    if a.resume and a.start:
        raise ValueError("--resume continues a run, --from begins a new one: give one")
    if a.resume or a.start:
        flag, run_dir = ("--resume", Path(a.resume)) if a.resume else \
            ("--from", checkpoint.run_of(Path(a.start)))
        if a.config:
            raise ValueError(f"{flag} reads the run's own config.yaml; pass changes as "
                             "overrides (e.g. trainer.steps=80), not --config")
        config = run_dir / "config.yaml"
        if not config.is_file():
            raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    try:
        run(load_config(config, overrides), resume=Path(a.resume) if a.resume else None,
            start=Path(a.start) if a.start else None)
    except Interrupted as e:
        print(f"strl: {e}", file=sys.stderr)
        return 128 + e.signum
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    from rlsys.config import ServeConfig, explain, load_config

    if a.explain:
        print("\n".join(explain(ServeConfig)))
        return 0
    overrides = list(a.overrides) + ([f"checkpoint={a.checkpoint}"] if a.checkpoint else [])
    cfg = load_config(a.config, overrides, ServeConfig)
    if a.api_key is not None:  # a flag, not an override: YAML would read "12345678" as a number
        if len(a.api_key) < 8:
            raise ValueError("--api-key: at least 8 characters")
        cfg = cfg.model_copy(update={"api_key": a.api_key})
    if a.write_config:
        from rlsys.serve.run import write_serve_config

        out = write_serve_config(cfg, Path(a.write_config))
        print(f"Serve config written to {out}; deploy it with `serve deploy {out}` on a "
              "running cluster (`ray start --head`)")
        return 0
    from rlsys.serve.run import run

    return run(cfg, detach=a.detach)


def _eval_one(a: argparse.Namespace, checkpoint: str | None,
              out_dir: Path) -> tuple[dict, dict[str, Path]]:
    """Evaluate a checkpoint (or a.endpoint) as the flags say; returns (result, paths)."""
    from rlsys.evals.evaluate import (
        Endpoint,
        LocalModel,
        file_questions,
        load_card,
        run_eval,
        suite_questions,
    )

    if checkpoint:
        check_checkpoint(checkpoint)
    card = load_card(checkpoint)
    sampling = Sampling(n=1, temperature=card.temperature if a.temperature is None
                        else a.temperature, top_p=1.0, max_tokens=a.max_tokens or card.max_tokens,
                        seed=a.seed)
    if a.data:
        questions, info = file_questions(
            a.data, card.precision if a.precision is None else a.precision)
    else:
        questions, info = suite_questions(a.per_cell, a.tasks)
    print(f"{len(questions)} questions ({'file ' + a.data if a.data else info['suite']}); "
          f"temperature {sampling.temperature:g}, max_tokens {sampling.max_tokens}", flush=True)
    # structured: the rubric's JSON schema, so even a small judge answers in its shape
    judge = ({"base_url": a.judge, "model": a.judge_model, "structured": True}
             if a.judge else None)
    backend = (LocalModel(checkpoint, card, sampling, a.max_model_len) if checkpoint
               else Endpoint(a.endpoint, card, sampling, a.model, a.concurrency))
    result = run_eval(questions, backend, info, sampling, graph_free=not a.no_graph_free,
                      judge=judge, card=card)
    for w in result["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    return result, evalreport.write(result, out_dir)


def _eval_dir(a: argparse.Namespace, label: str) -> Path:
    return Path(a.out) if a.out else fresh_dir(Path("runs") / "eval" / label)


def _label(path: str) -> str:
    p = Path(path).resolve()
    return f"{p.parents[1].name}-{p.name}" if p.parent.name == "checkpoints" else p.name


def cmd_eval(a: argparse.Namespace) -> int:
    if a.compare:
        loaded, names = [], []
        for item in a.compare:
            names.append(_label(item))
            if (Path(item) / "config.json").is_file():  # a model directory: evaluate it
                loaded.append(_eval_one(a, item, _eval_dir(a, _label(item)) if not a.out
                                        else Path(a.out) / _label(item))[0])
            else:
                loaded.append(evalreport.load(item))
        out = _eval_dir(a, f"compare-{names[0]}-vs-{names[1]}")
        out.mkdir(parents=True, exist_ok=True)
        text = "\n".join(evalreport.compare(loaded[0], loaded[1], (names[0], names[1])))
        write_atomic(out / "compare.md", text)
        evalreport.compare_plot(loaded[0], loaded[1], (names[0], names[1]),
                                out / "compare.png")
        print(text + f"\n\nwritten to {out}/compare.md and compare.png")
        return 0
    if bool(a.checkpoint) == bool(a.endpoint):
        raise ValueError("give --checkpoint DIR or --endpoint URL (or --compare A B)")
    label = _label(a.checkpoint) if a.checkpoint else "endpoint"
    result, paths = _eval_one(a, a.checkpoint, _eval_dir(a, label))
    print("\n".join(evalreport.task_table(result["tasks"])))
    print("\nwritten: " + ", ".join(str(p) for p in paths.values()))
    return 0


def _run_config(checkpoint: Path, given: str | None) -> Path:
    """The config a checkpoint was trained with: `given`, else the `config.yaml` of the
    run directory it is in (runs/<name>/checkpoints/<ckpt>)."""
    if given:
        return Path(given)
    for d in list(checkpoint.resolve().parents)[:3]:
        if (d / "config.yaml").is_file():
            return d / "config.yaml"
    raise ValueError(f"{checkpoint} is not inside a run directory (no config.yaml above it): "
                     "pass --config, the config it was trained with")


def cmd_probe(a: argparse.Namespace) -> int:
    import torch  # heavy, and only this command needs them here
    from transformers import AutoTokenizer

    from rlsys.config import load_config
    from rlsys.evals.probe import (
        PROBE_TABLES,
        markdown,
        plot_curve,
        probe,
        series_reliance,
        time_reversed,
    )
    from rlsys.model.series import load_policy, teacher_forced
    from rlsys.train.data import PromptSource, reference_ids

    points = _distinct_labels(sorted((_probe_point(Path(c), a.config) for c in a.checkpoint),
                                     key=lambda pt: (pt["examples"] is None,
                                                     pt["examples"] or 0,
                                                     pt["policy"].name == "final")))
    bare = [pt["label"] for pt in points if pt["examples"] is None]
    if a.plot and bare:
        raise ValueError("--plot needs checkpoints that record where their run was "
                         "(runs/<name>/checkpoints/<stage>-step-<k>, or final); "
                         f"{', '.join(bare)} do not")
    out: dict[str, dict[str, dict]] = {"rationale": {}, "align": {}, "reliance": {},
                                       "align_reliance": {}}
    for pt in points:
        cfg = load_config(pt["config"], [f"data.eval_size={a.n}"])
        torch.manual_seed(0)
        tok = AutoTokenizer.from_pretrained(pt["policy"])
        model = load_policy(pt["policy"], tok)
        if cfg.model.series == "encoder" and not hasattr(model, "encoder"):
            raise ValueError(f"{pt['policy']} has no time-series encoder but its config reads "
                             "series through one (model.series: encoder)")
        source = PromptSource(cfg, tok)
        for what, prompts, align in (("rationale", source.held_out(), False),
                                     ("align", source.align_held_out(a.n_align), True)):
            seqs = [(p.ids + reference_ids(tok, p, cfg.rollout.max_tokens)[0], len(p.ids),
                     p.series) for p in prompts]
            guesses = teacher_forced(model, seqs, a.batch_size)
            out[what][pt["label"]] = probe(tok, prompts, guesses, align=align)
            if cfg.model.series == "encoder":  # does the policy read its series at all?
                flipped = teacher_forced(model, [(x, n, time_reversed(series))
                                                 for x, n, series in seqs], a.batch_size)
                out["align_reliance" if align else "reliance"][pt["label"]] = (
                    series_reliance(tok, prompts, guesses, flipped, align=align))
        print(f"probed {pt['label']}", file=sys.stderr)
    for what, title in PROBE_TABLES.items():
        if out[what]:
            print("\n".join(markdown(out[what], title)) + "\n")
    if a.json:
        write_atomic(Path(a.json), json.dumps(
            {**out, "examples": {pt["label"]: pt["examples"] for pt in points}}, indent=1))
        print(f"written to {a.json}")
    if a.plot:
        plot_curve(out, {pt["label"]: pt["examples"] for pt in points}, Path(a.plot))
        print(f"written to {a.plot}")
    return 0


def _distinct_labels(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`points` with one label each: checkpoints that share a label (two runs' `final`
    policies) would share one column, so each of those is named by its run too
    ("a0/final (6,400 ex)"). The same checkpoint given twice is an error."""
    from rlsys.train import checkpoint

    labels = [pt["label"] for pt in points]
    for pt in points:
        if labels.count(pt["label"]) > 1:
            where = pt["policy"].resolve()
            if where.name == checkpoint.POLICY:  # a full checkpoint's policy directory
                where = where.parent
            run = (where.parent.parent if where.parent.name == checkpoint.CHECKPOINTS
                   else where.parent)
            pt["label"] = f"{run.name}/{pt['label']}"
    seen = [pt["label"] for pt in points]
    twice = sorted({x for x in seen if seen.count(x) > 1})
    if twice:
        raise ValueError(f"{', '.join(twice)}: the same checkpoint is given twice")
    return points


def _probe_point(ckpt: Path, config: str | None) -> dict[str, Any]:
    """What `strl probe` needs of one checkpoint: its policy directory, the config it was
    trained with, a label, and the training sequences seen when it was written (from its
    run's `state.json`; None for a bare policy such as `final`)."""
    from rlsys.config import load_config
    from rlsys.train import checkpoint

    policy = ckpt / checkpoint.POLICY if (ckpt / checkpoint.POLICY).is_dir() else ckpt
    if not (policy / "config.json").is_file():
        raise FileNotFoundError(f"{ckpt} is not a model directory (no config.json); give a "
                                "saved policy, e.g. runs/tiny/checkpoints/final, or a full "
                                "checkpoint, e.g. runs/tiny/checkpoints/sft_cot-step-250")
    cfg_path = _run_config(policy, config)
    state = policy.parent / checkpoint.STATE_FILE
    if policy != ckpt and state.is_file():
        progress = checkpoint.Progress.from_json(state.read_text())
        seen = load_config(cfg_path).examples_seen(progress.stage, progress.step)
    elif policy.name == "final" and policy.parent.name == checkpoint.CHECKPOINTS:
        cfg = load_config(cfg_path)  # a run's final policy: its whole budget
        last = cfg.trainer.stages[-1]
        seen = cfg.examples_seen(len(cfg.trainer.stages) - 1, cfg.trainer.steps if
                                 last == "grpo" else cfg.trainer.supervised(last).steps)
    else:
        return {"policy": policy, "config": cfg_path, "label": ckpt.name, "examples": None}
    return {"policy": policy, "config": cfg_path, "examples": seen,
            "label": f"{ckpt.name} ({seen:,} ex)"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="strl", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write generated samples to JSONL or Parquet")
    _env_args(g)
    g.add_argument("--n", type=int, required=True, help="number of samples")
    g.add_argument("--start", type=int, default=0, help="first stream index (default 0)")
    g.add_argument("--out", required=True, help="output file: .jsonl or .parquet")
    g.add_argument("--format", choices=("strl", "streasoner"), default="strl",
                   help="strl: full rows; streasoner: input/timeseries/output/category rows")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(fn=cmd_generate)

    s = sub.add_parser("show", help="print one sample and optionally plot it")
    _env_args(s)
    s.add_argument("--index", type=int, required=True, help="stream index of the sample")
    s.add_argument("--plot", help="write a PNG of the series and the graph here")
    s.add_argument("--prompt", action="store_true", help="also print the full prompt")
    s.set_defaults(fn=cmd_show)

    c = sub.add_parser("score", help="metrics and mean rewards of predictions")
    c.add_argument("--data", required=True, help="samples (strl or ST-Test rows), .jsonl/.parquet")
    c.add_argument("--predictions",
                   help="predictions file (matched by id, else by order); omit to read a "
                        "prediction column of --data")
    c.add_argument("--prediction-column",
                   help=f"column holding the model output (default: first of "
                        f"{', '.join(('prediction', 'completion', 'response', 'output'))})")
    c.add_argument("--json", help="also write the report as JSON here ('-' for stdout only)")
    c.set_defaults(fn=cmd_score)

    q = sub.add_parser("quality", help="oracle and shortcut-baseline audit of the generated "
                                       "questions, per task and difficulty setting")
    _env_args(q)
    q.add_argument("--setting", default="all",
                   help="a named setting (default, tiny, suite, hard), 'all' of them "
                        "(default), or 'custom' for the world options given here (given "
                        "world options alone also mean custom)")
    q.add_argument("--n", type=int, default=1000,
                   help="test samples per task and setting; the learned baselines train "
                        "on as many from the next seed (default 1000)")
    q.add_argument("--json", help="also write every figure, each baseline included, here")
    q.set_defaults(fn=cmd_quality)

    pl = sub.add_parser("plan", help="print the actors, resources and placement of a config "
                                     "without starting anything")
    pl.add_argument("--config", help="YAML preset (default: built-in defaults)")
    pl.add_argument("--explain", action="store_true", help="list every config key with its "
                                                           "default and meaning")
    pl.add_argument("overrides", nargs="*", help="dotted overrides, e.g. rollout.n=4")
    pl.set_defaults(fn=cmd_plan)

    im = sub.add_parser("init-model", help="build the embedded tiny model (random init, "
                                           "tokenizer trained on env text) in HF format")
    im.add_argument("--preset", default="tiny", help="model preset: tiny or small")
    im.add_argument("--out", default="models/tiny", help="output model directory")
    im.add_argument("--seed", type=int, default=0)
    im.add_argument("--overwrite", action="store_true", help="replace an existing directory")
    im.set_defaults(fn=cmd_init_model)

    for name, text in (("train", "run the configured stages: supervised warm start, then GRPO"),
                       ("sft", "run only the supervised warm-start stages")):
        t = sub.add_parser(name, help=text)
        t.add_argument("--config", help="YAML preset, e.g. configs/tiny_cpu.yaml")
        t.add_argument("--resume", metavar="RUN_DIR",
                       help="continue the run in RUN_DIR from its newest checkpoint")
        t.add_argument("--from", dest="start", metavar="CHECKPOINT",
                       help="a new run that begins at another run's full checkpoint (e.g. "
                            "runs/tiny/checkpoints/sft_cot-step-400) with that run's "
                            "config and the overrides: variants of one warm start")
        t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trainer.steps=40")
        t.set_defaults(fn=cmd_train)

    sv = sub.add_parser("serve", help="serve a checkpoint with Ray Serve (OpenAI-compatible "
                                      "chat, /v1/reason, a browser view, metrics)")
    sv.add_argument("--checkpoint", help="model directory, e.g. runs/tiny/checkpoints/final")
    sv.add_argument("--config", help="YAML serve config (replicas, autoscaling, limits)")
    sv.add_argument("--write-config", metavar="FILE",
                    help="write a Serve config file for `serve deploy` instead of serving")
    sv.add_argument("--api-key", metavar="KEY",
                    help="require 'Authorization: Bearer KEY' on every API route (default: "
                         "the STRL_API_KEY environment variable, which `ps` does not show)")
    sv.add_argument("--detach", action="store_true",
                    help="deploy to an existing cluster (address=auto) and return")
    sv.add_argument("--explain", action="store_true",
                    help="list every serve config key with its default and meaning")
    sv.add_argument("overrides", nargs="*", help="dotted overrides, e.g. replicas.max_replicas=2")
    sv.set_defaults(fn=cmd_serve)

    pr = sub.add_parser("probe", help="teacher-forced accuracy of a checkpoint per kind of "
                                      "rationale token and per ST-Align skill")
    pr.add_argument("checkpoint", nargs="+",
                    help="saved policies or full checkpoints, e.g. runs/tiny/checkpoints/final "
                         "or runs/learn/checkpoints/*-step-* (one column each, in order of "
                         "the training sequences they had seen)")
    pr.add_argument("--config", help="the config it was trained with (default: its run "
                                     "directory's config.yaml)")
    pr.add_argument("--n", type=int, default=100,
                    help="held-out questions of the config's tasks (default 100)")
    pr.add_argument("--n-align", type=int, default=150,
                    help="held-out ST-Align questions, as many of each skill (default 150: "
                         "10 each)")
    pr.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass")
    pr.add_argument("--json", help="also write the tables here as JSON")
    pr.add_argument("--plot", help="also plot each share against the training sequences "
                                   "seen (full checkpoints only), e.g. runs/learn/curve.png")
    pr.set_defaults(fn=cmd_probe)

    ev = sub.add_parser("eval", help="evaluate a checkpoint or an endpoint on the fixed "
                                     "eval suite (or a file); compare two evaluations")
    ev.add_argument("--checkpoint", help="model directory, e.g. runs/tiny/checkpoints/final")
    ev.add_argument("--endpoint", help="an OpenAI-compatible server, e.g. http://127.0.0.1:8000")
    ev.add_argument("--model", help="model name at the endpoint (default: its first model)")
    ev.add_argument("--compare", nargs=2, metavar=("A", "B"),
                    help="two evaluations (eval.json or its directory) or checkpoints")
    ev.add_argument("--data", help="a JSONL/Parquet file of ST-Test or `strl generate` rows "
                                   "instead of the eval suite")
    ev.add_argument("--per-cell", type=int, default=8,
                    help="eval suite questions per (split, task, node count) (default 8: "
                         "304 questions; fewer is a prefix of the same eval suite)")
    ev.add_argument("--tasks", type=_tasks, default=list(TASKS),
                    help="eval suite tasks, comma-separated, or 'all' (default)")
    ev.add_argument("--out", help="output directory (default: runs/eval/<name>, never "
                                  "overwritten)")
    ev.add_argument("--temperature", type=float,
                    help="sampling temperature (default: the checkpoint's card, else 0)")
    ev.add_argument("--max-tokens", type=int,
                    help="longest answer (default: the checkpoint's card, else 512)")
    ev.add_argument("--seed", type=int, default=0, help="sampling seed (local checkpoints)")
    ev.add_argument("--precision", type=int,
                    help="decimals of the numbers of --data rows (default: the checkpoint "
                         "card's, as training wrote them; else 2)")
    ev.add_argument("--max-model-len", type=int, help="context of the local engine "
                                                     "(default: the model's)")
    ev.add_argument("--concurrency", type=int, default=8, help="parallel endpoint requests")
    ev.add_argument("--no-graph-free", action="store_true",
                    help="skip the graph-free prompts (no graph-reliance figure; half the time)")
    ev.add_argument("--judge", metavar="URL", help="an OpenAI-compatible judge for the "
                                                   "free-text task (path_description)")
    ev.add_argument("--judge-model", default="judge", help="the judge's model name")
    ev.set_defaults(fn=cmd_eval)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"strl: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as e:  # an optional dependency this command needs is missing
        print(f"strl: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as e:
        print(f"strl: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("strl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
