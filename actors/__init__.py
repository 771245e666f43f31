"""Thin Ray actor wrappers: rollout, reward workers, learner group (the GRPO-loop issue)."""
