"""A learner's optimizer can start afresh between stages (`algorithm.fresh_optimizer`):
DeepSpeed's ZeRO optimizer on CPU, its moments and step count cleared, training going on."""

from __future__ import annotations

import pytest

from actors.learner import LearnerSettings, LearnerWorker, MicroBatch, Sequence
from rlsys.config import load_config
from rlsys.model.build import build_model

pytestmark = pytest.mark.slow


def test_reset_optimizer_clears_the_moments_and_training_goes_on(tmp_path) -> None:
    model = build_model(tmp_path / "m", "tiny", seed=0, corpus_size=200, progress=False)
    cfg = load_config(None, ["model.dtype=float32", "model.series=inline",
                             "algorithm.kl_coef=0", "learner.zero_stage=2"])
    w = LearnerWorker(LearnerSettings.from_config(cfg, str(model), "cpu", "float32", "gloo"),
                      0, 1)
    w.start(*w.address())
    seqs = [Sequence(list(range(5, 25)), 10, [-1.0] * 10, adv) for adv in (1.0, -1.0)]
    for _ in range(2):
        assert w.train_step([MicroBatch(seqs)], 20)["skipped"] == 0.0
    assert w.optimizer_steps() == 2
    w.reset_optimizer()
    assert w.optimizer_steps() == 0
    inner = w.engine.optimizer.optimizer
    assert not inner.state
    m = w.train_step([MicroBatch(seqs)], 20)
    assert m["skipped"] == 0.0 and m["grad_norm"] > 0 and w.optimizer_steps() == 1
