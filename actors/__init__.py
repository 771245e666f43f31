"""Thin Ray actor wrappers (rollout, reward workers, learner group); filled by the GRPO-loop issue."""
