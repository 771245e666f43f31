"""`strl train` / `strl sft`: one training run, top to bottom.

config -> run directory -> model (built if missing) -> Ray cluster and actors -> held-out
evaluation -> supervised warm start -> GRPO steps -> evaluation -> checkpoint -> report.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from rlsys.config import Config, dump_config

log = logging.getLogger("strl")

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                    "special_tokens_map.json", "generation_config.json")


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)


def run(cfg: Config) -> Path:
    """Train as configured; returns the run directory."""
    import ray
    from transformers import AutoTokenizer

    from rlsys.cluster import build
    from rlsys.data import PromptSource
    from rlsys.modelinit import ensure_model
    from rlsys.report import write_report
    from rlsys.runlog import RunLogger, read_metrics
    from rlsys.topology import plan_topology
    from rlsys.trainer import Trainer, unique_run_dir

    t_start = time.perf_counter()
    run_dir = unique_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run_dir / "config.yaml")
    print(f"run directory: {run_dir}")

    model_path = str(ensure_model(cfg.model.path, cfg.model.preset or "tiny", cfg.model.seed)
                     if cfg.model.preset else Path(cfg.model.path))
    tok = AutoTokenizer.from_pretrained(model_path)
    source = PromptSource(cfg, tok)

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    ray.init(address=cfg.cluster.address, num_cpus=cfg.cluster.num_cpus
             if cfg.cluster.address is None else None,
             include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    topo = plan_topology(cfg, cuda_available=bool(ray.cluster_resources().get("GPU")))
    print(topo.table())
    print("starting actors (vLLM engines, DeepSpeed learner, reward workers) ...")
    handles = build(cfg, topo, model_path)
    print("started: " + ", ".join(f"{k} {v:.1f}s" for k, v in handles.start_s.items()))
    trainer = Trainer(cfg, handles, tok, source)
    logger = RunLogger(run_dir, cfg.model_dump(mode="json"), wandb_mode=cfg.trainer.wandb)
    extra: dict[str, Any] = dict(handles.start_s)
    try:
        trainer.sync_init()
        held_out = source.held_out()
        evals = {"before": trainer.evaluate(held_out)}
        _sft_stages(cfg, trainer, source, logger)
        if any(s.startswith("sft") for s in cfg.trainer.stages) and "grpo" in cfg.trainer.stages:
            evals["after_sft"] = trainer.evaluate(held_out)
        if "grpo" in cfg.trainer.stages:
            _grpo(cfg, trainer, logger, run_dir, model_path)
        evals["after"] = trainer.evaluate(held_out)
        ckpt = save_checkpoint(trainer, run_dir / "checkpoints" / "final", model_path)
        extra.update(wall_s=time.perf_counter() - t_start, checkpoint=str(ckpt),
                     skipped_long_prompts=source.skipped_long,
                     skipped_grad_steps=trainer.skipped_grad_steps,
                     eval_after_sft=evals.get("after_sft"))
        metrics = read_metrics(run_dir / "metrics.jsonl")
        grpo = [m for m in metrics if "reward/mean" in m]  # SFT rows carry sft_*/ keys only
        report = write_report(run_dir, grpo, evals["before"], evals["after"],
                              cfg.model_dump(mode="json"), extra)
        print(f"report: {report}")
    finally:
        logger.close()
        handles.shutdown()
        ray.shutdown()
    return run_dir


def save_checkpoint(trainer: Any, path: Path, model_path: str) -> Path:
    """An HF directory (weights from the learner, tokenizer from the model) that vLLM and
    transformers load; written under a temporary name and renamed when complete."""
    import ray

    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ray.get([ln.save_hf.remote(str(tmp)) for ln in trainer.h.learners])
    for name in _TOKENIZER_FILES:
        if (Path(model_path) / name).exists():
            shutil.copy(Path(model_path) / name, tmp / name)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def _sft_stages(cfg: Config, trainer: Any, source: Any, logger: Any) -> None:
    s = cfg.trainer.sft
    start = 0
    for stage in [x for x in cfg.trainer.stages if x.startswith("sft")]:
        bar = _progress(s.steps, stage)
        for i in range(s.steps):
            prompts = source.sft(start, s.batch_size)
            start += s.batch_size
            m = trainer.sft_step(prompts, answer_only=stage == "sft_align", lr=s.lr)
            logger.log(i, {f"{stage}/{k}": v for k, v in m.items()})
            bar.set_postfix(loss=f"{m.get('sft_loss', float('nan')):.3f}")
            bar.update()
        bar.close()
        trainer.sync()


def _grpo(cfg: Config, trainer: Any, logger: Any, run_dir: Path, model_path: str) -> None:
    steps = cfg.trainer.steps
    bar = _progress(steps, "grpo")
    for step in range(steps):
        t0 = time.perf_counter()
        metrics, samples = trainer.grpo_step()
        metrics["time/step"] = time.perf_counter() - t0
        gen = metrics.get("time/generate", 0.0)
        metrics["tokens_per_s"] = metrics["generated_tokens"] / gen if gen else 0.0
        logger.log(step, metrics)
        every = cfg.trainer.log_samples_every
        if every and step % every == 0:
            logger.log_samples(step, samples)
        accs = [v for k, v in metrics.items() if k.startswith("acc/")]
        bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}",
                        acc=f"{sum(accs) / len(accs):.2f}" if accs else "-",
                        step_s=f"{metrics['time/step']:.1f}")
        bar.update()
        k = cfg.trainer.save_every
        if k and (step + 1) % k == 0 and step + 1 < steps:
            save_checkpoint(trainer, run_dir / "checkpoints" / f"step-{step + 1}", model_path)
    bar.close()
