"""Device and backends are decided once, in `plan_topology`, from what the cluster declares,
and every actor's settings follow: on a cluster with GPUs and the default `auto` device,
nothing falls back to cpu or gloo (the latent bug: the engines' settings and the weight
sync re-derived the device from the raw config and got cpu/gloo)."""

from __future__ import annotations

from types import SimpleNamespace

from rlsys.config import ServeConfig, load_config
from rlsys.train.cluster import Handles, cluster_gpus
from rlsys.train.topology import plan_topology
from rlsys.train.trainer import Trainer

GPU_RUN = ["rollout.device=auto", "rollout.engines=2", "rollout.tensor_parallel=2",
           "learner.workers=2", "learner.gpus_per_worker=1", "judge_server.mode=actor",
           "judge_server.gpus=1"]


class _Recorder:
    """An actor handle that records its `sync_init` calls and answers through Ray."""

    def __init__(self, ray, calls: list) -> None:
        self.ray, self.calls = ray, calls
        self.sync_init = SimpleNamespace(remote=self._sync_init)
        self.address = SimpleNamespace(remote=lambda: ray.put(("127.0.0.1", 29500)))
        self.sync_plan = SimpleNamespace(remote=lambda mb: ray.put([]))

    def _sync_init(self, *args):
        self.calls.append(args)
        return self.ray.put(0)


def test_a_cluster_that_declares_gpus_gets_cuda_and_nccl_everywhere(fake_gpu_ray) -> None:
    cfg = load_config(None, GPU_RUN)
    assert cfg.rollout.device == "auto" and cfg.learner.backend == cfg.sync.backend == "auto"
    assert cluster_gpus()  # what `strl train` asks the cluster
    topo = plan_topology(cfg, cuda_available=cluster_gpus())
    assert topo.device == "cuda" and topo.judge_server_device == "cuda"
    assert topo.learner_backend == "nccl" and topo.sync_backend == "nccl"
    assert "backends: learner nccl, weight sync nccl; judge server on cuda" in topo.table()
    rollout_groups = [g for g in topo.groups if g.name.startswith("rollout")]
    assert [b.gpus for g in rollout_groups for b in g.bundles] == [1.0] * 4

    h = Handles([], [], [], {}, {}, cfg, topo, "m")
    assert h.settings("rollout").device == "cuda"
    ln = h.settings("learner")
    assert (ln.device, ln.backend) == ("cuda", "nccl")
    assert h.settings("judge_server").device == "cuda"

    # the weight sync: learner rank 0 and every engine worker join with nccl
    calls: list = []
    sent: list = []
    handles = SimpleNamespace(engines=[_Recorder(fake_gpu_ray, calls) for _ in range(2)],
                              learners=[_Recorder(fake_gpu_ray, sent) for _ in range(2)],
                              topo=topo)
    tok = SimpleNamespace(convert_tokens_to_ids=lambda t: 2, unk_token_id=None)
    Trainer(cfg, handles, tok, source=None).sync_init()
    assert [c[4] for c in calls] == ["nccl", "nccl"]  # (host, port, rank, world, backend, ..)
    assert [c[2] for c in calls] == [1, 3] and {c[3] for c in calls} == {5}  # tp=2 ranks
    assert [c[3] for c in sent] == ["nccl", "nccl"]  # learner (host, port, world, backend, ..)

    served = ServeConfig(checkpoint="m", replicas={"gpus": 1})
    assert served.device == "cuda"  # what each replica's engine runs on (ModelServer)


def test_the_same_config_without_gpus_is_cpu_and_gloo_everywhere() -> None:
    cfg = load_config(None, ["rollout.device=auto", "judge_server.mode=actor"])
    topo = plan_topology(cfg, cuda_available=False)
    assert (topo.device, topo.learner_backend, topo.sync_backend, topo.judge_server_device) == \
        ("cpu", "gloo", "gloo", "cpu")
    h = Handles([], [], [], {}, {}, cfg, topo, "m")
    assert h.settings("rollout").device == "cpu"
    assert h.settings("learner").backend == "gloo"
    assert ServeConfig(checkpoint="m").device == "cpu"


def test_an_explicit_backend_wins_over_auto_and_both_ends_of_the_sync_use_it(
        fake_gpu_ray) -> None:
    cfg = load_config(None, ["rollout.device=cuda", "learner.gpus_per_worker=1",
                             "sync.backend=gloo"])
    topo = plan_topology(cfg)
    assert (topo.device, topo.learner_backend, topo.sync_backend) == ("cuda", "nccl", "gloo")
    engines: list = []
    learners: list = []
    handles = SimpleNamespace(engines=[_Recorder(fake_gpu_ray, engines)],
                              learners=[_Recorder(fake_gpu_ray, learners)], topo=topo)
    tok = SimpleNamespace(convert_tokens_to_ids=lambda t: 2, unk_token_id=None)
    Trainer(cfg, handles, tok, source=None).sync_init()
    assert engines[0][4] == learners[0][3] == "gloo"  # not the learner group's nccl


def test_dtype_auto_is_bf16_on_gpus_and_on_cpus_that_compute_it_else_float32(
        tmp_path, monkeypatch) -> None:
    from rlsys.model import engine
    from rlsys.train import topology

    avx2, amx = tmp_path / "avx2", tmp_path / "amx"
    avx2.write_text("flags\t\t: fpu sse2 avx avx2 fma\n")
    amx.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16\n")
    assert not engine.cpu_computes_bf16(avx2) and engine.cpu_computes_bf16(amx)
    assert not engine.cpu_computes_bf16(tmp_path / "missing")  # not Linux: no /proc

    cfg = load_config(None, ["rollout.device=auto", "judge_server.mode=actor"])
    assert cfg.model.dtype == "auto"
    for native, want in ((False, "float32"), (True, "bfloat16")):
        monkeypatch.setattr(topology, "cpu_computes_bf16", lambda n=native: n)
        topo = plan_topology(cfg, cuda_available=False)
        assert (topo.dtype, topo.judge_server_dtype) == (want, want)
        assert f"dtype {want}" in topo.table()
        h = Handles([], [], [], {}, {}, cfg, topo, "m")
        assert h.settings("rollout").dtype == h.settings("learner").dtype == want
    monkeypatch.setattr(topology, "cpu_computes_bf16", lambda: False)
    assert plan_topology(cfg, cuda_available=True).dtype == "bfloat16"  # GPUs: bf16
    pinned = load_config(None, ["model.dtype=float16"])
    assert plan_topology(pinned, cuda_available=True).dtype == "float16"  # explicit wins
