"""`strl train` / `strl sft`: one GRPO run. `run` reads top to bottom; `topology` decides
actors, resources, device and backends once; `cluster` builds them; `trainer` is the loop;
`data` the prompts; `checkpoint` save and resume; `runlog` and `report` its outputs;
`plugins` the user's rewards and tasks, checked before any actor starts."""
