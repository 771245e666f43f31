"""The Ray actors of a training run, each a plain class under a thin Ray wrapper: the vLLM
rollout engine (`rollout`), the reward worker (`reward`), a DeepSpeed learner rank
(`learner`) and the AI judge server (`judge`). `rlsys.train.cluster` creates them in their
placement-group bundles; the Serve replicas live in `rlsys.serve.app`."""
