"""`strl train` / `strl sft`: one training run, top to bottom.

`run`: config -> plug-ins tried and model found (built if missing), so nothing is written
for a run that cannot start -> run directory (new, or the one being resumed) -> Ray cluster
and actors -> `Run.stages` (held-out evaluation, then each stage: supervised warm starts,
GRPO) -> `Run.finish` (final evaluation, final policy, eval suite, report).
Three things each have one place: when a checkpoint is written (`Run.save`,
`Run.between_steps` and the GRPO loop's `trainer.save_every`), the stage loop
(`Run.stages`) and the KL reference policy (`Reference`).

Ctrl-C or a SIGTERM sent to the driver (`ray job stop` does that) lets the current step
finish, writes a checkpoint and exits with 130 / 143; `strl train --resume <run dir>`
continues at the next step with the prompts the run would have seen. (A signal sent to the
whole process group of a run that started its own local Ray reaches Ray's daemons and the
actors too, and no checkpoint can be written then: attach to a `ray start` cluster.)
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import ray
from tqdm import tqdm
from transformers import AutoTokenizer

from rlsys.algorithms import advantage_fn, loss_fn
from rlsys.config import Config, SFTConfig, dump_config
from rlsys.evals import report as evalreport
from rlsys.evals.evaluate import RunEngines, run_eval, suite_questions
from rlsys.model.build import ensure_model, validate_model
from rlsys.model.card import card_of
from rlsys.train import checkpoint, plugins, rounds
from rlsys.train.checkpoint import Progress
from rlsys.train.cluster import Handles, build, cluster_gpus
from rlsys.train.data import PromptSource
from rlsys.train.report import EXAMPLES_PER_TASK, example_section, write_report
from rlsys.train.runlog import RunLogger, read_metrics
from rlsys.train.summary import summary, write_summary
from rlsys.train.topology import plan_topology
from rlsys.train.trainer import Trainer, by_skill, held_out_metrics, unique_run_dir

log = logging.getLogger(__name__)
REFERENCE = "reference"  # run_dir/reference: the KL reference, the policy as GRPO started


class Interrupted(Exception):
    """The run stopped on a signal after writing a checkpoint."""

    def __init__(self, signum: int, checkpoint: Path) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} after writing "
                         f"{checkpoint}; continue with `strl train --resume "
                         f"{checkpoint.parents[1]}`")
        self.signum, self.checkpoint = signum, checkpoint


class StopRequest:
    """SIGINT / SIGTERM set a flag the loop checks between steps; a second Ctrl-C stops
    at once (without a checkpoint: the last periodic one stays valid)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def install(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\n{signal.Signals(signum).name}: finishing the current step, then writing a "
              "checkpoint (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def run(cfg: Config, resume: Path | None = None, start: Path | None = None) -> Path:
    """Train as configured, continue the run in `resume`, or (`start`) begin a new run from
    another run's full checkpoint; returns the run directory."""
    t_start = time.perf_counter()
    plugins.check(cfg)  # a broken plug-in stops the run here, before anything is written
    advantage_fn(cfg.algorithm.advantage), loss_fn(cfg.algorithm.loss)  # so do unknown names
    model_path = resolve_model(cfg)
    run_dir, progress, ckpt = open_run_dir(cfg, resume, start)
    tok = AutoTokenizer.from_pretrained(model_path)
    source = PromptSource(cfg, tok, position=progress.position)
    start_ray(cfg)
    stop = StopRequest().install()  # after ray.init, which installs handlers of its own
    handles = start_actors(cfg, model_path)
    trainer = Trainer(cfg, handles, tok, source)
    trainer.restore(progress.counters)  # run-wide counts carry over a resume
    source.restore(progress.counters)
    logger = RunLogger(run_dir, cfg.model_dump(mode="json"), wandb_mode=cfg.trainer.wandb)
    try:
        r = Run(cfg, run_dir, progress, handles, trainer, source, logger, stop, model_path)
        trainer.sync_init()
        if ckpt is not None:
            r.load(ckpt)
        r.stages()
        r.finish(time.perf_counter() - t_start)
    finally:
        stop.restore()
        logger.close()
        handles.shutdown()
        ray.shutdown()
    return run_dir


def resolve_model(cfg: Config) -> str:
    """The model directory: the embedded preset, built there if missing; otherwise a
    model directory that must exist and be complete (a clear error if not)."""
    if cfg.model.preset:
        return str(ensure_model(cfg.model.path, cfg.model.preset, cfg.model.seed))
    validate_model(cfg.model.path)
    return str(cfg.model.path)


def open_run_dir(cfg: Config, resume: Path | None,
                 start: Path | None = None) -> tuple[Path, Progress, Path | None]:
    """The run directory (a new one, or `resume`), where the run is, and the checkpoint to
    load (None for a new run from scratch); the resolved config is written into it.

    `start`: a full checkpoint of another run, where this new run begins (the same state:
    weights, optimizer, stream positions, the evaluations so far), e.g. GRPO variants
    branched off one supervised warm start. Its run's frozen KL reference comes along when
    the checkpoint is inside GRPO."""
    progress, ckpt = Progress(), None
    if resume is not None:
        run_dir = Path(resume)
        found = checkpoint.latest(run_dir)
        if found is None:
            raise FileNotFoundError(f"{run_dir} has no complete checkpoint to resume from "
                                    f"(looked in {run_dir / checkpoint.CHECKPOINTS})")
        progress, ckpt = found
        print(f"resuming {run_dir} from {ckpt.name}")
    else:
        if start is not None:  # verified before anything is written
            progress, ckpt = checkpoint.branch_point(start), Path(start)
        run_dir = unique_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    if start is not None:
        frozen = checkpoint.run_of(ckpt) / REFERENCE
        if ckpt.name.startswith("grpo-") and frozen.is_dir():
            shutil.copytree(frozen, run_dir / REFERENCE)
        print(f"starting {run_dir} from {ckpt}")
    dump_config(cfg, run_dir / "config.yaml")
    print(f"run directory: {run_dir}")
    return run_dir, progress, ckpt


def start_ray(cfg: Config) -> None:
    """Attach to `cluster.address` (or the one `ray job submit` names), else start a local
    cluster."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    address = cfg.cluster.address or os.environ.get("RAY_ADDRESS")  # set by `ray job submit`
    ray.init(address=address, num_cpus=cfg.cluster.num_cpus if address is None else None,
             include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)


def start_actors(cfg: Config, model_path: str) -> Handles:
    """Plan the topology on the connected cluster, print it, build and start every actor."""
    topo = plan_topology(cfg, cuda_available=cluster_gpus())
    print(topo.table())
    print("starting actors (vLLM engines, DeepSpeed learner, reward workers) ...")
    handles = build(cfg, topo, model_path)
    print("started: " + ", ".join(f"{k} {v:.1f}s" for k, v in handles.start_s.items()))
    print("placement: " + ", ".join(f"{k} on node {v[:8]}"
                                    for k, v in handles.placement().items()))
    return handles


class Reference:
    """The KL reference of GRPO: the policy as GRPO starts, saved in run_dir/reference.

    Against the model before a warm start (for the tiny preset, a random init; KL ~5 nats)
    the KL term would pull the policy back towards noise (seen: long gibberish after ~40
    steps), so a GRPO stage after a supervised one freezes the warm-started policy."""

    def __init__(self, run_dir: Path, handles: Handles, model_path: str, card: Any) -> None:
        self.path, self.handles = run_dir / REFERENCE, handles
        self.model_path, self.card = model_path, card

    def freeze(self) -> None:
        """Save the current policy as the reference and load it into every learner rank."""
        checkpoint.write_policy(self.handles.learners, self.path, self.model_path, self.card)
        self.load()

    def load(self) -> None:
        ray.get([ln.load_reference.remote(str(self.path)) for ln in self.handles.learners])

    def restore(self) -> None:
        """On a resume: the reference the run had frozen, if it had one."""
        if (self.path / "config.json").is_file():
            self.load()


class Run:
    """A started run: its stages, checkpoints and report."""

    def __init__(self, cfg: Config, run_dir: Path, progress: Progress, handles: Handles,
                 trainer: Trainer, source: PromptSource, logger: RunLogger,
                 stop: StopRequest, model_path: str) -> None:
        self.cfg, self.run_dir, self.progress = cfg, run_dir, progress
        self.handles, self.trainer, self.source = handles, trainer, source
        self.logger, self.stop, self.model_path = logger, stop, model_path
        self.card = card_of(cfg)  # how the saved policies were prompted (serve, eval)
        self.reference = Reference(run_dir, handles, model_path, self.card)
        self.saved: dict[tuple[int, int], Path] = {}
        self.held_out = source.held_out()
        self.align_held_out = source.align_held_out()

    # ---- checkpoints ----------------------------------------------------------------
    def load(self, ckpt: Path) -> None:
        """Continue from a checkpoint: learner state, the reference, the engines' weights."""
        try:
            ray.get([ln.load_state.remote(str(ckpt / "learner"))
                     for ln in self.handles.learners])
        except ray.exceptions.RayTaskError as e:  # the learner refused it: say why, one line
            if isinstance(e.cause, ValueError):
                raise checkpoint.CheckpointError(str(e.cause)) from None
            raise
        self.reference.restore()
        self.trainer.sync()
        if (ckpt / rounds.ROUNDS_FILE).is_file():  # asynchronous GRPO's rounds in flight
            self.trainer.restore_rounds(rounds.loads((ckpt / rounds.ROUNDS_FILE).read_text()),
                                        self.progress.step)

    def save(self, stage: str) -> Path:
        """A full checkpoint of where the run is (once per step: a stop requested on a
        periodic save does not write the same one twice)."""
        p = self.progress
        if (p.stage, p.step) not in self.saved:
            p.position = self.source.position
            ahead = self.trainer.rounds() if stage == "grpo" else []
            p.counters.update(**self.trainer.state(), **self.source.state())
            self.saved[(p.stage, p.step)] = checkpoint.save(
                self.run_dir, stage, p, self.handles.learners, self.model_path,
                self.cfg.trainer.keep_checkpoints, self.card,
                {rounds.ROUNDS_FILE: rounds.dumps(ahead)} if ahead else None)
        return self.saved[(p.stage, p.step)]

    def between_steps(self, stage: str) -> None:
        """Where a requested stop takes effect: a checkpoint, then `Interrupted`."""
        if self.stop.signum is not None:
            raise Interrupted(self.stop.signum, self.save(stage))

    # ---- stages ---------------------------------------------------------------------
    def stages(self) -> None:
        """The held-out evaluation, then each configured stage from where the run is."""
        p, stages = self.progress, self.cfg.trainer.stages
        if "before" not in p.evals:
            self.evaluate("before")
        while p.stage < len(stages):
            stage = stages[p.stage]
            self.between_steps(stage)
            if stage == "grpo":
                if p.step == 0 and p.stage > 0:
                    self.reference.freeze()
                    if self.cfg.algorithm.fresh_optimizer:
                        ray.get([ln.reset_optimizer.remote() for ln in self.handles.learners])
                _grpo(self)
            else:
                _sft(self, stage)
                self.trainer.sync()
                self.evaluate(f"after {stage}")
            p.stage, p.step = p.stage + 1, 0

    def evaluate(self, name: str) -> None:
        """The held-out questions' metrics at a point of the run ("before", "after
        <stage>"), the held-out ST-Align questions' per skill, and the diagnostics of
        that point (`diagnose`)."""
        p = self.progress
        p.evals[name] = self.trainer.evaluate(self.held_out)
        if self.align_held_out:
            p.align_evals[name] = self.align_metrics()
        self.diagnose(name)

    def diagnose(self, name: str) -> None:
        """The token probe (`trainer.probe`) at a point of the run, and GRPO's held-out
        objective (`trainer.objective_samples`) at the points just before and after GRPO."""
        p, t, stages = self.progress, self.cfg.trainer, self.cfg.trainer.stages
        if t.probe and name not in p.probes:
            rationale, reliance = self.trainer.probe(self.held_out)
            align, align_reliance = self.trainer.probe(self.align_held_out, align=True)
            p.probes[name] = {"rationale": rationale, "align": align, "reliance": reliance,
                              "align_reliance": align_reliance}
        if (t.objective_samples and self.held_out and "grpo" in stages
                and name not in p.objective):
            k = stages.index("grpo")
            around = {"before" if k == 0 else f"after {stages[k - 1]}", "after grpo"}
            if name in around:
                p.objective[name] = self.trainer.objective(self.held_out)

    def align_metrics(self) -> dict[str, dict[str, Any]]:
        """The held-out ST-Align questions' metrics, per skill."""
        return held_out_metrics(*by_skill(self.align_held_out,
                                          *self.trainer.answers(self.align_held_out)))

    def finish(self, wall_s: float) -> None:
        """Final evaluation, the final policy, the eval suite and the report."""
        texts, targets = self.trainer.answers(self.held_out)
        after = held_out_metrics(texts, targets)
        last = f"after {self.cfg.trainer.stages[-1]}"
        if self.align_held_out and last not in self.progress.align_evals:
            self.progress.align_evals[last] = self.align_metrics()
        self.diagnose(last)
        examples = example_section(self.held_out, texts, targets, EXAMPLES_PER_TASK)
        final = checkpoint.write_policy(self.handles.learners,
                                        self.run_dir / checkpoint.CHECKPOINTS / "final",
                                        self.model_path, self.card)
        counts = self.trainer.state()
        extra: dict[str, Any] = dict(
            self.handles.start_s, wall_s=wall_s, checkpoint=str(final), **self.source.state(),
            skipped_grad_steps=counts["skipped_grad_steps"],
            actor_restarts=counts["restarts_rollout"] + counts["restarts_reward"])
        suite, suite_result = _eval_suite(self.cfg, self.trainer, self.card,
                                          self.run_dir / "eval")
        grpo = [m for m in read_metrics(self.run_dir / "metrics.jsonl")
                if "reward/mean" in m]  # SFT rows carry sft_*/ keys only
        by_stage = dict(self.progress.evals)
        by_stage[f"after {self.cfg.trainer.stages[-1]}"] = after
        report = write_report(self.run_dir, grpo, self.progress.evals["before"], after,
                              self.cfg.model_dump(mode="json"), extra,
                              sections=examples + suite, stages=by_stage,
                              skills=self.progress.align_evals,
                              probes=self.progress.probes, objective=self.progress.objective)
        p = self.progress
        path = write_summary(self.run_dir, summary(
            self.run_dir.name, wall_s, self.cfg.data.env.n_options, by_stage, p.align_evals,
            p.probes, p.objective, suite_result))
        print(f"report: {report}\nsummary: {path}")


def _eval_suite(cfg: Config, trainer: Trainer, card: Any,
                out: Path) -> tuple[list[str], dict[str, Any] | None]:
    """The `strl eval` suite on the final policy, on the run's own engines (they hold
    its weights): written to `out` (eval.json, eval.md, eval.png, samples.html); returns
    the report's section and the result."""
    k = cfg.trainer.suite_per_cell
    if not k:
        return [], None
    questions, info = suite_questions(k)
    sampling = cfg.eval_sampling(trainer.stop_ids)
    engines = RunEngines(trainer, cfg.rollout.context, card, sampling)
    print(f"eval suite {info['suite']}: {len(questions)} questions, with and without "
          "their graph ...", flush=True)
    result = run_eval(questions, engines, info, sampling, card=card)
    paths = evalreport.write(result, out)
    print(f"eval suite: {paths['markdown']}, {paths['html']}")
    return [*evalreport.markdown(result, heading="##"),
            "Every answer, in the browser view: [eval/samples.html](eval/samples.html); "
            "plot: ![eval suite](eval/eval.png)", ""], result


def _progress(total: int, desc: str, initial: int = 0) -> tqdm:
    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)


