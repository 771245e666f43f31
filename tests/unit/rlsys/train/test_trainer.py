"""`Trainer.grpo_step` over fake actor handles (plain objects answering through a real Ray
object store): which groups are kept, how topping up asks for prompts, what the learner
receives, what the step returns. The real actors are exercised end to end in
tests/integration; here the loop's own decisions are checked exactly."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from actors.reward import RewardResult
from actors.rollout import Completion
from rlsys.config import load_config
from rlsys.train.data import Prompt
from rlsys.train.rounds import generation_seed
from rlsys.train.trainer import StepResult, Trainer

N = 4


class FakeSource:
    """Prompts p0, p1, ...; those in `flat` get the same reward for every completion."""

    def __init__(self, flat: set[int]) -> None:
        self.flat, self.position, self.asked = flat, 0, []

    def next(self, n: int) -> list[Prompt]:
        self.asked.append(n)
        out = [Prompt(f"p{i}", "entity", [100 + i, 7],
                      {"question": f"q{i}", "answer": "A", "flat": i in self.flat})
               for i in range(self.position, self.position + n)]
        self.position += n
        return out


class Handles:
    """One engine, two reward workers, two learner ranks: `.remote` answers via ray.put."""

    def __init__(self, ray) -> None:
        self.ray = ray
        self.seeds: list[int] = []
        self.trained: list[list] = []  # each rank's micro-batches, per train call
        self.synced = 0  # sync_send calls (one per rank and sync)
        put = ray.put
        self.engines = [SimpleNamespace(generate=SimpleNamespace(remote=self._generate),
                                        sync_receive=SimpleNamespace(
                                            remote=lambda wire, t: put({"bytes": 8})),
                                        busy=SimpleNamespace(remote=lambda: put(1.0)))]
        self.rewards = [SimpleNamespace(score=SimpleNamespace(remote=self._score))
                        for _ in range(2)]
        self.learners = [SimpleNamespace(train_step=SimpleNamespace(remote=self._train),
                                         sync_send=SimpleNamespace(remote=self._send))
                         for _ in range(2)]
        self.judge_url = None

    def _generate(self, ids, sampling, seed):
        assert sampling.n == N and sampling.stop_token_ids == (2,)
        self.seeds.append(seed)
        return self.ray.put([Completion(i, [10 + j], [-0.5], f"c{j}", "stop")
                             for i in range(len(ids)) for j in range(N)])

    def _score(self, texts, targets):
        # flat prompts: 1 for every completion; the others: 0, 1, 0, 1 (by completion j)
        total = [1.0 if tg["flat"] else float(int(t[1:]) % 2)
                 for t, tg in zip(texts, targets, strict=True)]
        return self.ray.put(RewardResult(total, {"accuracy": list(total)}, {"accuracy": 0},
                                         {"accuracy": 0}, 0.0))

    def _train(self, batches, tokens, sft, lr, n_seqs):
        self.trained.append(batches)
        return self.ray.put({"loss": 0.25, "grad_norm": 1.0, "skipped": 0, "tokens": 1.0,
                             "lr": 1e-4, "train_s": 0.0, "reference_s": 0.0})

    def _send(self, wire):
        self.synced += 1
        return self.ray.put({"bytes": 8})


def _trainer(ray, flat: set[int], *overrides: str) -> tuple[Trainer, Handles, FakeSource]:
    cfg = load_config(None, [f"rollout.n={N}", "rollout.prompts_per_step=3",
                             "algorithm.dynamic_sampling=true", "algorithm.max_topups=2",
                             "learner.micro_batch_size=2", *overrides])
    h, source = Handles(ray), FakeSource(flat)
    tok = SimpleNamespace(convert_tokens_to_ids=lambda t: 2, unk_token_id=None)
    t = Trainer(cfg, h, tok, source)
    t.wire = []
    return t, h, source


def _sequences(h: Handles) -> list:
    return [s for batches in h.trained for mb in batches for s in mb.sequences if s.weight]


def test_flat_groups_are_dropped_and_topped_up_until_the_batch_is_full(fake_gpu_ray) -> None:
    t, h, source = _trainer(fake_gpu_ray, flat={1, 3})
    out = t.grpo_step(step=5)
    assert isinstance(out, StepResult)
    assert source.asked == [3, 1, 1]  # p1 flat: one more (p3, flat again): one more (p4)
    assert out.prompt_ids == ["p0", "p2", "p4"]
    assert out.metrics["kept_groups"] == 3 and out.metrics["topups"] == 2
    seed = t.cfg.trainer.seed
    assert h.seeds == [generation_seed(seed, 5, r) for r in (0, 2, 4)]  # one per round
    seqs = _sequences(h)
    assert len(h.trained) == 2 and len(seqs) == 3 * N  # one call per rank, then one sync
    assert h.synced == 2
    for p in (100, 102, 104):  # each kept group: prompt ids + its token, zero-mean advantages
        group = [s for s in seqs if s.input_ids[0] == p]
        assert len(group) == N and all(s.prompt_len == 2 for s in group)
        adv = np.array([s.advantage for s in group])
        assert abs(adv.sum()) < 1e-6 and (adv > 0).sum() == 2  # rewarded j = 1, 3
    # metrics describe every rollout of the step, the flat ones too
    assert out.metrics["reward/mean"] == pytest.approx((3 * 0.5 + 2 * 1.0) / 5)
    assert out.metrics["loss"] == pytest.approx(0.25)
    assert len(out.samples) == 4 and out.samples[0]["task"] == "entity"


def test_without_dynamic_sampling_every_group_is_trained(fake_gpu_ray) -> None:
    t, h, source = _trainer(fake_gpu_ray, {1}, "algorithm.dynamic_sampling=false")
    out = t.grpo_step(step=0)
    assert source.asked == [3] and out.prompt_ids == ["p0", "p1", "p2"]
    assert out.metrics["topups"] == 0 and len(_sequences(h)) == 3 * N
    flat = [s.advantage for s in _sequences(h) if s.input_ids[0] == 101]
    assert flat == [0.0] * N  # a flat group has no advantage to learn from


def test_a_step_of_flat_groups_trains_nothing_and_says_so(fake_gpu_ray) -> None:
    t, h, source = _trainer(fake_gpu_ray, flat=set(range(100)))
    out = t.grpo_step(step=0)
    assert source.asked == [3, 3, 3]  # the topup budget (algorithm.max_topups=2) is spent
    assert out.prompt_ids == [] and out.metrics["empty_step"] == 1.0
    assert h.trained == [] and h.synced == 0


def test_resume_counters_round_trip(fake_gpu_ray) -> None:
    t, _, _ = _trainer(fake_gpu_ray, set())
    t.skipped_grad_steps, t.restarts = 3, {"rollout": 1, "reward": 2}
    t.judge_window.extend([(4.0, 1.0), (2.0, 0.0)])
    fresh, _, _ = _trainer(fake_gpu_ray, set())
    t.version = 7
    assert fresh.state() != t.state()
    fresh.restore(t.state())
    assert fresh.state() == t.state() == {"skipped_grad_steps": 3, "restarts_rollout": 1,
                                          "restarts_reward": 2,
                                          "judge_window": [[4.0, 1.0], [2.0, 0.0]],
                                          "policy_version": 7}
    fresh.restore({})  # an older checkpoint without counters: a fresh run's
    assert fresh.state()["restarts_rollout"] == 0 and not fresh.judge_window


# --- asynchronous GRPO (algorithm.max_staleness) ----------------------------------------

ASYNC = ("algorithm.dynamic_sampling=false", "trainer.steps=4")


def _trained_from(h: Handles, step: int) -> list[tuple]:
    """What the learner ranks were given from GRPO step `step` on (one call per rank)."""
    return [(tuple(s.input_ids), s.advantage) for batches in h.trained[step * len(h.learners):]
            for mb in batches for s in mb.sequences if s.weight]


def test_with_staleness_1_the_next_round_is_sampled_while_this_one_trains(fake_gpu_ray) -> None:
    """Step 0 launches the rounds of steps 0 and 1 (both by version 0); each later step's
    round is launched after the previous step's sync, by the weights it synced. Every
    batch after the first is one version old; nothing is launched past the last step."""
    t, h, source = _trainer(fake_gpu_ray, set(), "algorithm.max_staleness=1", *ASYNC)
    out = t.grpo_step(0)
    assert source.asked == [3, 3, 3] and [r.step for r in t.flights] == [1, 2]
    assert [r.version for r in t.flights] == [0, 1]
    assert out.metrics["staleness/mean"] == 0.0 and out.metrics["policy_version"] == 1.0
    for step in (1, 2, 3):
        out = t.grpo_step(step)
        assert out.metrics["staleness/mean"] == 1.0 and out.metrics["staleness/1"] == 1.0
        assert out.prompt_ids == [f"p{3 * step + i}" for i in range(3)]
    assert not t.flights and source.asked == [3] * 4 and t.version == 4
    assert h.seeds == [generation_seed(t.cfg.trainer.seed, s, 0) for s in range(4)]
    assert 0.0 <= out.metrics["idle/engine"] <= 1 and 0.0 <= out.metrics["idle/learner"] <= 1


def test_a_checkpoints_rounds_continue_the_run_as_if_uninterrupted(fake_gpu_ray) -> None:
    from rlsys.train import rounds

    whole, hw, _ = _trainer(fake_gpu_ray, set(), "algorithm.max_staleness=2", *ASYNC)
    for step in range(4):
        whole.grpo_step(step)
    cut, hc, src = _trainer(fake_gpu_ray, set(), "algorithm.max_staleness=2", *ASYNC)
    cut.grpo_step(0)
    saved = rounds.dumps(cut.rounds())  # what Run.save writes: the rounds of steps 1-3
    assert [r.step for r in rounds.loads(saved)] == [1, 2, 3]
    resumed, hr, src2 = _trainer(fake_gpu_ray, set(), "algorithm.max_staleness=2", *ASYNC)
    resumed.restore(cut.state())
    src2.position = src.position
    resumed.restore_rounds(rounds.loads(saved), step=1)
    outs = [resumed.grpo_step(step) for step in (1, 2, 3)]
    assert _trained_from(hr, 0) == _trained_from(hw, 1)  # steps 1-3: the same batches
    assert [o.metrics["staleness/mean"] for o in outs] == [1.0, 2.0, 2.0]


def test_rounds_older_than_the_bound_are_dropped_and_counted(fake_gpu_ray) -> None:
    """A run resumed with a smaller max_staleness than it saved its rounds with."""
    from rlsys.train import rounds

    old, _, src = _trainer(fake_gpu_ray, set(), "algorithm.max_staleness=2", *ASYNC)
    old.grpo_step(0)
    saved = rounds.dumps(old.rounds())
    t, h, src2 = _trainer(fake_gpu_ray, set(), "algorithm.max_staleness=0", *ASYNC)
    t.version, src2.position = 5, src.position
    t.restore_rounds(rounds.loads(saved), step=1)
    out = t.grpo_step(1)
    assert out.metrics["stale_dropped"] == 3 and out.metrics["empty_step"] == 1.0
    assert h.trained == []


def test_a_sync_that_does_not_finish_names_the_engine(fake_gpu_ray) -> None:
    """The engine never answers its sync call: the step fails within sync.timeout_s plus
    its margin, with an error naming the engine, instead of hanging."""
    import time

    from rlsys.train.trainer import SyncFailure

    @fake_gpu_ray.remote(num_cpus=0)
    def never() -> None:
        time.sleep(60)

    t, h, _ = _trainer(fake_gpu_ray, set(), "sync.timeout_s=1")
    h.engines[0].sync_receive = SimpleNamespace(remote=lambda wire, timeout: never.remote())
    t0 = time.monotonic()
    with pytest.raises(SyncFailure, match=r"rollout engine 0 did not answer"):
        t.sync()
    assert time.monotonic() - t0 < 10
