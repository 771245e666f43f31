"""The distributed topology, decided in one place: which actors, how many, with what
resources, in which placement-group bundles, and (for declared node shapes) on which node.

`plan_topology(cfg)` is pure: `strl plan` prints it without starting anything, and
`strl train` builds Ray placement groups and actors from the very same plan.

- rollout: one placement group per engine, STRICT_PACK, one bundle per tensor-parallel
  rank (a GPU each on CUDA; the engine actor sits in bundle 0);
- learner: one placement group, PACK (all ranks on one node when they fit, so NCCL stays
  on NVLink), one bundle per DeepSpeed rank;
- reward: one placement group, SPREAD, one bundle per worker;
- judge_server (with `judge_server.mode: actor`): one placement group, STRICT_PACK, one bundle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rlsys.config import Config, NodeSpec
from rlsys.model.engine import cpu_computes_bf16

NODE_RESOURCE_SHARE = 0.001  # of a node-marking resource, per bundle: any number fit


@dataclass(frozen=True)
class Bundle:
    cpus: float
    gpus: float = 0.0
    node_resource: str | None = None  # only nodes that have this custom resource

    def as_ray(self) -> dict[str, float]:
        out = {"CPU": self.cpus}
        if self.gpus:
            out["GPU"] = self.gpus
        if self.node_resource:
            out[self.node_resource] = NODE_RESOURCE_SHARE
        return out


@dataclass
class GroupPlan:
    name: str
    strategy: str  # STRICT_PACK | PACK | SPREAD
    bundles: list[Bundle]
    nodes: list[int | None] = field(default_factory=list)  # node of each bundle, if known


@dataclass(frozen=True)
class ActorPlan:
    role: str  # rollout | learner | reward | judge_server
    index: int
    group: str
    bundle: int
    cpus: float
    gpus: float


@dataclass
class Topology:
    """The plan, with every device and backend decision of the run taken here, once:
    actors and settings builders read these fields, never the raw config."""

    device: str  # cpu | cuda: rollout engines and learner ranks
    dtype: str  # the policy's parameter dtype in the learner ranks and the engines
    groups: list[GroupPlan]
    actors: list[ActorPlan]
    learner_backend: str = "gloo"  # the DeepSpeed group's torch.distributed backend
    sync_backend: str = "gloo"  # the weight-sync group's (learner rank 0 + engine workers)
    judge_server_device: str = "cpu"  # the judge actor's engine (judge_server.mode: actor)
    judge_server_dtype: str = "float32"  # its dtype (model.dtype, resolved for its device)

    @property
    def total_cpus(self) -> float:
        return sum(b.cpus for g in self.groups for b in g.bundles)

    @property
    def total_gpus(self) -> float:
        return sum(b.gpus for g in self.groups for b in g.bundles)

    def group(self, name: str) -> GroupPlan:
        return next(g for g in self.groups if g.name == name)

    def table(self) -> str:
        lines = [f"device: {self.device}, dtype {self.dtype}; total {self.total_cpus:g} CPUs, "
                 f"{self.total_gpus:g} GPUs in {len(self.groups)} placement groups",
                 f"backends: learner {self.learner_backend}, weight sync {self.sync_backend}"
                 + (f"; judge server on {self.judge_server_device}"
                    if any(a.role == "judge_server" for a in self.actors) else ""), "",
                 "actor        group       strategy     bundle  resources          node",
                 "-----------  ----------  -----------  ------  -----------------  ----"]
        for a in self.actors:
            g = self.group(a.group)
            node = g.nodes[a.bundle] if g.nodes else None
            res = f"{a.cpus:g} CPU" + (f", {a.gpus:g} GPU" if a.gpus else "")
            marker = g.bundles[a.bundle].node_resource
            where = (node if node is not None else f"nodes with {marker}" if marker
                     else "Ray decides")
            lines.append(f"{a.role + '-' + str(a.index):<11}  {a.group:<10}  {g.strategy:<11}  "
                         f"{a.bundle:<6}  {res:<17}  {where}")
        extra = [(g, i) for g in self.groups if g.name.startswith("rollout")
                 for i in range(1, len(g.bundles))]
        for g, i in extra:
            node = g.nodes[i] if g.nodes else None
            lines.append(f"{'(tp rank ' + str(i) + ')':<11}  {g.name:<10}  {g.strategy:<11}  "
                         f"{i:<6}  {g.bundles[i].gpus:g} GPU{'':<11}  "
                         f"{'Ray decides' if node is None else node}")
        return "\n".join(lines)


class PlacementError(ValueError):
    """The requested actors do not fit on the declared nodes."""


def plan_topology(cfg: Config, cuda_available: bool = False) -> Topology:
    """The actors and placement groups a run needs (and where they land, if nodes are
    declared in `cluster.nodes`)."""
    r, ln, rw = cfg.rollout, cfg.learner, cfg.reward
    declared_gpus = sum(n.gpus for n in cfg.cluster.nodes)
    device = r.device if r.device != "auto" else (
        "cuda" if (cuda_available or declared_gpus) else "cpu")
    if device == "cpu" and r.tensor_parallel != 1:
        raise PlacementError("rollout.tensor_parallel must be 1 on CPU engines")
    if device == "cpu" and ln.gpus_per_worker:
        raise PlacementError("learner.gpus_per_worker must be 0 when rollouts run on CPU")
    groups: list[GroupPlan] = []
    actors: list[ActorPlan] = []
    for e in range(r.engines):
        if device == "cuda":
            per = r.cpus_per_engine / r.tensor_parallel
            bundles = [Bundle(per, 1.0, r.node_resource) for _ in range(r.tensor_parallel)]
        else:
            bundles = [Bundle(r.cpus_per_engine, 0.0, r.node_resource)]
        groups.append(GroupPlan(f"rollout-{e}", "STRICT_PACK", bundles))
        actors.append(ActorPlan("rollout", e, f"rollout-{e}", 0, bundles[0].cpus,
                                bundles[0].gpus))
    groups.append(GroupPlan("learner", "PACK",
                            [Bundle(ln.cpus_per_worker, ln.gpus_per_worker,
                                    ln.node_resource)] * ln.workers))
    actors += [ActorPlan("learner", i, "learner", i, ln.cpus_per_worker, ln.gpus_per_worker)
               for i in range(ln.workers)]
    groups.append(GroupPlan("reward", "SPREAD", [Bundle(rw.cpus_per_worker)] * rw.workers))
    actors += [ActorPlan("reward", i, "reward", i, rw.cpus_per_worker, 0.0)
               for i in range(rw.workers)]
    if cfg.judge_server.mode == "actor":
        j = cfg.judge_server
        groups.append(GroupPlan("judge_server", "STRICT_PACK", [Bundle(j.cpus, j.gpus)]))
        actors.append(ActorPlan("judge_server", 0, "judge_server", 0, j.cpus, j.gpus))
    judge_device = "cuda" if cfg.judge_server.gpus else "cpu"
    topo = Topology(device, _dtype(cfg.model.dtype, device), groups, actors,
                    learner_backend=_backend(ln.backend, device),
                    sync_backend=_backend(cfg.sync.backend, device),
                    judge_server_device=judge_device,
                    judge_server_dtype=_dtype(cfg.model.dtype, judge_device))
    if cfg.cluster.nodes:
        _place(topo, cfg.cluster.nodes)
    return topo


def _dtype(configured: str, device: str) -> str:
    """The policy's dtype: as configured, or (auto) bfloat16 on cuda and on a CPU that
    computes it natively, float32 on any other CPU (judged by this machine's CPU: the
    driver's, which on a CPU cluster is assumed to be the nodes' kind)."""
    if configured != "auto":
        return configured
    return "bfloat16" if device == "cuda" or cpu_computes_bf16() else "float32"


def _backend(configured: str, device: str) -> str:
    """A process group's backend: as configured, or (auto) nccl on cuda, gloo on cpu."""
    return configured if configured != "auto" else ("nccl" if device == "cuda" else "gloo")


