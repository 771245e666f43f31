"""The environment: a network-SDE world simulator (`world`, `sde`) and the question
families drawn from it (`tasks`), each sample rebuilt exactly from (seed, index)
(`stream`); prompts in our and ST-Test's formats (`prompt`, `sample`); the fixed eval suite
(`evalsuite`); the shortcut attacks and `strl quality`'s bounds (`baselines`, `quality`);
`strl show`'s text and plot of one sample (`show`). No torch, no Ray: the core install."""
