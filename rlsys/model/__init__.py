"""The model: the embedded tiny model built locally (`build`), the prompt card saved with
every checkpoint (`card`), chat templating and stop ids (`chat`), running it on vLLM
(`engine`) and the weight-sync receiver inside vLLM's workers (`vllm_ext`)."""
