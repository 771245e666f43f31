"""The system: CLI, data I/O, scoring; later the typed config, GRPO math and trainer."""
