"""The system around the environment: training, serving and evaluating a policy.

Rooms, top to bottom (a module imports only from rooms below its own; ARCHITECTURE.md,
checked by `make lint`): `cli` (the `strl` command); `train/` (a GRPO run: topology,
cluster, trainer, checkpoints, reports); `serve/` and `evals/` (the model behind Ray Serve;
the eval suite), which never import each other or `train/`; `actors` (the top-level package
of Ray actor classes); `model/` (the embedded model, its prompt card, chat template, vLLM
set-up); and the shared leaf modules here (config, GRPO math, weight-sync protocol, OpenAI
wire format, sample files, atomic writes, questions from clients, the browser view).
"""