def _sft(r: Run, stage: str) -> None:
    """One supervised stage: `sft_align` (ST-Align questions, `trainer.align`; its first
    `one_node_steps` on one node alone, then `node_share` of each batch), `sft_answer`
    (the tasks' answers only) or `sft_cot` (rationales too; both `trainer.sft`, with
    `trainer.sft.align_share` of each batch from ST-Align)."""
    cfg, p = r.cfg, r.progress
    s = cfg.trainer.supervised(stage)
    bar = _progress(s.steps, stage, initial=p.step)
    warned = False
    rehearse = 0 if stage == "sft_align" else round(s.align_share * s.batch_size)
    if stage == "sft_align" and p.step == 0 and s.onset_steps:
        _fit_onset(r, s)
    while p.step < s.steps:
        if stage == "sft_align":  # the curriculum: one node alone, then the full mix
            prompts = r.source.align_step(p.sft_position, p.step)
        else:
            prompts = r.source.sft(p.sft_position, s.batch_size - rehearse)
        if rehearse:  # ST-Align questions rehearsed in the later supervised stages
            prompts += r.source.align_mix(p.sft_position, rehearse)
        m = r.trainer.sft_step(prompts, answer_only=stage == "sft_answer", lr=s.lr_at(p.step),
                               drills=s.copy_drill)
        if rehearse:
            m["rehearsed"] = float(rehearse)
        r.logger.log(p.step, {f"{stage}/{k}": v for k, v in m.items()})
        if m.get("truncated") and not warned:
            warned = True
            print(f"warning: {stage}: some reference completions are longer than "
                  f"rollout.max_tokens={cfg.rollout.max_tokens} and were cut (counted as "
                  f"{stage}/truncated); raise rollout.max_tokens", file=sys.stderr)
        p.sft_position += s.batch_size
        p.step += 1
        bar.set_postfix(loss=f"{m.get('sft_loss', float('nan')):.3f}")
        bar.update()
        if checkpoint.due(p.step, s.save_every, s.steps):
            r.save(stage)
        r.between_steps(stage)
    bar.close()