def _place(topo: Topology, nodes: list[NodeSpec]) -> None:
    """First-fit placement of every group's bundles on the declared nodes."""
    free = [[n.cpus, float(n.gpus)] for n in nodes]

    def fits(i: int, b: Bundle) -> bool:
        return free[i][0] + 1e-9 >= b.cpus and free[i][1] + 1e-9 >= b.gpus

    def take(i: int, b: Bundle) -> int:
        free[i][0] -= b.cpus
        free[i][1] -= b.gpus
        return i

    # Big GPU groups first, as Ray's scheduler would struggle most with them.
    for g in sorted(topo.groups, key=lambda g: -sum(b.gpus for b in g.bundles)):
        need_cpu = sum(b.cpus for b in g.bundles)
        need_gpu = sum(b.gpus for b in g.bundles)
        one = next((i for i in range(len(nodes))
                    if free[i][0] + 1e-9 >= need_cpu and free[i][1] + 1e-9 >= need_gpu), None)
        if g.strategy in ("STRICT_PACK", "PACK") and one is not None:
            g.nodes = [take(one, b) for b in g.bundles]
            continue
        if g.strategy == "STRICT_PACK":
            raise PlacementError(
                f"placement group '{g.name}' needs {need_cpu:g} CPUs and {need_gpu:g} GPUs on "
                f"one node; no declared node has that much left ({_free_text(free)})")
        placed: list[int | None] = []
        start = 0
        for b in g.bundles:
            order = list(range(start, len(nodes))) + list(range(start))
            i = next((i for i in order if fits(i, b)), None)
            if i is None:
                raise PlacementError(
                    f"placement group '{g.name}': a bundle of {b.cpus:g} CPU, {b.gpus:g} GPU "
                    f"does not fit on the declared nodes ({_free_text(free)})")
            placed.append(take(i, b))
            if g.strategy == "SPREAD":
                start = (i + 1) % len(nodes)
        g.nodes = placed


def _free_text(free: list[list[float]]) -> str:
    return "; ".join(f"node {i}: {c:g} CPU, {g:g} GPU free" for i, (c, g) in enumerate(free))
