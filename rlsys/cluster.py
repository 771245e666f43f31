"""Building the planned topology on a Ray cluster: placement groups, then actors in them.

Everything here follows `rlsys.topology.plan_topology`, which `strl plan` prints; the
rest of the system only receives the resulting handles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from actors.learner import LearnerActor, LearnerSettings
from actors.reward import RewardActor
from actors.rollout import EngineSettings, RolloutActor
from rlsys.config import Config
from rlsys.topology import Topology


@dataclass
class Handles:
    engines: list  # RolloutActor handles
    learners: list  # LearnerActor handles, rank order
    rewards: list  # RewardActor handles
    groups: dict[str, PlacementGroup]
    start_s: dict[str, float]

    def shutdown(self) -> None:
        for h in self.engines + self.learners + self.rewards:
            ray.kill(h, no_restart=True)
        for pg in self.groups.values():
            remove_placement_group(pg)


def engine_settings(cfg: Config, model_path: str) -> EngineSettings:
    r = cfg.rollout
    return EngineSettings(model_path=model_path, dtype=cfg.model.dtype, seed=cfg.trainer.seed,
                          max_model_len=r.max_prompt_tokens + r.max_tokens,
                          tensor_parallel=r.tensor_parallel,
                          gpu_memory_utilization=r.gpu_memory_utilization,
                          kv_cache_gib=r.kv_cache_gib,
                          device="cuda" if r.device == "cuda" else "cpu")


def learner_settings(cfg: Config, model_path: str, device: str) -> LearnerSettings:
    ln, a = cfg.learner, cfg.algorithm
    backend = ln.backend if ln.backend != "auto" else ("nccl" if device == "cuda" else "gloo")
    return LearnerSettings(model_path=model_path, dtype=cfg.model.dtype, zero_stage=ln.zero_stage,
                           lr=ln.lr, weight_decay=ln.weight_decay, warmup_steps=ln.warmup_steps,
                           grad_clip=ln.grad_clip, clip_low=a.clip_low, clip_high=a.clip_high,
                           kl_coef=a.kl_coef, kl_kind=a.kl_kind, aggregation=a.aggregation,
                           backend=backend, device=device, seed=cfg.trainer.seed,
                           cpu_threads=ln.cpu_threads)


def _in(pg: PlacementGroup, bundle: int) -> PlacementGroupSchedulingStrategy:
    return PlacementGroupSchedulingStrategy(placement_group=pg,
                                            placement_group_bundle_index=bundle)


def build(cfg: Config, topo: Topology, model_path: str, timeout_s: float = 600.0) -> Handles:
    """Reserve the placement groups, create every actor in its bundle, and start them all
    (engines, learner ranks and reward workers start concurrently)."""
    groups = {}
    for g in topo.groups:
        groups[g.name] = placement_group([b.as_ray() for b in g.bundles], strategy=g.strategy,
                                         name=f"strl-{cfg.trainer.name}-{g.name}")
    ready = [pg.ready() for pg in groups.values()]
    done, pending = ray.wait(ready, num_returns=len(ready), timeout=timeout_s)
    if pending:
        raise RuntimeError(
            f"placement groups not ready after {timeout_s:g}s: the cluster lacks resources "
            f"for {topo.total_cpus:g} CPUs / {topo.total_gpus:g} GPUs (see `strl plan`); "
            f"available: {ray.available_resources()}")
    es = engine_settings(cfg, model_path)
    ls = learner_settings(cfg, model_path, topo.device)
    engines, learners, rewards = [], [], []
    n_learners = sum(1 for a in topo.actors if a.role == "learner")
    for a in topo.actors:
        opts = {"num_cpus": a.cpus, "num_gpus": a.gpus,
                "scheduling_strategy": _in(groups[a.group], a.bundle)}
        if a.role == "rollout":
            engines.append(RolloutActor.options(**opts).remote(es))
        elif a.role == "learner":
            learners.append(LearnerActor.options(**opts).remote(ls, a.index, n_learners))
        else:
            specs = [r.model_dump() for r in cfg.reward.rewards]
            rewards.append(RewardActor.options(**opts).remote(specs, cfg.reward.timeout_s))
    t0 = time.perf_counter()
    master = ray.get(learners[0].address.remote())  # rank 0's node hosts the rendezvous
    starts = ray.get([h.start.remote() for h in engines]
                     + [h.start.remote(*master) for h in learners]
                     + [h.start.remote() for h in rewards])
    timing = {"cluster_start_s": time.perf_counter() - t0}
    for h, s in zip(engines + learners, starts, strict=False):
        if isinstance(s, dict):
            timing[f"{'engine' if h in engines else 'learner'}_start_s"] = s["start_s"]
    return Handles(engines, learners, rewards, groups, timing)
