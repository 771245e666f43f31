"""Learner: one rank of the DeepSpeed ZeRO group that holds the policy (and a frozen
reference), computes the GRPO or supervised loss, and sends weights to the engines.

`LearnerWorker` is a plain class; `LearnerActor` its Ray wrapper. All ranks of a group get
the same number of micro-batches per step (the trainer pads), because ZeRO reduces
gradients collectively. The number of micro-batches varies from step to step (dynamic
sampling changes the batch), so accumulation boundaries are set explicitly rather than by
DeepSpeed's fixed `gradient_accumulation_steps`.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass, field

import ray
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlsys.algorithms import Correction, policy_loss
from rlsys.config import AlgorithmConfig, Config, LearnerConfig, ModelConfig
from rlsys.model.series import (
    SYNC_PREFIX,
    SeriesLM,
    embed_rows,
    initial_encoder,
    load_encoder,
    onset_loss,
    placeholder_token,
    save_encoder_state,
    split_state,
    teacher_forced,
)
from rlsys.weightsync import SyncPlan, connect, flat_copy, free_port, plan_for


def non_finite(state: object, where: str = "") -> str:
    """Where a nested state (dicts, lists, tensors) holds NaN or infinite values, as
    "<path>: <count>" (the first few), or "" when every floating value is finite."""
    found: list[str] = []

    def walk(x: object, at: str) -> None:
        if isinstance(x, torch.Tensor):
            if x.is_floating_point() and (n := int((~torch.isfinite(x)).sum())):
                found.append(f"{at}: {n}")
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{at}.{k}" if at else str(k))
        elif isinstance(x, list | tuple):
            for i, v in enumerate(x):
                walk(v, f"{at}[{i}]")

    walk(state, where)
    return "; ".join(found[:3]) + (f"; and {len(found) - 3} more" if len(found) > 3 else "")


@dataclass(frozen=True)
class LearnerSettings:
    """What a learner rank is built from: the config's `model`, `learner` and `algorithm`
    sections as they are, and what the run decided (the model directory, the device, the
    dtype and the process-group backend)."""

    model_path: str
    device: str
    dtype: str
    backend: str
    seed: int
    model: ModelConfig
    learner: LearnerConfig
    algorithm: AlgorithmConfig

    @classmethod
    def from_config(cls, cfg: Config, model_path: str, device: str, dtype: str,
                    backend: str) -> LearnerSettings:
        return cls(model_path, device, dtype, backend, cfg.trainer.seed, cfg.model,
                   cfg.learner, cfg.algorithm)

    @property
    def correction(self) -> Correction:
        """The rollout correction the loss applies (`algorithm.correction*`)."""
        a = self.algorithm
        return Correction(a.correction, a.correction_cap, *a.correction_bounds)

    @property
    def encoder_lr(self) -> float:
        """The encoder's learning rate (model.encoder.lr, else the LM's)."""
        return self.model.encoder.lr or self.learner.lr


@dataclass
class Sequence:
    """One training sequence: prompt + completion tokens, and per-completion-token data."""

    input_ids: list[int]
    prompt_len: int
    old_logprobs: list[float] = field(default_factory=list)  # GRPO only
    advantage: float = 0.0  # GRPO only
    weight: float = 1.0  # 0 for padding sequences that keep ranks in step
    series: list[list[float]] | None = None  # the prompt's series (read by the encoder)


@dataclass
class MicroBatch:
    sequences: list[Sequence]


class LearnerWorker:
    def __init__(self, settings: LearnerSettings, rank: int, world: int) -> None:
        self.s = settings
        self.rank, self.world = rank, world
        self.engine = None
        self.ref = None
        self.skipped_steps = 0
        self.steps = 0
        self.sync_group = None
        self.lr_scales: list[float] = [1.0]  # per optimizer group, relative to the lr

    # ---- start-up -----------------------------------------------------------------
    def address(self) -> tuple[str, int]:
        """This actor's node IP and a free port there (rank 0 hosts the rendezvous)."""


        return ray.util.get_node_ip_address(), free_port()

    def start(self, master_addr: str, master_port: int) -> dict[str, float]:
        t0 = time.perf_counter()
        os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port),
                          RANK=str(self.rank), WORLD_SIZE=str(self.world),
                          LOCAL_RANK=str(self.rank if self.s.device == "cpu" else 0))
        if self.s.device == "cpu":
            os.environ["DS_ACCELERATOR"] = "cpu"
        import deepspeed  # reads DS_ACCELERATOR when imported: only after it is set

        torch.manual_seed(self.s.seed)
        if self.s.device == "cpu":
            # Ray pins OMP threads to the actor's CPU share; training and generation take
            # turns, so the learner may use every core while it trains.
            torch.set_num_threads(self.s.learner.cpu_threads or os.cpu_count() or 1)
        deepspeed.init_distributed(dist_backend=self.s.backend)
        dtype = getattr(torch, self.s.dtype)
        model = AutoModelForCausalLM.from_pretrained(self.s.model_path, dtype=dtype)
        if self.s.algorithm.kl_coef > 0:
            self.ref = AutoModelForCausalLM.from_pretrained(self.s.model_path, dtype=dtype)
            self.ref.eval().requires_grad_(False)
        groups = [{"params": list(model.parameters())}]
        if self.s.model.series == "encoder":
            model = self._with_encoder(model, dtype)
            groups = [{"params": list(model.lm.parameters())},
                      {"params": list(model.encoder.parameters()),
                       "lr": self.s.encoder_lr}]
            self.lr_scales = [1.0, self.s.encoder_lr / self.s.learner.lr]
        ds_config = {
            "train_micro_batch_size_per_gpu": 1,
            "gradient_accumulation_steps": 1,
            "gradient_clipping": self.s.learner.grad_clip,
            "zero_optimization": {"stage": self.s.learner.zero_stage},
            "optimizer": {"type": "AdamW", "params": {
                "lr": self.s.learner.lr, "weight_decay": self.s.learner.weight_decay,
                "betas": [0.9, 0.999]}},
            "bf16": {"enabled": self.s.dtype == "bfloat16"},
            "fp16": {"enabled": self.s.dtype == "float16"},
            "wall_clock_breakdown": False,
        }
        self.engine, *_ = deepspeed.initialize(model=model, config=ds_config,
                                               model_parameters=groups)
        self.device = self.engine.device
        if self.ref is not None:
            self.ref.to(self.device)
        return {"start_s": time.perf_counter() - t0}

    def _with_encoder(self, lm, dtype):
        """The policy (and the reference) reading series through the encoder: the one saved
        with the model, else a new one from the run's seed (the engines build the same)."""



        _, pid = placeholder_token(AutoTokenizer.from_pretrained(self.s.model_path))
        enc = initial_encoder(self.s.model_path, lm.config.hidden_size, self.s.seed,
                              **self.s.model.encoder_shape).to(dtype)
        if self.ref is not None:
            self.ref = SeriesLM(self.ref, copy.deepcopy(enc), pid).eval().requires_grad_(False)
        return SeriesLM(lm, enc, pid)

    # ---- forward helpers ------------------------------------------------------------
    def _batch(self, mb: MicroBatch):
        width = max(len(s.input_ids) for s in mb.sequences)
        ids = torch.zeros(len(mb.sequences), width, dtype=torch.long)
        attn = torch.zeros_like(ids)
        mask = torch.zeros(len(mb.sequences), width - 1)  # over predicted positions
        for i, s in enumerate(mb.sequences):
            n = len(s.input_ids)
            ids[i, :n] = torch.tensor(s.input_ids)
            attn[i, :n] = 1
            mask[i, s.prompt_len - 1 : n - 1] = s.weight
        series = [s.series for s in mb.sequences] if self.s.model.series == "encoder" else None
        return ids.to(self.device), attn.to(self.device), mask.to(self.device), series

    @staticmethod
    def _token_logprobs(model, ids, attn, series=None):
        kw = {"series": series} if series is not None else {}
        logits = model(input_ids=ids, attention_mask=attn, **kw).logits[:, :-1].float()
        return torch.gather(logits.log_softmax(-1), 2, ids[:, 1:, None]).squeeze(-1)

    def _onset_loss(self, mb: MicroBatch):
        """The supervised stages' extra loss on the encoder's onset head (`series.onset_loss`),
        mean over this micro-batch's weighted sequences; None where the policy has no onset
        head, the weight is 0, or no sequence has series."""
        encoder = self._encoder()
        if encoder is None or encoder.onset is None or self.s.model.encoder.onset_weight <= 0:
            return None
        per = [onset_loss(encoder, s.series) * s.weight for s in mb.sequences if s.series]
        return torch.stack(per).sum() / len(mb.sequences) if per else None

    def _set_lr(self, lr: float) -> None:
        """`lr` on every optimizer group, each scaled by its `lr_scales` (the encoder's)."""
        groups = self.engine.optimizer.param_groups
        scales = self.lr_scales if len(self.lr_scales) == len(groups) else [1.0] * len(groups)
        for g, k in zip(groups, scales, strict=True):
            g["lr"] = lr * k

    def _encoder(self):
        """The policy's time-series encoder, or None when it reads series inline."""
        return getattr(getattr(self.engine, "module", self.engine), "encoder", None)

    def fit_onset(self, batches: list[list[list[float]]], lr: float) -> dict[str, float]:
        """One optimizer step per batch (this rank's share of a batch's series) on the
        onset loss alone (`series.onset_loss`), through the same engine and optimizer as
        training; the language model's gradients are zero. Returns the loss of the first
        and the mean of the last ten steps; nothing (no step) when the policy's encoder has
        no onset head (series inline, or an encoder saved before it existed)."""
        encoder = self._encoder()
        if encoder is None or encoder.onset is None:
            return {}
        self._set_lr(lr)
        self.engine.train()
        # every parameter takes part (zeros for the LM), so each ZeRO stage reduces the same
        lm = [p for p in self.engine.module.lm.parameters() if p.requires_grad]
        losses = []
        for series in batches:
            loss = (onset_loss(encoder, series) if series
                    else torch.zeros((), device=self.device))
            zero = sum((p.flatten()[0] * 0 for p in lm), torch.zeros((), device=self.device))
            self.engine.set_gradient_accumulation_boundary(True)
            self.engine.backward(loss + zero, scale_wrt_gas=False)
            self.engine.step()
            losses.append(float(loss.detach()))
        # The zero gradients advanced the language model's AdamW step count with empty
        # moments, which skews its bias correction: the supervised steps that follow would
        # move it up to about 3x their rate. It starts afresh, as if it had not been stepped.
        self._fresh_moments(0)
        return {"onset_loss_first": losses[0] if losses else float("nan"),
                "onset_loss_last": sum(losses[-10:]) / max(1, len(losses[-10:]))}

    # ---- training -----------------------------------------------------------------
    def train_step(self, micro_batches: list[MicroBatch], num_tokens_total: int,
                   sft: bool = False, lr: float | None = None,
                   num_seqs_total: int = 1) -> dict[str, float]:
        """One optimizer step over this rank's micro-batches.

        `num_tokens_total` counts the completion tokens of the whole step across all ranks
        (`num_seqs_total` its sequences), so the accumulated, rank-averaged gradient is the
        token mean (or the mean of sequence means) over the full batch.
        """


        # The learning rate is set here, per step (linear warm-up; SFT stages pass their
        # own), rather than by a DeepSpeed scheduler whose first step would be lr = 0.
        lr = self.s.learner.lr * min(1.0, (self.steps + 1) / max(1, self.s.learner.warmup_steps)) \
            if lr is None else lr
        self._set_lr(lr)
        self.steps += 1
        t0 = time.perf_counter()
        self.engine.train()
        sums: dict[str, float] = {}
        n_tok = 0
        ref_s = 0.0
        nonfinite_loss = False
        for k, mb in enumerate(micro_batches):
            ids, attn, mask, series = self._batch(mb)
            logp = self._token_logprobs(self.engine, ids, attn, series)
            if sft:
                # Cross-entropy on completion tokens, token mean over the whole step.
                loss = -(logp * mask).sum() / max(1, num_tokens_total)
                metrics = {"sft_loss": float(loss) * num_tokens_total / max(1.0, float(mask.sum()))}
                onset = self._onset_loss(mb)
                if onset is not None:  # mean over the step's sequences, like the tokens
                    loss = loss + self.s.model.encoder.onset_weight * onset * (
                        len(mb.sequences) / max(1, num_seqs_total))
                    metrics["onset_loss"] = float(onset)
            else:
                width = mask.shape[1]
                old = torch.zeros_like(logp)
                for i, s in enumerate(mb.sequences):
                    vals = torch.tensor(s.old_logprobs[: width - (s.prompt_len - 1)])
                    old[i, s.prompt_len - 1 : s.prompt_len - 1 + len(vals)] = vals.to(self.device)
                adv = torch.tensor([s.advantage for s in mb.sequences], device=self.device)
                ref = None
                if self.ref is not None:
                    t_ref = time.perf_counter()
                    with torch.no_grad():
                        ref = self._token_logprobs(self.ref, ids, attn, series)
                    ref_s += time.perf_counter() - t_ref
                a = self.s.algorithm
                out = policy_loss(logp, old, adv, mask, loss=a.loss,
                                  correction=self.s.correction, clip_low=a.clip_low,
                                  clip_high=a.clip_high, ref_logp=ref, kl_coef=a.kl_coef,
                                  kl_kind=a.kl_kind,
                                  **self._aggregation(num_tokens_total, num_seqs_total))
                loss = out.loss
                metrics = out.as_dict()
            # DeepSpeed averages gradients over ranks; our loss already divides by the
            # global token count, so undo the average.
            loss = loss * self.world
            # A non-finite loss is left to reach the gradients: DeepSpeed's overflow check
            # (all-reduced over the ranks) then skips the optimizer step on every rank.
            nonfinite_loss |= not bool(torch.isfinite(loss))
            self.engine.set_gradient_accumulation_boundary(k == len(micro_batches) - 1)
            self.engine.backward(loss, scale_wrt_gas=False)
            self.engine.step()
            w = float(mask.sum())
            n_tok += int(w)
            for key, v in metrics.items():
                if isinstance(v, (int, float)) and key != "num_tokens":
                    sums[key] = sums.get(key, 0.0) + float(v) * w
        norm = self.engine.get_global_grad_norm()
        norm = float(norm) if norm is not None else float("nan")
        skipped = nonfinite_loss or not math.isfinite(norm)
        self.skipped_steps += int(skipped)
        out = {k: v / max(1, n_tok) for k, v in sums.items()}
        out.update(grad_norm=norm, skipped=float(skipped), tokens=float(n_tok),
                   train_s=time.perf_counter() - t0 - ref_s, reference_s=ref_s,
                   lr=float(self.engine.optimizer.param_groups[0]["lr"]))
        return out

    def _aggregation(self, num_tokens_total: int, num_seqs_total: int) -> dict:
        if self.s.algorithm.aggregation == "token_mean":
            return {"aggregation": "token_mean", "num_tokens_total": num_tokens_total}
        return {"aggregation": "seq_mean_token_mean", "num_seqs_total": num_seqs_total}

    # ---- weights ------------------------------------------------------------------
    def _full_state(self):
        """The full state dict on rank 0 (empty on other ranks), tied weights under both
        names. Under ZeRO-1/2 these are views of DeepSpeed's flat parameter groups; under
        ZeRO-3 every rank takes part in the gather and rank 0 keeps a copy laid out back to
        back, so that a weight sync sends either without packing."""
        import deepspeed


        module = self.engine.module
        if self.s.learner.zero_stage == 3:
            params = list(module.parameters())
            with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                if self.rank != 0:
                    return {}
                return flat_copy(self._named_state(module))
        return self._named_state(module) if self.rank == 0 else {}

    def _named_state(self, module) -> dict:
        """The module's tensors under the names the engines load: Hugging Face names for
        the language model, `SYNC_PREFIX` + own names for the encoder."""

        state = {k: v.detach() for k, v in module.state_dict().items()}
        if self.s.model.series != "encoder":
            return state
        return {(k[len("lm."):] if k.startswith("lm.") else SYNC_PREFIX + k[len("encoder."):]): v
                for k, v in state.items()}

    def sync_plan(self, bucket_mb: float) -> list:
        """The sync plan (rank 0's; call it on every rank: ZeRO-3 gathers collectively)."""
        return plan_for(self._full_state(), bucket_mb).to_wire()

    def sync_init(self, host: str, port: int, world: int, backend: str,
                  timeout_s: float) -> int:
        """Rank 0 hosts the sync store and joins as sender with the weight-sync `backend`
        (the topology's, the one the engines get); other ranks do nothing."""

        if self.rank == 0:
            self.sync_group = connect(host, port, 0, world, backend, timeout_s)
        return self.rank

    def sync_send(self, wire: list) -> dict[str, float]:
        """Broadcast the current weights (all ranks gather under ZeRO-3; rank 0 sends)."""
        t0 = time.perf_counter()
        state = self._full_state()
        sent = 0
        if self.rank == 0:
            sent = self.sync_group.send(SyncPlan.from_wire(wire), state, self.device)
        return {"bytes": float(sent), "sync_s": time.perf_counter() - t0}

    def save_hf(self, path: str) -> str:
        """Write the policy as a Hugging Face directory (rank 0), loadable by vLLM."""
        state = self._full_state()
        if self.rank != 0:
            return path
        module = self.engine.module
        if self.s.model.series != "encoder":
            module.save_pretrained(path, state_dict=state, safe_serialization=True)
            return path

        lm, enc = split_state(state)
        module.lm.save_pretrained(path, state_dict=lm, safe_serialization=True)
        save_encoder_state(enc, module.encoder.shape, path)
        return path

    def load_reference(self, path: str) -> bool:
        """Make the HF model at `path` the frozen KL reference (the policy as GRPO starts:
        after the supervised warm start, not the model before it). False without KL."""
        if self.ref is None:
            return False

        dtype = getattr(torch, self.s.dtype)
        ref = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        if self.s.model.series == "encoder":

            enc = load_encoder(path)
            if enc is None:
                raise ValueError(f"{path} has no time-series encoder to be the reference's")
            ref = SeriesLM(ref, enc.to(dtype), self.ref.placeholder_id)
        self.ref = ref.eval().requires_grad_(False).to(self.device)
        return True

    def save_state(self, path: str) -> str:
        """Save this rank's training state under `path` (collective: every rank calls it):
        parameters, optimizer moments and fp32 master weights (DeepSpeed's checkpoint),
        plus the step counter that drives the learning-rate schedule and the RNG state."""

        # Prefixed: DeepSpeed keeps keys of its own (e.g. skipped_steps) out of client_state.
        client = {"strl_steps": self.steps, "strl_skipped_steps": self.skipped_steps,
                  "strl_torch_rng": torch.get_rng_state()}
        self.engine.save_checkpoint(path, tag="learner", client_state=client,
                                    save_latest=False)
        return path

    def load_state(self, path: str) -> dict[str, int]:
        """Restore what `save_state` wrote (collective). The frozen reference is not in the
        checkpoint: the run reloads it with `load_reference` (run_dir/reference)."""

        loaded, client = self.engine.load_checkpoint(path, tag="learner",
                                                     load_optimizer_states=True,
                                                     load_lr_scheduler_states=True)
        if loaded is None:
            raise RuntimeError(f"no learner checkpoint under {path}/learner")
        bad = non_finite({"weights": self.engine.module.state_dict(),
                          "optimizer state": self.engine.optimizer.state_dict()})
        if bad:
            raise ValueError(f"{path} holds non-finite values ({bad}); refusing to load it")
        self.steps = int(client["strl_steps"])
        self.skipped_steps = int(client["strl_skipped_steps"])
        torch.set_rng_state(client["strl_torch_rng"])
        return {"steps": self.steps}

    def reset_optimizer(self) -> None:
        """Fresh AdamW moments and step count, as if the optimizer started here (a new
        stage: GRPO's updates are not scaled by the supervised stages' second moments).
        The moments live in the wrapped optimizer's `state`; DeepSpeed's FusedAdam keeps
        its step count in each param group, torch's AdamW in the state."""
        for k in range(len(self._adamw.param_groups)):
            self._fresh_moments(k)

    def _fresh_moments(self, group: int) -> None:
        """Fresh AdamW moments and step count for optimizer group `group` alone (0: the
        language model's, 1: the encoder's); `reset_optimizer` clears every group."""
        inner = self._adamw
        g = inner.param_groups[group]
        for p in g["params"]:
            inner.state.pop(p, None)
        g.pop("step", None)

    @property
    def _adamw(self):
        """The AdamW that DeepSpeed wraps (ZeRO, bf16), or its optimizer itself."""
        return getattr(self.engine.optimizer, "optimizer", self.engine.optimizer)

    def optimizer_steps(self) -> int:
        """Steps the optimizer's moments have seen (0 after `reset_optimizer`)."""
        inner = self._adamw
        steps = [int(g["step"]) for g in inner.param_groups if "step" in g]
        steps += [int(v["step"]) for v in inner.state.values() if "step" in v]
        return max(steps, default=0)

    def teacher_forced(self, seqs: list[Sequence]) -> list[list[int]]:
        """The policy's argmax at every completion token of `seqs` (prompt + reference),
        fed the reference up to it (`rlsys.evals.probe`)."""
        self.engine.eval()
        return teacher_forced(self.engine.module,
                              [(s.input_ids, s.prompt_len, s.series) for s in seqs],
                              self.s.learner.micro_batch_size, self.device)

    def greedy(self, prompts: list[list[int]], max_new_tokens: int,
               series: list | None = None) -> list[list[int]]:
        """Greedy continuation with the learner's own model (the sync-correctness check),
        stopping at the model's end-of-sequence ids (its generation config), as the vLLM
        engine does: a continuation that reaches one ends there on both sides. With the
        encoder, prompt k reads `series[k]`."""

        self.engine.eval()
        module = self.engine.module
        outs = []
        with torch.no_grad():
            for k, p in enumerate(prompts):
                ids = torch.tensor([p], device=self.device)
                if self.s.model.series != "encoder":
                    gen = module.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)
                    outs.append(gen[0, len(p):].tolist())
                    continue

                rows = embed_rows(module.encoder, module.lm.get_input_embeddings(), p,
                                  series[k] if series else [], module.placeholder_id)
                gen = module.lm.generate(inputs_embeds=rows[None], max_new_tokens=max_new_tokens,
                                         attention_mask=torch.ones_like(ids), do_sample=False)
                outs.append(gen[0].tolist())  # with inputs_embeds: the new tokens only
        return outs


LearnerActor = ray.remote(LearnerWorker)
