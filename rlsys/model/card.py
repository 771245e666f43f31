"""The prompt card of a checkpoint (`strl.json` next to the weights): how the model was
prompted in training, so that serving and evaluation prompt it the same way.

Training writes it into every policy it saves (`checkpoints/final`, `grpo-step-K/policy`);
`strl serve` and `strl eval` read it. A model directory without one (any HF model) gets
the defaults below, which are the simulator's own: two decimals, our system instruction,
greedy decoding.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from envs.prompt import FORMAT_INSTRUCTION
from rlsys.config import Config, env_config
from rlsys.files import write_atomic

CARD_FILE = "strl.json"


@dataclass(frozen=True)
class PromptCard:
    precision: int = 2
    """Decimals of the numbers written inline in prompts."""
    system: str = FORMAT_INSTRUCTION
    """System message sent with every question."""
    temperature: float = 0.0
    """Sampling temperature the run evaluated at (`trainer.eval_temperature`)."""
    max_tokens: int = 512
    """Longest completion the run generated."""
    domains: list[str] = field(default_factory=list)
    """Domains training drew questions from (empty: unknown)."""
    tasks: list[str] = field(default_factory=list)
    """Task families trained on (empty: unknown)."""
    series: str = "inline"
    """How the model reads series: 'inline' (numbers in the prompt) or 'encoder' (through
    the time-series encoder saved beside the weights, in `ts_encoder/`)."""
    patch: int = 0
    """Steps per encoder patch (series: encoder)."""
    found: bool = False
    """Whether this card was read from a checkpoint (False: the defaults)."""

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "found"}


def card_of(cfg: Config) -> PromptCard:
    """The card of a training run's config."""
    env = env_config(cfg)
    return PromptCard(precision=env.precision, temperature=cfg.trainer.eval_temperature,
                      max_tokens=cfg.rollout.max_tokens, domains=list(env.domains),
                      tasks=list(cfg.data.tasks), series=cfg.model.series,
                      patch=cfg.model.encoder.patch if cfg.model.series == "encoder" else 0)


def write_card(card: PromptCard, model_dir: Path) -> Path:
    return write_atomic(Path(model_dir) / CARD_FILE, json.dumps(card.to_json(), indent=1))


def read_card(model_dir: str | Path) -> PromptCard:
    """The checkpoint's card, or the defaults when it has none."""
    path = Path(model_dir) / CARD_FILE
    if not path.is_file():
        return PromptCard()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        known = {k: data[k] for k in PromptCard.__dataclass_fields__ if k in data}
        return PromptCard(**known, found=True)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path} is not a valid prompt card ({e}); delete it to use the "
                         "defaults") from None
