"""Weight-sync protocol: bucket plans, packing, and a real gloo broadcast between processes."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest
import torch

from rlsys.weightsync import (
    SyncError,
    SyncPlan,
    connect,
    flat_copy,
    free_port,
    pack,
    plan_buckets,
    plan_for,
    unpack,
)


def _state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    emb = torch.randn(50, 8, dtype=torch.bfloat16)
    return {"embed.weight": emb, "l0.w": torch.randn(8, 8, dtype=torch.bfloat16),
            "l0.norm": torch.randn(8), "lm_head.weight": emb}  # tied: same storage


def test_plan_groups_by_dtype_and_respects_bucket_size() -> None:
    state = _state()
    plan = plan_for(state, bucket_mb=0.001)  # ~1 KB buckets: the 800-byte tensors split
    assert plan.names == ["embed.weight", "l0.w", "lm_head.weight", "l0.norm"]
    assert {b.dtype for b in plan.buckets} == {"bfloat16", "float32"}
    assert all(b.nbytes <= 1049 or len(b.tensors) == 1 for b in plan.buckets)
    assert plan.nbytes == sum(v.numel() * v.element_size() for v in state.values())
    one = plan_for(state, bucket_mb=64)
    assert len(one.buckets) == 2  # one per dtype


def test_tied_weights_travel_under_both_names() -> None:
    assert "lm_head.weight" in plan_for(_state(), 64).names


def test_pack_unpack_round_trip_and_wire_format() -> None:
    state = _state()
    plan = SyncPlan.from_wire(plan_for(state, 0.002).to_wire())
    for b in plan.buckets:
        for name, t in unpack(b, pack(b, state)):
            assert torch.equal(t, state[name])
    with pytest.raises(SyncError, match="shape"):
        pack(plan.buckets[0], {**state, "embed.weight": torch.zeros(3, dtype=torch.bfloat16)})


def test_plan_buckets_keeps_order_within_a_dtype() -> None:
    specs = [(f"t{i}", (10,), torch.float32) for i in range(10)]
    plan = plan_buckets(specs, bucket_mb=100 / 2**20)  # 100 bytes: 2 tensors per bucket
    assert [len(b.tensors) for b in plan.buckets] == [2] * 5
    assert plan.names == [f"t{i}" for i in range(10)]


def _flat_state() -> dict[str, torch.Tensor]:
    """Like ZeRO-1/2's flat groups: parameters are views back to back in one buffer; the
    tied head comes last and points back at the embedding."""
    torch.manual_seed(0)
    flat = torch.randn(400 + 64 * 4, dtype=torch.bfloat16)
    state = {"embed.weight": flat[:400].view(50, 8)}
    for i in range(4):
        state[f"l{i}.w"] = flat[400 + 64 * i : 400 + 64 * (i + 1)].view(8, 8)
    state["lm_head.weight"] = state["embed.weight"]
    return state


def test_tensors_back_to_back_in_memory_are_sent_as_views_without_packing() -> None:
    state = _flat_state()
    plan = plan_for(state, bucket_mb=300 * 2 / 2**20)  # 300 elements: the run splits
    runs = [b for b in plan.buckets if len(b.tensors) > 1]
    assert [t.name for t in runs[0].tensors] == ["l0.w", "l1.w", "l2.w", "l3.w"][:len(
        runs[0].tensors)]
    assert sum(len(b.tensors) for b in plan.buckets) == len(state)
    assert all(b.nbytes <= 600 or len(b.tensors) == 1 for b in plan.buckets)
    for b in plan.buckets:
        buf = pack(b, state)
        if len(b.tensors) > 1 or b.nbytes >= 2**20:  # runs and solo tensors: no copy
            assert buf.data_ptr() == state[b.tensors[0].name].data_ptr()
        for name, t in unpack(b, buf):
            assert torch.equal(t, state[name])
    # one run for embedding and layers; the tied head points back, so it is not adjacent
    one = plan_for(state, bucket_mb=64)
    assert [[t.name for t in b.tensors] for b in one.buckets] == [
        ["embed.weight", "l0.w", "l1.w", "l2.w", "l3.w"], ["lm_head.weight"]]


def test_pack_copies_when_memory_no_longer_matches_the_plan() -> None:
    plan = plan_for(_flat_state(), 64)
    moved = {k: v.clone() for k, v in _flat_state().items()}  # same values, scattered
    assert any(len(b.tensors) > 1 for b in plan.buckets)
    for b in plan.buckets:
        buf = pack(b, moved)
        if len(b.tensors) > 1:
            assert all(buf.data_ptr() != v.data_ptr() for v in moved.values())
        for name, t in unpack(b, buf):
            assert torch.equal(t, moved[name])


def test_flat_copy_lays_tensors_back_to_back_per_dtype() -> None:
    state = _state()
    flat = flat_copy(state)
    assert list(flat) == list(state)
    for k in state:
        assert torch.equal(flat[k], state[k]) and flat[k].data_ptr() != state[k].data_ptr()
    bf16 = [v for v in flat.values() if v.dtype == torch.bfloat16]
    for a, b in zip(bf16, bf16[1:], strict=False):
        assert b.data_ptr() == a.data_ptr() + a.numel() * a.element_size()
    # plan order embed, l0.w, l0.norm (float32), lm_head: the float32 tensor ends the run
    runs = [b for b in plan_for(flat, 64).buckets if len(b.tensors) > 1]
    assert [[t.name for t in b.tensors] for b in runs] == [["embed.weight", "l0.w"]]
    assert pack(runs[0], flat).data_ptr() == flat["embed.weight"].data_ptr()


def _receiver(port: int, wire: list, q) -> None:
    grp = connect("127.0.0.1", port, 1, 2, "gloo", 30.0)
    q.put({k: v.clone() for k, v in grp.receive(SyncPlan.from_wire(wire))})


@pytest.mark.parametrize("layout", ["scattered", "flat"])
def test_gloo_broadcast_delivers_every_tensor_to_another_process(layout: str) -> None:
    state = _state() if layout == "scattered" else _flat_state()
    plan = plan_for(state, 0.001)
    port = free_port("127.0.0.1")
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_receiver, args=(port, plan.to_wire(), q))
    proc.start()
    sender = connect("127.0.0.1", port, 0, 2, "gloo", 30.0)
    assert sender.send(plan, state) == plan.nbytes
    got = q.get(timeout=60)
    proc.join(timeout=30)
    assert set(got) == set(state)
    for k in state:
        assert torch.equal(got[k], state[k])


def test_a_missing_peer_fails_with_a_timeout_error_not_a_hang() -> None:
    # world of 2 but nobody else joins: the broadcast must give up after its timeout
    t0 = time.perf_counter()
    with pytest.raises(SyncError, match="did not form within 2s|timeout"):
        grp = connect("127.0.0.1", free_port("127.0.0.1"), 0, 2, "gloo", 2.0)
        grp.send(plan_for(_state(), 64), _state())
    assert time.perf_counter() - t0 < 30
