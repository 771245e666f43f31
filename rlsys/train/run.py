"""`strl train` / `strl sft`: one training run, top to bottom.

config -> run directory (new, or the one being resumed) -> model (built if missing) -> Ray
cluster and actors -> learner state from the last checkpoint (resume) -> held-out
evaluation -> stages (supervised warm start, GRPO), checkpointing every
`trainer.save_every` GRPO steps -> evaluation -> final policy -> report.

Ctrl-C or a SIGTERM sent to the driver (`ray job stop` does that) lets the current step
finish, writes a checkpoint and exits with 130 / 143; `strl train --resume <run dir>`
continues at the next step with the prompts the run would have seen. (A signal sent to the
whole process group of a run that started its own local Ray reaches Ray's daemons and the
actors too, and no checkpoint can be written then: attach to a `ray start` cluster.)
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rlsys.config import Config, dump_config
from rlsys.train.checkpoint import Progress

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


def _progress(total: int, desc: str, initial: int = 0):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)


def run(cfg: Config, resume: Path | None = None) -> Path:
    """Train as configured, or continue the run in `resume`; returns the run directory."""
    import ray
    from transformers import AutoTokenizer

    from rlsys.model.build import ensure_model
    from rlsys.model.card import card_of
    from rlsys.train import checkpoint, plugins
    from rlsys.train.cluster import build, cluster_gpus
    from rlsys.train.data import PromptSource
    from rlsys.train.report import EXAMPLES_PER_TASK, example_section, write_report
    from rlsys.train.runlog import RunLogger, read_metrics
    from rlsys.train.topology import plan_topology
    from rlsys.train.trainer import Trainer, held_out_metrics, unique_run_dir

    t_start = time.perf_counter()
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
        run_dir = unique_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run_dir / "config.yaml")
    print(f"run directory: {run_dir}")

    model_path = str(ensure_model(cfg.model.path, cfg.model.preset or "tiny", cfg.model.seed)
                     if cfg.model.preset else Path(cfg.model.path))
    plugins.check(cfg)  # a broken plug-in stops the run here, before any actor starts
    tok = AutoTokenizer.from_pretrained(model_path)
    source = PromptSource(cfg, tok, position=progress.position)

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    address = cfg.cluster.address or os.environ.get("RAY_ADDRESS")  # set by `ray job submit`
    ray.init(address=address, num_cpus=cfg.cluster.num_cpus if address is None else None,
             include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    stop = StopRequest().install()  # after ray.init, which installs handlers of its own
    topo = plan_topology(cfg, cuda_available=cluster_gpus())
    print(topo.table())
    print("starting actors (vLLM engines, DeepSpeed learner, reward workers) ...")
    handles = build(cfg, topo, model_path)
    print("started: " + ", ".join(f"{k} {v:.1f}s" for k, v in handles.start_s.items()))
    print("placement: " + ", ".join(f"{k} on node {v[:8]}"
                                    for k, v in handles.placement().items()))
    trainer = Trainer(cfg, handles, tok, source)
    card = card_of(cfg)  # how the saved policies were prompted, for `strl serve` / `eval`
    trainer.restore(progress.counters)  # run-wide counts carry over a resume
    source.restore(progress.counters)
    logger = RunLogger(run_dir, cfg.model_dump(mode="json"), wandb_mode=cfg.trainer.wandb)
    extra: dict[str, Any] = dict(handles.start_s)

    saved: dict[tuple[int, int], Path] = {}

    def save(stage: str) -> Path:
        """A full checkpoint of where the run is (once per step: a stop requested on a
        periodic save does not write the same one twice)."""
        if (progress.stage, progress.step) in saved:
            return saved[(progress.stage, progress.step)]
        progress.position = source.position
        progress.counters.update(**trainer.state(), **source.state())
        path = checkpoint.save(run_dir, stage, progress, handles.learners, model_path,
                               cfg.trainer.keep_checkpoints, card)
        saved[(progress.stage, progress.step)] = path
        return path

    def between_steps(stage: str) -> None:
        if stop.signum is not None:
            raise Interrupted(stop.signum, save(stage))

    reference = run_dir / REFERENCE

    def load_reference() -> None:
        ray.get([ln.load_reference.remote(str(reference)) for ln in handles.learners])

    try:
        trainer.sync_init()
        if ckpt is not None:
            ray.get([ln.load_state.remote(str(ckpt / "learner")) for ln in handles.learners])
            if (reference / "config.json").is_file():
                load_reference()
            trainer.sync()
        held_out = source.held_out()
        if "before" not in progress.evals:
            progress.evals["before"] = trainer.evaluate(held_out)
        stages = cfg.trainer.stages
        while progress.stage < len(stages):
            stage = stages[progress.stage]
            between_steps(stage)
            if stage == "grpo":
                if progress.step == 0 and progress.stage > 0:
                    # KL to the warm-started policy: against the model before the warm start
                    # (for the tiny preset, a random init; KL ~5 nats) the KL term pulls the
                    # policy back towards noise (seen: long gibberish after ~40 steps).
                    checkpoint.write_policy(handles.learners, reference, model_path, card)
                    load_reference()
                _grpo(cfg, trainer, logger, progress, save, between_steps)
            else:
                _sft(cfg, stage, trainer, source, logger, progress, between_steps)
                trainer.sync()
                progress.evals[f"after {stage}"] = trainer.evaluate(held_out)
            progress.stage, progress.step = progress.stage + 1, 0
        texts, targets = trainer.answers(held_out)
        evals = dict(progress.evals, after=held_out_metrics(texts, targets))
        examples = example_section(held_out, texts, targets, EXAMPLES_PER_TASK)
        final = checkpoint.write_policy(handles.learners,
                                        run_dir / checkpoint.CHECKPOINTS / "final", model_path,
                                        card)
        counts = trainer.state()
        extra.update(wall_s=time.perf_counter() - t_start, checkpoint=str(final),
                     **source.state(), skipped_grad_steps=counts["skipped_grad_steps"],
                     actor_restarts=counts["restarts_rollout"] + counts["restarts_reward"])
        bench = _benchmark(cfg, trainer, card, run_dir / "eval")
        metrics = read_metrics(run_dir / "metrics.jsonl")
        grpo = [m for m in metrics if "reward/mean" in m]  # SFT rows carry sft_*/ keys only
        by_stage = {k: v for k, v in evals.items() if k != "after"}
        by_stage[f"after {stages[-1]}"] = evals["after"]
        report = write_report(run_dir, grpo, evals["before"], evals["after"],
                              cfg.model_dump(mode="json"), extra,
                              sections=examples + bench, stages=by_stage)
        print(f"report: {report}")
    finally:
        stop.restore()
        logger.close()
        handles.shutdown()
        ray.shutdown()
    return run_dir


def _benchmark(cfg: Config, trainer: Any, card: Any, out: Path) -> list[str]:
    """The `strl eval` benchmark on the final policy, on the run's own engines (they hold
    its weights): written to `out` (eval.json, eval.md, eval.png, samples.html); returns
    the report's section."""
    from rlsys.evals import report as evalreport
    from rlsys.evals.evaluate import RunEngines, Sampling, benchmark_questions, run_eval
    from rlsys.train.trainer import EVAL_SEED

    k = cfg.trainer.benchmark_per_cell
    if not k:
        return []
    r = cfg.rollout
    questions, info = benchmark_questions(k)
    sampling = Sampling(temperature=cfg.trainer.eval_temperature, max_tokens=r.max_tokens,
                        top_p=r.top_p, seed=EVAL_SEED + cfg.trainer.seed)
    engines = RunEngines(trainer, r.max_model_len or r.max_prompt_tokens + r.max_tokens, card,
                         sampling)
    print(f"benchmark {info['benchmark']}: {len(questions)} questions, with and without "
          "their graph ...", flush=True)
    result = run_eval(questions, engines, info, sampling, card=card)
    paths = evalreport.write(result, out)
    print(f"benchmark: {paths['markdown']}, {paths['html']}")
    return [*evalreport.markdown(result, heading="##"),
            "Every answer, in the browser view: [eval/samples.html](eval/samples.html); "
            "plot: ![benchmark](eval/eval.png)", ""]