def _fit_onset(r: Run, s: SFTConfig) -> None:
    """The encoder's onset head fitted alone before ST-Align's first step
    (`trainer.align.onset_steps` steps on the series of as many batches of ST-Align
    questions, at the stage's first learning rate)."""
    if r.cfg.model.series != "encoder" or not r.cfg.model.encoder.onset:
        return
    t0 = time.perf_counter()
    batches = [r.source.align(k * s.batch_size, s.batch_size) for k in range(s.onset_steps)]
    m = r.trainer.fit_onset(batches, s.lr_at(0))
    if not m:
        print("onset fit skipped: the policy's encoder has no onset head (saved before it "
              "existed)", flush=True)
        return
    r.logger.log(0, {f"sft_align/{k}": v for k, v in m.items()})
    print(f"onset head fitted in {s.onset_steps} steps ({time.perf_counter() - t0:.0f} s): "
          f"loss {m['onset_loss_first']:.3f} -> {m['onset_loss_last']:.3f}", flush=True)


def _grpo(r: Run) -> None:
    """The GRPO stage: steps until `trainer.steps`, a checkpoint every `trainer.save_every`
    steps and after the last one."""
    cfg, p, trainer = r.cfg, r.progress, r.trainer
    steps = cfg.trainer.steps
    bar = _progress(steps, "grpo", initial=p.step)
    while p.step < steps:
        step = p.step
        t0 = time.perf_counter()
        out = trainer.grpo_step(step)
        metrics = out.metrics
        metrics["time/step"] = time.perf_counter() - t0
        gen = metrics.get("time/generate", 0.0)
        metrics["tokens_per_s"] = metrics["generated_tokens"] / gen if gen else 0.0
        r.logger.log(step, metrics)
        r.logger.log_prompts(step, out.prompt_ids)
        every = cfg.trainer.log_samples_every
        if every and step % every == 0:
            r.logger.log_samples(step, out.samples)
        accs = [v for k, v in metrics.items() if k.startswith("acc/")]
        bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}",
                        acc=f"{sum(accs) / len(accs):.2f}" if accs else "-",
                        step_s=f"{metrics['time/step']:.1f}")
        bar.update()
        p.step += 1
        if metrics.get("judge/failures"):
            log.warning("step %d: %g of %g judge calls failed (scored 0)", step,
                        metrics["judge/failures"], metrics["judge/calls"])
        failing = trainer.judge_failing()
        if failing:
            resume = r.save("grpo").parents[1]
            raise RuntimeError(f"{failing} with `strl train --resume {resume}`")
        if checkpoint.due(p.step, cfg.trainer.save_every, steps):
            r.save("grpo")
        r.between_steps("grpo")
    bar.close()
