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

from actors.judge_server import JudgeServerActor, JudgeServerSettings
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
    judge_server: object | None = None  # JudgeServerActor handle (judge_server.mode: actor)
    judge_url: str | None = None  # where the `judge` reward sends its requests

    def _opts(self, role: str, index: int) -> dict:
        a = next(a for a in self.topo.actors if a.role == role and a.index == index)
        return {"num_cpus": a.cpus, "num_gpus": a.gpus,
                "scheduling_strategy": _in(self.groups[a.group], a.bundle)}

    def settings(self, role: str) -> EngineSettings | LearnerSettings | JudgeServerSettings:
        """What `role`'s actors are built from: the config's sections, and the device,
        dtype and backend the topology decided."""
        t = self.topo
        if role == "rollout":
            return EngineSettings.from_config(self.cfg, self.model_path, t.device, t.dtype)
        if role == "learner":
            return LearnerSettings.from_config(self.cfg, self.model_path, t.device, t.dtype,
                                               t.learner_backend)
        return JudgeServerSettings.from_config(self.cfg, self.model_path,
                                               t.judge_server_device, t.judge_server_dtype,
                                               _judge_host())

    def new_engine(self, index: int):
        return RolloutActor.options(**self._opts("rollout", index)).remote(
            self.settings("rollout"))

    def new_learner(self, index: int):
        n = sum(1 for a in self.topo.actors if a.role == "learner")
        return LearnerActor.options(**self._opts("learner", index)).remote(
            self.settings("learner"), index, n)

    def new_reward(self, index: int):
        return RewardActor.options(**self._opts("reward", index)).remote(
            self.cfg.reward_specs(self.judge_url), self.cfg.reward.timeout_s)

    def new_judge_server(self):
        return JudgeServerActor.options(**self._opts("judge_server", 0)).remote(
            self.settings("judge_server"))

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
        judge = [self.judge_server] if self.judge_server is not None else []
        for h in self.engines + self.learners + self.rewards + judge:
            ray.kill(h, no_restart=True)
        for pg in self.groups.values():
            remove_placement_group(pg)


START_TIMEOUT_S = 900.0  # a rebuilt actor that is not up by then is not coming


def cluster_gpus() -> bool:
    """Whether the connected Ray cluster declares GPUs (what `plan_topology` decides the
    device from when `rollout.device` is auto)."""
    return bool(ray.cluster_resources().get("GPU"))


def _judge_host() -> str | None:
    """Where the judge server listens: loopback when every node of the cluster is on this
    machine, else (None) the judge's node address, which the reward workers can reach."""
    one = len({n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}) == 1
    return "127.0.0.1" if one else None


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
    j = cfg.judge_server
    h = Handles([], [], [], groups, {}, cfg, topo, model_path,
                judge_url=j.base_url if j.mode == "endpoint" else None)
    for a in topo.actors:
        if a.role == "rollout":
            h.engines.append(h.new_engine(a.index))
        elif a.role == "learner":
            h.learners.append(h.new_learner(a.index))
        elif a.role == "judge_server":
            h.judge_server = h.new_judge_server()
    t0 = time.perf_counter()
    master = ray.get(h.learners[0].address.remote())  # rank 0's node hosts the rendezvous
    judge = [h.judge_server.start.remote()] if h.judge_server else []
    starts = ray.get([e.start.remote() for e in h.engines]
                     + [ln.start.remote(*master) for ln in h.learners] + judge)
    if h.judge_server:
        h.judge_url = starts[-1]["base_url"]
    # Reward workers last: a `judge` reward needs the judge server's address.
    h.rewards = [h.new_reward(a.index) for a in topo.actors if a.role == "reward"]
    ray.get([w.start.remote() for w in h.rewards])
    h.start_s["cluster_start_s"] = time.perf_counter() - t0
    roles = (["engine"] * len(h.engines) + ["learner"] * len(h.learners)
             + ["judge_server"] * len(judge))
    for role, s in zip(roles, starts, strict=True):
        h.start_s[f"{role}_start_s"] = s["start_s"]
    return h
