"""Weight sync protocol: learner rank 0 broadcasts the policy to every rollout engine.

A dedicated process group joins the sender (rank 0) and every vLLM worker (ranks 1..W):
a `TCPStore` hosted by the sender, a `PrefixStore`, and `ProcessGroupGloo` on CPU or
`ProcessGroupNCCL` between GPUs. It touches no default process group, so it coexists with
DeepSpeed's own group and with vLLM's.

Weights travel in buckets: tensors of one dtype are packed into one flat buffer of about
`bucket_mb`, one broadcast per buffer (a collective per tensor costs ~latency x #tensors;
STACK.md measured gloo at 0.9 GB/s for 4 MB but 3.0 GB/s for 256 MB). The plan (names,
shapes, dtypes, offsets) goes ahead as a small control message, so receivers allocate
exactly and unpack into named views that stream into vLLM's `reload_weights`.

Every collective has a timeout: a dead peer fails the sync with an error naming the
timeout, instead of hanging the run.

Tied embeddings: the plan is built from the model's `state_dict()`, which lists
`lm_head.weight` even when it shares storage with the input embedding. vLLM must receive
it explicitly or it silently keeps the old head (STACK.md).
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


def plan_buckets(tensors: Iterable[tuple[str, torch.Size | tuple[int, ...], torch.dtype]],
                 bucket_mb: float, solo_mb: float = SOLO_MB) -> SyncPlan:
    """Group small tensors (in the given order) into per-dtype buckets of about
    `bucket_mb`; tensors of `solo_mb` or more travel alone (no copy on either side)."""
    limit = max(1, int(bucket_mb * 2**20))
    solo = max(1, int(min(solo_mb, bucket_mb) * 2**20))
    buckets: list[BucketSpec] = []
    open_: dict[str, list[TensorSpec]] = {}
    size: dict[str, int] = {}

    def close(dt: str) -> None:
        if open_.get(dt):
            buckets.append(BucketSpec(dt, size[dt], tuple(open_[dt])))
        open_[dt], size[dt] = [], 0

    for name, shape, dtype in tensors:
        dt = str(dtype).removeprefix("torch.")
        numel = int(torch.Size(shape).numel())
        nbytes = numel * dtype.itemsize
        if nbytes >= solo:
            buckets.append(BucketSpec(dt, numel, (TensorSpec(name, tuple(shape), 0, numel),)))
            continue
        if dt in size and size[dt] and (size[dt] * dtype.itemsize + nbytes) > limit:
            close(dt)
        open_.setdefault(dt, [])
        size.setdefault(dt, 0)
        open_[dt].append(TensorSpec(name, tuple(shape), size[dt], numel))
        size[dt] += numel
    for dt in list(open_):
        close(dt)
    return SyncPlan(tuple(buckets))


def plan_for(state: Mapping[str, torch.Tensor], bucket_mb: float) -> SyncPlan:
    """The plan for a state dict (tied weights included under each of their names)."""
    return plan_buckets(((k, v.shape, v.dtype) for k, v in state.items()), bucket_mb)


def pack(bucket: BucketSpec, tensors: Mapping[str, torch.Tensor],
         device: torch.device | str = "cpu", out: torch.Tensor | None = None) -> torch.Tensor:
    """One flat buffer holding the bucket's tensors at their offsets (a single contiguous
    tensor of the right dtype and device is used as it is, without a copy)."""
    if len(bucket.tensors) == 1:
        src = tensors[bucket.tensors[0].name]
        if (src.is_contiguous() and str(src.dtype).removeprefix("torch.") == bucket.dtype
                and src.device == torch.device(device)
                and tuple(src.shape) == bucket.tensors[0].shape):
            return src.reshape(-1)
    buf = out if out is not None else torch.empty(bucket.numel, dtype=_dtype(bucket.dtype),
                                                  device=device)
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
            buf = pack(bucket, tensors, device,
                       out=None if len(bucket.tensors) == 1 else
                       self.buffer(i, bucket.numel, bucket.dtype, device))
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
