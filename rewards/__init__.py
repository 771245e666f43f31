"""Rewards for spatio-temporal reasoning: extraction, targets, registry, built-ins, judge.

Importing this package registers the built-in rewards (``format``, ``exact_match``,
``exp_mae``, ``horizon_bonus``, ``streasoner_forecast``, ``accuracy``, ``judge``,
``rationale``, ``conclusion``). It needs
only the standard library and numpy: no torch, no ray. See ``rewards.registry`` for how a
user's own reward is written and selected from a config.
"""

from rewards import builtin as builtin
from rewards.builtin import (
    ExpMAE,
    HorizonBonus,
    STReasonerForecast,
    accuracy,
    exact_match,
    format_reward,
    mean_abs_error,
    streasoner_relative_score,
)
from rewards.extract import (
    ANSWER_FORMAT_RE,
    REASONS,
    Extraction,
    answer_text,
    is_well_formed,
    parse_choice,
    parse_gold,
    parse_numbers,
    parse_sequence,
    strip_think,
)
from rewards.facts import Facts
from rewards.judge import JudgeClient, JudgeConfig, JudgeResult, JudgeReward, parse_judge_reply
from rewards.metrics import TaskMetrics, evaluate
from rewards.rationale import Claim, check, concluded, conclusion, rationale, reasoning
from rewards.registry import (
    BoundReward,
    RewardConfigError,
    RewardError,
    RewardSet,
    RewardSpec,
    ScoreResult,
    build_reward,
    load_module,
    registered,
    reward,
    unregister,
)
from rewards.spatial import SpatialResult, spatial_bonus, spatial_bonus_group_mean
from rewards.types import KINDS, TASK_KINDS, Target

__all__ = [
    "ANSWER_FORMAT_RE",
    "KINDS",
    "REASONS",
    "TASK_KINDS",
    "BoundReward",
    "Claim",
    "ExpMAE",
    "Extraction",
    "Facts",
    "HorizonBonus",
    "JudgeClient",
    "JudgeConfig",
    "JudgeResult",
    "JudgeReward",
    "RewardConfigError",
    "RewardError",
    "RewardSet",
    "RewardSpec",
    "STReasonerForecast",
    "ScoreResult",
    "SpatialResult",
    "Target",
    "TaskMetrics",
    "accuracy",
    "answer_text",
    "build_reward",
    "check",
    "concluded",
    "conclusion",
    "evaluate",
    "is_well_formed",
    "exact_match",
    "format_reward",
    "load_module",
    "mean_abs_error",
    "parse_choice",
    "parse_gold",
    "parse_judge_reply",
    "parse_numbers",
    "parse_sequence",
    "rationale",
    "reasoning",
    "registered",
    "reward",
    "spatial_bonus",
    "spatial_bonus_group_mean",
    "streasoner_relative_score",
    "strip_think",
    "unregister",
]
