"""Methods that run inside every vLLM worker process (`worker_extension_cls`).

The rollout actor reaches them with `llm.collective_rpc("strl_...")`. They join the
dedicated weight-sync group and stream received buckets into vLLM's own
`reload_weights`, the in-place loader that works after start-up (a later
`model.load_weights` fails on CPU: `Parameter has no attribute weight_loader`).
"""

from __future__ import annotations

import torch

from rlsys.model.series import SYNC_PREFIX
from rlsys.weightsync import SyncGroup, SyncPlan, connect


class WeightSyncExtension:
    """Mixed into vLLM's worker class; `self` is the worker."""

    _strl_group: SyncGroup | None = None

    def _strl_device(self) -> torch.device:
        return next(self.model_runner.get_model().parameters()).device

    def strl_sync_init(self, host: str, port: int, rank_offset: int, world: int,
                       backend: str, timeout_s: float) -> int:
        """Join the sync group as rank `rank_offset + this worker's rank`."""
        rank = rank_offset + int(self.rank)
        device = self._strl_device()
        self._strl_group = connect(host, port, rank, world, backend, timeout_s,
                                   device if device.type == "cuda" else None)
        return rank

    def strl_sync_receive(self, wire: list) -> dict:
        """Receive all buckets of a plan (`SyncPlan.to_wire()`) into the model; returns the
        bytes received and the time-series encoder's tensors (names after `SYNC_PREFIX`,
        on the CPU; empty for a model that reads series inline), which the engine actor
        loads into its own encoder: vLLM runs the language model only."""
        if self._strl_group is None:
            raise RuntimeError("strl_sync_init must run before strl_sync_receive")
        plan = SyncPlan.from_wire(wire)
        encoder: dict[str, torch.Tensor] = {}

        def language_model(weights):
            for name, t in weights:
                if name.startswith(SYNC_PREFIX):
                    encoder[name[len(SYNC_PREFIX):]] = t.detach().to("cpu", copy=True)
                else:
                    yield name, t

        weights = self._strl_group.receive(plan, self._strl_device())
        self.model_runner.reload_weights(weights_iterator=language_model(weights))
        return {"bytes": plan.nbytes, "encoder": encoder}

    def strl_reseed(self, seed: int) -> int:
        """Seed the worker's default torch generator, which vLLM samples from for requests
        without a seed of their own: the next generation is a function of (weights,
        prompts, seed), so a resumed run samples what the uninterrupted run sampled."""
        torch.manual_seed(int(seed))
        return int(seed)

    def strl_param_sums(self) -> dict[str, float]:
        """Sum of every parameter (float64): a cheap fingerprint for tests."""
        return {k: float(v.detach().double().sum())
                for k, v in self.model_runner.get_model().named_parameters()}
