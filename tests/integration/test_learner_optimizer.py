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
    inner = w._adamw
    assert not inner.state
    m = w.train_step([MicroBatch(seqs)], 20)
    assert m["skipped"] == 0.0 and m["grad_norm"] > 0 and w.optimizer_steps() == 1


def test_the_onset_fit_trains_the_encoder_head_alone_then_sft_keeps_it_in_the_loss(
        tmp_path) -> None:
    """`fit_onset` (before ST-Align) steps DeepSpeed's optimizer on the onset loss alone:
    the head's loss falls, the language model does not move and its AdamW state is left
    fresh (no step count without moments); a supervised step then reports the onset loss
    beside its own."""
    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from envs.detect import departures
    from envs.prompt import PLACEHOLDER
    from rlsys.model.series import series_ids

    model = build_model(tmp_path / "m", "tiny", seed=0, corpus_size=200, progress=False)
    cfg = load_config(None, ["model.dtype=float32", "model.series=encoder",
                             "algorithm.kl_coef=0", "learner.zero_stage=2",
                             "learner.weight_decay=0"])
    w = LearnerWorker(LearnerSettings.from_config(cfg, str(model), "cpu", "float32", "gloo"),
                      0, 1)
    w.start(*w.address())
    rng = np.random.default_rng(0)

    def series(n: int) -> list[list[float]]:
        out = []
        for _ in range(n):
            x = 100 + rng.normal(0, 1, 36)
            x[int(rng.integers(14, 30)):] += 30
            out.append(x.round().tolist())
        return out

    assert all(departures(np.array(s)[None]).onset[0] >= 0 for s in series(8))
    lm = {k: v.clone() for k, v in w.engine.module.lm.state_dict().items()}
    m = w.fit_onset([series(8) for _ in range(60)], 1e-2)
    assert m["onset_loss_last"] < 0.5 * m["onset_loss_first"]
    assert all(torch.equal(v, lm[k]) for k, v in w.engine.module.lm.state_dict().items())
    inner = w._adamw  # the LM's AdamW starts afresh, the head's goes on
    lm_group, head_group = inner.param_groups
    assert not any(p in inner.state for p in lm_group["params"]) and "step" not in lm_group
    assert w.optimizer_steps() == 60 and all(p in inner.state for p in head_group["params"])
    s = series(1)[0]
    tok = AutoTokenizer.from_pretrained(model)
    ids = series_ids(tok, f"Node 0: {PLACEHOLDER}. When?", [s], cfg.model.encoder.patch)
    seqs = [Sequence(ids + list(range(5, 15)), len(ids), series=[s])]
    out = w.train_step([MicroBatch(seqs)], 10, sft=True, lr=1e-3, num_seqs_total=1)
    assert out["skipped"] == 0.0 and 0 < out["onset_loss"] < m["onset_loss_first"]