def _sft(cfg: Config, stage: str, trainer: Any, source: Any, logger: Any,
         progress: Progress, between_steps: Any) -> None:
    s = cfg.trainer.sft
    bar = _progress(s.steps, stage, initial=progress.step)
    warned = False
    while progress.step < s.steps:
        prompts = source.sft(progress.sft_position, s.batch_size)
        m = trainer.sft_step(prompts, answer_only=stage == "sft_align",
                             lr=s.lr_at(progress.step))
        logger.log(progress.step, {f"{stage}/{k}": v for k, v in m.items()})
        if m.get("truncated") and not warned:
            warned = True
            print(f"warning: {stage}: some reference completions are longer than "
                  f"rollout.max_tokens={cfg.rollout.max_tokens} and were cut (counted as "
                  f"{stage}/truncated); raise rollout.max_tokens", file=sys.stderr)
        progress.sft_position += s.batch_size
        progress.step += 1
        bar.set_postfix(loss=f"{m.get('sft_loss', float('nan')):.3f}")
        bar.update()
        between_steps(stage)
    bar.close()


def _grpo(cfg: Config, trainer: Any, logger: Any, progress: Progress, save: Any,
          between_steps: Any) -> None:
    steps = cfg.trainer.steps
    bar = _progress(steps, "grpo", initial=progress.step)
    while progress.step < steps:
        step = progress.step
        t0 = time.perf_counter()
        out = trainer.grpo_step(step)
        metrics, samples, prompt_ids = out.metrics, out.samples, out.prompt_ids
        metrics["time/step"] = time.perf_counter() - t0
        gen = metrics.get("time/generate", 0.0)
        metrics["tokens_per_s"] = metrics["generated_tokens"] / gen if gen else 0.0
        logger.log(step, metrics)
        logger.log_prompts(step, prompt_ids)
        every = cfg.trainer.log_samples_every
        if every and step % every == 0:
            logger.log_samples(step, samples)
        accs = [v for k, v in metrics.items() if k.startswith("acc/")]
        bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}",
                        acc=f"{sum(accs) / len(accs):.2f}" if accs else "-",
                        step_s=f"{metrics['time/step']:.1f}")
        bar.update()
        progress.step += 1
        if metrics.get("judge/failures"):
            log.warning("step %d: %g of %g judge calls failed (scored 0)", step,
                        metrics["judge/failures"], metrics["judge/calls"])
        failing = trainer.judge_failing()
        if failing:
            raise RuntimeError(f"{failing} with `strl train --resume {save('grpo').parents[1]}`")
        k = cfg.trainer.save_every
        if k and (progress.step % k == 0 or progress.step == steps):
            save("grpo")  # the last step too: `--resume ... trainer.steps=<more>` extends
        between_steps("grpo")
    bar.close()
