"""The documented plug-in example loads by path from a config spec and scores."""

from __future__ import annotations

from pathlib import Path

from rewards import RewardSet, RewardSpec, Target

EXAMPLE = Path(__file__).parents[3] / "examples" / "my_rewards.py"


def test_example_reward_file_loads_from_a_spec_and_scores() -> None:
    rs = RewardSet([
        RewardSpec("exact_match", 1.0),
        RewardSpec("my_len_penalty", 0.1, params={"max_chars": 60}, module=str(EXAMPLE)),
        RewardSpec("my_confident_letter", 1.0, module=str(EXAMPLE)),
        RewardSpec("my_letter", 0.5, params={"letter": "b"}, module=str(EXAMPLE)),
    ])
    t = Target("root_cause", "choice", "B", n_options=4)
    short = "<think>x</think><answer>B</answer>"
    long_hedge = "<think>" + "y" * 80 + "</think><answer>A or B</answer>"
    out = rs.score([short, long_hedge], [t, t])
    assert out.components["exact_match"] == [1.0, 0.0]
    assert out.components["my_len_penalty"] == [0.0, -1.0]
    assert out.components["my_confident_letter"] == [0.1, 0.0]
    assert out.components["my_letter"] == [1.0, 0.0]  # "A or B" is no valid letter
    assert out.total == [1.6, -0.1]
