"""Chat templating and stop ids: how a question becomes the token ids every path sends.

Training (`rlsys.train.data`), evaluation, serving and the benchmarks all build prompts
here, so the policy sees the same ids wherever it answers. The turn ends at `<|im_end|>`,
the token the chat template closes every message with: `stop_ids` is the one place that
looks it up.
"""

from __future__ import annotations

from typing import Any

from envs.prompt import FORMAT_INSTRUCTION

END_OF_TURN = "<|im_end|>"
"""What closes a turn in the chat template (Qwen's; the embedded model's too)."""


def template_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a conversation through the model's chat template, ready to generate."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


def chat_ids(tokenizer: Any, text: str, system: str = FORMAT_INSTRUCTION) -> list[int]:
    """A question as the policy sees it: the system instruction, then the prompt."""
    return template_ids(tokenizer, [{"role": "system", "content": system},
                                    {"role": "user", "content": text}])


def stop_ids(tokenizer: Any) -> tuple[int, ...]:
    """The ids generation stops at besides the model's EOS: the end-of-turn token, when the
    vocabulary has one (a tokenizer without it answers an unknown id or None)."""
    end = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    unk = getattr(tokenizer, "unk_token_id", None)
    return (end,) if isinstance(end, int) and end >= 0 and end != unk else ()
