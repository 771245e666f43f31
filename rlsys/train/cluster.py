"""Building the planned topology on a Ray cluster: placement groups, then actors in them.

Everything here follows `rlsys.train.topology.plan_topology`, which `strl plan` prints; the
rest of the system only receives the resulting handles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from actors.judge import JudgeActor, JudgeSettings
from actors.learner import LearnerActor, LearnerSettings
from actors.reward import RewardActor
from actors.rollout import EngineSettings, RolloutActor
from rlsys.config import Config
from rlsys.train.topology import Topology


@dataclass
class Handles:
    """The live actors of a run, and how to rebuild one that died in its own bundle."""

    engines: list  # RolloutActor handles
    learners: list  # LearnerActor handles, rank order
    rewards: list  # RewardActor handles
    groups: dict[str, PlacementGroup]
    start_s: dict[str, float]
    cfg: Config
    topo: Topology
    model_path: str
    judge: object | None = None  # JudgeActor handle (judge.mode: actor)
    judge_url: str | None = None  # where the `judge` reward sends its requests

    def _opts(self, role: str, index: int) -> dict:
        a = next(a for a in self.topo.actors if a.role == role and a.index == index)
        return {"num_cpus": a.cpus, "num_gpus": a.gpus,
                "scheduling_strategy": _in(self.groups[a.group], a.bundle)}

    def new_engine(self, index: int):
        return RolloutActor.options(**self._opts("rollout", index)).remote(
            engine_settings(self.cfg, self.topo, self.model_path))

    def new_learner(self, index: int):
        n = sum(1 for a in self.topo.actors if a.role == "learner")
        return LearnerActor.options(**self._opts("learner", index)).remote(
            learner_settings(self.cfg, self.topo, self.model_path), index, n)

    def new_reward(self, index: int):
        return RewardActor.options(**self._opts("reward", index)).remote(
            self.cfg.reward_specs(self.judge_url), self.cfg.reward.timeout_s)

    def new_judge(self):
        settings = judge_settings(self.cfg, self.topo, self.model_path,
                                  "127.0.0.1" if _one_machine() else None)
        return JudgeActor.options(**self._opts("judge", 0)).remote(settings)

    def placement(self) -> dict[str, str]:
        """Where each actor landed: 'role-index' -> Ray node id."""
        out = {}
        for a in self.topo.actors:
            table = ray.util.placement_group_table(self.groups[a.group])
            out[f"{a.role}-{a.index}"] = table["bundles_to_node_id"][a.bundle]
        return out

    def replace(self, role: str, index: int) -> float:
        """Kill (if still there) and rebuild one rollout engine or reward worker in its
        bundle, started and ready; returns the seconds it took. The caller re-joins a new
        engine to the weight-sync group."""
        t0 = time.perf_counter()
        pool = self.engines if role == "rollout" else self.rewards
        ray.kill(pool[index], no_restart=True)
        pool[index] = self.new_engine(index) if role == "rollout" else self.new_reward(index)
        try:
            ray.get(pool[index].start.remote(), timeout=START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise RuntimeError(
                f"a rebuilt {role} actor did not start in {START_TIMEOUT_S:g}s (its bundle's "
                "node may be gone with no capacity left); resume from the last checkpoint "
                "once the cluster has room") from None
        return time.perf_counter() - t0

    def shutdown(self) -> None:
        judge = [self.judge] if self.judge is not None else []
        for h in self.engines + self.learners + self.rewards + judge:
            ray.kill(h, no_restart=True)
        for pg in self.groups.values():
            remove_placement_group(pg)


START_TIMEOUT_S = 900.0  # a rebuilt actor that is not up by then is not coming


def cluster_gpus() -> bool:
    """Whether the connected Ray cluster declares GPUs (what `plan_topology` decides the
    device from when `rollout.device` is auto)."""
    return bool(ray.cluster_resources().get("GPU"))


def _one_machine() -> bool:
    """Whether every node of the cluster is on this machine (then loopback reaches all)."""
    return len({n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}) == 1


def engine_settings(cfg: Config, topo: Topology, model_path: str) -> EngineSettings:
    r = cfg.rollout
    return EngineSettings(model_path=model_path, dtype=cfg.model.dtype, seed=cfg.trainer.seed,
                          max_model_len=r.max_model_len or r.max_prompt_tokens + r.max_tokens,
                          tensor_parallel=r.tensor_parallel,
                          gpu_memory_utilization=r.gpu_memory_utilization,
                          kv_cache_gib=r.kv_cache_gib,
                          device=topo.device, encoder=encoder_shape(cfg))


def encoder_shape(cfg: Config) -> dict | None:
    """The encoder's shape for the learner and the engines (None: series inline)."""
    if cfg.model.series != "encoder":
        return None
    return cfg.model.encoder.model_dump(exclude={"lr"})


def learner_settings(cfg: Config, topo: Topology, model_path: str) -> LearnerSettings:
    ln, a = cfg.learner, cfg.algorithm
    return LearnerSettings(model_path=model_path, dtype=cfg.model.dtype, zero_stage=ln.zero_stage,
                           lr=ln.lr, weight_decay=ln.weight_decay, warmup_steps=ln.warmup_steps,
                           grad_clip=ln.grad_clip, clip_low=a.clip_low, clip_high=a.clip_high,
                           kl_coef=a.kl_coef, kl_kind=a.kl_kind, aggregation=a.aggregation,
                           backend=topo.learner_backend, device=topo.device,
                           seed=cfg.trainer.seed, encoder=encoder_shape(cfg),
                           encoder_lr=cfg.model.encoder.lr,
                           cpu_threads=ln.cpu_threads)


def judge_settings(cfg: Config, topo: Topology, model_path: str,
                   host: str | None = None) -> JudgeSettings:
    """The judge actor's engine (`host`: where its HTTP server listens; None: this node's
    address, for a cluster of several machines)."""
    j = cfg.judge
    return JudgeSettings(model_path=j.model_path or model_path, served_name=j.model,
                         dtype=cfg.model.dtype, seed=cfg.trainer.seed,
                         kv_cache_gib=cfg.rollout.kv_cache_gib, device=topo.judge_device,
                         host=host)


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
    h = Handles([], [], [], groups, {}, cfg, topo, model_path,
                judge_url=cfg.judge.base_url if cfg.judge.mode == "endpoint" else None)
    for a in topo.actors:
        if a.role == "rollout":
            h.engines.append(h.new_engine(a.index))
        elif a.role == "learner":
            h.learners.append(h.new_learner(a.index))
        elif a.role == "judge":
            h.judge = h.new_judge()
    t0 = time.perf_counter()
    master = ray.get(h.learners[0].address.remote())  # rank 0's node hosts the rendezvous
    judge = [h.judge.start.remote()] if h.judge else []
    starts = ray.get([e.start.remote() for e in h.engines]
                     + [ln.start.remote(*master) for ln in h.learners] + judge)
    if h.judge:
        h.judge_url = starts[-1]["base_url"]
    # Reward workers last: a `judge` reward needs the judge server's address.
    h.rewards = [h.new_reward(a.index) for a in topo.actors if a.role == "reward"]
    ray.get([w.start.remote() for w in h.rewards])
    h.start_s["cluster_start_s"] = time.perf_counter() - t0
    roles = ["engine"] * len(h.engines) + ["learner"] * len(h.learners) + ["judge"] * len(judge)
    for role, s in zip(roles, starts, strict=True):
        h.start_s[f"{role}_start_s"] = s["start_s"]
    return h
