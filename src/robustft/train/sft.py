"""Supervised instruction tuning (NEFTune track): one model, dataset, recipe, method and seed per run.

TRL's SFTTrainer trains on prompt/completion pairs (data/instruct.py), so the loss covers the response
tokens only. The method's components hook in through RobustTrainer (trainer.py): NEFTune's noise is a
forward hook on the input embeddings (of the base model under PEFT), attached for training only and
removed in a `finally`; it reads the batch's attention mask, which paper mode needs for per-example
lengths. Packing and padding-free batches are refused with embedding noise: they flatten a batch into
one row, so the noise's L would be the whole batch's length (transformers#34659). FreeLB owns the training
step (RobustTrainer.training_step): its K passes run the model on perturbed input embeddings with the
completion-only labels, weighted by their share of the step's response tokens (methods/freelb.py).

The run directory (`--out`, i.e. `<run>/sft/`) follows the instruction-track contract:
- history.jsonl: the trainer's logs ({"step", "epoch", "train_loss", ...}; the loss as trained, noise
  on) and, at each evaluation, {"step", "epoch", "eval_train_loss", "eval_heldout_loss"} measured with
  the model in eval mode, so without noise (the paper's point: only the noise-free loss differs);
- losses.jsonl: per-example mean response-token loss of the final model, noise off (NEFTune Figure 4);
- model/: final weights (safetensors) + tokenizer; LoRA merged into the base, QLoRA the adapter only;
- run.json (provenance, status), and metrics.json last (its presence means "done").
Evaluation losses are token-weighted means over all response tokens of a set (like the training loss).
A rerun resumes from the last checkpoint of the same configuration; a finished run is left alone.
Runs are single-process (one CPU or GPU): the noise-free evaluations run inside a callback.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from robustft import provenance
from robustft.data.instruct import SHAREGPT_CHUNK_TOKENS
from robustft.errors import QLoRAUnavailableError, RunError, RunPreempted
from robustft.io import append_jsonl, read_jsonl, write_json_atomic, write_text_atomic
from robustft.runs import TENSORBOARD_DIR, finish_run, prepare_run_dir, record_failure
from robustft.train.freeze import FREEZABLE_PARTS, freeze_parts

logger = logging.getLogger(__name__)

ADAPTERS = ("full", "lora", "qlora")
PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
RUN_FILES = ("metrics.json", "history.jsonl", "losses.jsonl", "run.json", TENSORBOARD_DIR)
MODEL_DIR = "model"
MODEL_INFO_FILE = "robustft_model.json"  # inside model/: base model name and adapter kind
# Components whose own training step runs on a causal LM (StepFunctions' loss is the model's own, over the
# response tokens): FreeLB's K ascent steps perturb the input embeddings and need no task head.
SFT_STEP_OWNERS = ("freelb",)


@dataclass
class SFTSettings:
    """SFT hyperparameters (the config's `instruct.sft` + recipe). Defaults: the NEFTune paper's 7B recipe
    (App. A.1 and experiment_code/train.py): Adam lr 5e-5, 3 epochs, effective batch 128 (4 GPUs x 4 x
    accumulation 8; here one device x 4 x 32), cosine schedule, warmup 3%, no weight decay, gradient
    clipping 1.0, 512 tokens. Precision defaults to fp32, not the paper's bf16 nor the classification runs'
    `auto`: bf16 autocast on a CPU without fast bf16 kernels (no AVX512-BF16/AMX) emulates its matmuls and
    ran TRL's SFT ~10x slower, the cause `auto` avoids for classification (robustft.train.precision); SFT
    keeps the explicit choice: GPU recipes set bf16, and so should runs on CPUs with fast bf16 kernels (a
    bare SmolLM2 step 1.86x faster, 4-step runs 1.1-1.6x).
    LoRA settings are QLoRA's reference defaults (r 64, alpha 16, dropout 0.0, all linear layers); a QLoRA
    recipe also sets lr 2e-4, constant schedule, max_grad_norm 0.3, batch 1 x 16, optimizer
    paged_adamw_32bit, gradient checkpointing, 1 epoch."""

    learning_rate: float = 5e-5
    epochs: float = 3.0
    max_steps: int | None = None  # optimizer steps; overrides epochs (smoke runs, step timing)
    batch_size: int = 4  # per device
    gradient_accumulation_steps: int = 32
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optimizer: str = "adamw_torch"  # a transformers `optim` name, e.g. paged_adamw_32bit for QLoRA
    max_seq_length: int = 512
    precision: str = "fp32"  # fp32 | bf16 | fp16 (mixed precision on fp32 weights)
    gradient_checkpointing: bool = False
    adapter: str = "full"  # full | lora | qlora
    lora_r: int = 64
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_target_modules: str | list[str] = "all-linear"
    packing: bool = False  # refused with embedding noise (module docstring)
    # Parts of the model kept frozen (NEFTune Table 11), full fine-tuning only: "embeddings" (the input
    # embedding matrix), "lm_head" (the output projection), "attention" (each layer's self-attention).
    # Freezing one of a tied embedding/head pair freezes both: they are one matrix (robustft.train.freeze).
    freeze: list[str] = field(default_factory=list)
    # ShareGPT conversations are split into chunks of at most this many tokens (NEFTune App. A.1: 512;
    # Table 13 also trains on 1,024); the other datasets have no chunks and ignore it.
    sharegpt_chunk_tokens: int = SHAREGPT_CHUNK_TOKENS
    padding_free: bool = False
    max_train_samples: int | None = None
    # Held-out set for the noise-free held-out loss (NEFTune Figure 4 uses Evol-Instruct): another registry
    # dataset (`heldout_dataset`, `heldout_size` examples of it), or `heldout_size` examples split off the
    # training data (none when 0). The split keeps examples of one instruction together.
    heldout_dataset: str | None = None
    heldout_size: int = 64
    eval_train_samples: int = 64  # training examples whose noise-free loss is tracked
    eval_steps: int = 0  # evaluate every N optimizer steps (0: at each epoch's end), and always at the end
    eval_batch_size: int = 4
    logging_steps: int = 10
    report_to: str | list[str] = "none"  # trackers, as the train setting (robustft.train.config.TrainConfig)
    data_seed: int = 0  # the same data split and subsets for every seed and method (paired comparisons)
    checkpoint_steps: int = 500  # 0: none, except on SIGTERM
    keep_checkpoints: bool = False
    save_model: bool = True
    # A run whose loss explodes without turning NaN is diverged too (the GLUE/XTREME `train` rule,
    # callbacks.loss_explosion): when the last logged training loss, or a noise-free evaluation loss,
    # exceeds this factor x the first logged training loss (step 1). None: only NaN/inf counts.
    divergence_factor: float | None = 10.0

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, expected: str) -> None:
            if not ok:
                raise ValueError(f"sft setting {name!r} must be {expected}, got {getattr(self, name)!r}")

        def number(name: str, minimum: float, strict: bool = False) -> None:
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            check(name, ok and (value > minimum if strict else value >= minimum), f"a number >= {minimum}")

        def integer(name: str, minimum: int, optional: bool = False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
            check(name, ok, f"an integer >= {minimum}" + (" or null" if optional else ""))

        number("learning_rate", 0, strict=True)
        number("epochs", 0, strict=True)
        number("warmup_ratio", 0)
        check("warmup_ratio", self.warmup_ratio < 1, "below 1")
        number("weight_decay", 0)
        number("max_grad_norm", 0)
        number("lora_alpha", 0, strict=True)
        number("lora_dropout", 0)
        check("lora_dropout", self.lora_dropout < 1, "below 1")
        integer("max_steps", 1, optional=True)
        integer("max_train_samples", 1, optional=True)
        for name in ("batch_size", "gradient_accumulation_steps", "max_seq_length", "lora_r"):
            integer(name, 1)
        integer("sharegpt_chunk_tokens", 1)
        for name in ("eval_batch_size", "logging_steps"):
            integer(name, 1)
        for name in ("heldout_size", "eval_train_samples", "eval_steps", "data_seed", "checkpoint_steps"):
            integer(name, 0)
        check("precision", self.precision in PRECISIONS, f"one of {list(PRECISIONS)}")
        check("adapter", self.adapter in ADAPTERS, f"one of {list(ADAPTERS)}")
        self._check_freeze()
        check("lr_scheduler", self.lr_scheduler in SCHEDULERS, f"one of {list(SCHEDULERS)}")
        targets = self.lora_target_modules
        check(
            "lora_target_modules",
            isinstance(targets, str)
            or (isinstance(targets, list) and all(isinstance(t, str) for t in targets)),
            "'all-linear' or a list of module names",
        )
        for name in ("packing", "padding_free", "gradient_checkpointing", "keep_checkpoints", "save_model"):
            check(name, isinstance(getattr(self, name), bool), "true or false")
        from robustft.train.config import report_to_error

        problem = report_to_error(self.report_to)
        if problem:
            raise ValueError(f"sft setting 'report_to' {problem}")
        factor = self.divergence_factor
        check(
            "divergence_factor",
            factor is None
            or (
                isinstance(factor, int | float)
                and not isinstance(factor, bool)
                and math.isfinite(factor)
                and factor > 1
            ),
            "a number > 1 or null",
        )

    def _check_freeze(self) -> None:
        parts = self.freeze
        if not isinstance(parts, list) or not all(isinstance(part, str) for part in parts):
            raise ValueError(f"sft setting 'freeze' must be a list of {list(FREEZABLE_PARTS)}, got {parts!r}")
        unknown = [part for part in parts if part not in FREEZABLE_PARTS]
        if unknown or len(set(parts)) != len(parts):
            raise ValueError(
                f"sft setting 'freeze' must name each of {list(FREEZABLE_PARTS)} at most once, got {parts!r}"
                + (f" (unknown: {unknown})" if unknown else "")
            )
        if parts and self.adapter != "full":
            # A LoRA model trains only its adapters: every base weight is frozen already.
            raise ValueError(
                f"sft setting 'freeze' ({parts}) applies to full fine-tuning; adapter {self.adapter!r} "
                "trains only its adapter weights"
            )

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.gradient_accumulation_steps


def settings_from_dict(settings: dict[str, Any] | None) -> SFTSettings:
    if not isinstance(settings or {}, dict):
        raise RunError(f"--sft-config must be a JSON object, got {settings!r}")
    unknown = sorted(set(settings or {}) - {f.name for f in fields(SFTSettings)})
    if unknown:
        raise RunError(
            f"sft settings: unknown key(s) {unknown}; known: {sorted(f.name for f in fields(SFTSettings))}"
        )
    try:
        return SFTSettings(**(settings or {}))
    except ValueError as err:
        raise RunError(str(err)) from err


@dataclass
class SFTRunSpec:
    model: str
    dataset: str
    method: str
    seed: int
    recipe: str = "default"  # the name of this set of settings (a run-directory level)
    sft: SFTSettings = field(default_factory=SFTSettings)
    components: dict[str, dict[str, Any] | None] | None = None  # None: derive from the method name
    data_dir: str = "resources/data"
    cache_dir: str | None = None

    def validate(self):
        """Fail on a bad name or setting before anything heavy is loaded; return the method."""
        from robustft.data.instruct import get_instruct_dataset
        from robustft.methods import build_method
        from robustft.methods.base import overrides
        from robustft.models import get_model_spec

        spec = get_model_spec(self.model, self.cache_dir)
        if spec.kind != "causal-lm":
            raise RunError(f"sft: model {self.model!r} is not a causal language model (kind {spec.kind!r})")
        get_instruct_dataset(self.dataset)
        if self.sft.heldout_dataset is not None:
            get_instruct_dataset(self.sft.heldout_dataset)
        from robustft.models import sequence_length_error
        from robustft.train.config import seed_error

        problem = seed_error(self.seed)
        if problem:
            raise RunError(f"--seed: {problem}")
        problem = sequence_length_error(self.model, self.sft.max_seq_length, self.cache_dir)
        if problem:
            raise RunError(f"sft setting 'max_seq_length': {problem}")
        method = build_method(self.method, self.components)
        unsupported = [
            c.name
            for c in method.components
            if (c.owns_training_step and c.name not in SFT_STEP_OWNERS) or overrides(c, "extra_loss")
        ]
        if unsupported:
            raise RunError(
                f"sft: method {self.method!r} has {unsupported}, which add loss terms or replace the "
                "training step; the SFT trainer supports components that prepare the model, add embedding "
                f"noise or replace the optimizer, and the training steps of {list(SFT_STEP_OWNERS)}"
            )
        noisy = [
            c.name for c in method.components if overrides(c, "embedding_noise") or c.name in SFT_STEP_OWNERS
        ]
        if noisy and (self.sft.packing or self.sft.padding_free):
            raise RunError(
                f"sft: {noisy} perturb the embeddings per example, which cannot run with "
                "packing/padding_free: a packed or padding-free batch is one row of all its examples, so "
                "NEFTune's L (FreeLB's per-sequence norm of δ) would be the whole batch's and each "
                "example's perturbation too small (transformers#34659). "
                "Set packing and padding_free to false."
            )
        perturbing = [c.name for c in method.components if c.name == "noisytune"]
        if self.sft.adapter == "qlora" and perturbing:
            # Checked here, not only in NoisyTune.prepare_model: the 4-bit model would be loaded first.
            raise RunError(
                f"sft: method {self.method!r} has {perturbing}, which perturbs the base weights, but "
                "sft.adapter 'qlora' stores them as 4-bit codes (the noise would perturb the codes, or round "
                "away on re-quantization); set sft.adapter to 'lora' or 'full'"
            )
        if self.sft.adapter == "qlora":
            from robustft.models import quantization_unavailable_reason

            reason = quantization_unavailable_reason()
            if reason is not None:
                raise QLoRAUnavailableError(f"QLoRA is unavailable on this machine: {reason}")
        return method


# ---------------------------------------------------------------------------------------------------------
# Data


def _as_dataset(data, index_offset: int = 0):
    """prompt/completion columns for SFTTrainer, plus `index` (position in the split) for losses.jsonl."""
    import datasets

    return datasets.Dataset.from_dict(
        {
            "prompt": [e.prompt for e in data.examples],
            "completion": [e.completion for e in data.examples],
            "index": list(range(index_offset, index_offset + len(data.examples))),
        }
    )


def load_sft_data(spec: SFTRunSpec, count_tokens=None):
    """(train, noise-free eval subset of train, held-out or None), each an InstructData."""
    from robustft.data.instruct import load_instruct_dataset, split_heldout, subsample

    settings = spec.sft
    chunks = {"count_tokens": count_tokens, "chunk_tokens": settings.sharegpt_chunk_tokens}
    data = load_instruct_dataset(spec.dataset, spec.data_dir, spec.cache_dir, **chunks)
    # Held out of the training set itself, or drawn from another dataset (NEFTune Figure 4: Evol-Instruct).
    # A run trained on the held-out dataset splits it instead, so no held-out example is ever trained on.
    if settings.heldout_dataset in (None, spec.dataset):
        try:
            train, heldout = split_heldout(data, settings.heldout_size, settings.data_seed)
        except ValueError as err:
            raise RunError(f"sft {spec.dataset}: {err}") from err
    else:
        train = data
        other = load_instruct_dataset(settings.heldout_dataset, spec.data_dir, spec.cache_dir, **chunks)
        size = settings.heldout_size
        heldout = subsample(other, size, settings.data_seed) if size else None
    train = subsample(train, settings.max_train_samples, settings.data_seed)
    eval_train = subsample(train, settings.eval_train_samples, settings.data_seed)
    return train, eval_train if settings.eval_train_samples else None, heldout


# ---------------------------------------------------------------------------------------------------------
# Losses with the noise off


def example_losses(
    model, dataset, pad_token_id: int, batch_size: int, precision: str = "fp32"
) -> list[dict[str, Any]]:
    """Mean response-token loss of each example of a prepared (tokenized) dataset, in eval mode (so no
    noise hook acts): [{"index", "loss", "tokens"}]. Restores the model's training mode afterwards.
    On a GPU, bf16/fp16 runs evaluate under the same autocast as training (the loss itself is fp32)."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    records = []
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = torch.autocast(device.type, dtype=half, enabled=half is not None and device.type == "cuda")
    try:
        with torch.no_grad(), autocast:
            starts = range(0, len(dataset), batch_size)
            for start in tqdm(starts, desc="noise-free losses", leave=False, disable=len(starts) < 8):
                rows = dataset[start : start + batch_size]
                length = max(len(ids) for ids in rows["input_ids"])
                ids = torch.full((len(rows["input_ids"]), length), pad_token_id, dtype=torch.long)
                labels = torch.full_like(ids, -100)
                mask = torch.zeros_like(ids)
                for i, (row_ids, row_labels) in enumerate(
                    zip(rows["input_ids"], rows["labels"], strict=True)
                ):
                    ids[i, : len(row_ids)] = torch.tensor(row_ids)
                    labels[i, : len(row_labels)] = torch.tensor(row_labels)
                    mask[i, : len(row_ids)] = 1
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                target = labels[:, 1:].to(device)
                nll = F.cross_entropy(
                    logits[:, :-1].float().transpose(1, 2), target, ignore_index=-100, reduction="none"
                )
                tokens = (target != -100).sum(dim=1)
                sums = nll.sum(dim=1)
                for i, index in enumerate(rows["index"]):
                    n = int(tokens[i])
                    loss = float(sums[i]) / n if n else float("nan")
                    records.append({"index": int(index), "loss": loss, "tokens": n})
    finally:
        model.train(was_training)
    return records


def mean_token_loss(records: list[dict[str, Any]]) -> float | None:
    tokens = sum(r["tokens"] for r in records)
    return sum(r["loss"] * r["tokens"] for r in records if r["tokens"]) / tokens if tokens else None


def _make_callbacks():
    from transformers import TrainerCallback

    class SFTHistoryCallback(TrainerCallback):
        """history.jsonl: the trainer's logs with `loss` named `train_loss` (the closing summary is left
        out: its train_loss is the run's mean, not a point of the curve), and the noise-free evaluations
        at eval steps and at the last step. Holds the last evaluation's per-example losses."""

        def __init__(self, path: Path, settings: SFTSettings, pad_token_id: int) -> None:
            self.path, self.eval_steps = path, settings.eval_steps
            self.batch_size, self.precision = settings.eval_batch_size, settings.precision
            self.pad_token_id = pad_token_id
            self.trainer = None  # set once the trainer exists
            self.last_eval_step: int | None = None
            self.last_losses: dict[str, list[dict[str, Any]]] = {}
            self.eval_seconds = 0.0

        def on_log(self, args, state, control, logs=None, **kwargs) -> None:
            if not logs or "train_runtime" in logs or not state.is_world_process_zero:
                return
            record = {("train_loss" if k == "loss" else k): v for k, v in logs.items()}
            append_jsonl(self.path, {"step": state.global_step, "epoch": state.epoch, **record})

        def on_step_end(self, args, state, control, model=None, **kwargs) -> None:
            due = self.eval_steps and state.global_step % self.eval_steps == 0
            if due or state.global_step >= state.max_steps:
                self.evaluate(state, model)

        def on_epoch_end(self, args, state, control, model=None, **kwargs) -> None:
            if not self.eval_steps:
                self.evaluate(state, model)

        def evaluate(self, state, model) -> None:
            if self.last_eval_step == state.global_step:
                return
            started = time.perf_counter()
            self.last_eval_step = state.global_step
            record: dict[str, Any] = {"step": state.global_step, "epoch": state.epoch}
            for name, dataset in (self.trainer.eval_dataset or {}).items():
                losses = example_losses(model, dataset, self.pad_token_id, self.batch_size, self.precision)
                self.last_losses[name] = losses
                record[f"eval_{name}_loss"] = mean_token_loss(losses)
            self.eval_seconds += time.perf_counter() - started
            append_jsonl(self.path, record)

    return SFTHistoryCallback


@functools.cache
def _trainer_class():
    from trl import SFTTrainer

    from robustft.train.trainer import RobustTrainer, attach_embedding_noise

    class RobustSFTTrainer(RobustTrainer, SFTTrainer):
        """TRL's SFTTrainer (data preparation, completion-only loss) with RobustTrainer's method hooks and
        run-state checkpoints; the MRO is RobustTrainer -> SFTTrainer -> Trainer."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            self._attention_mask = inputs.get("attention_mask")  # read by the noise hook in this forward
            return SFTTrainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

        def training_step(self, model, inputs, num_items_in_batch=None):
            if self.method.step_owner() is not None:
                # A step-owning component (FreeLB) runs the model itself, not compute_loss: no KV cache, as
                # in TRL's compute_loss, and TRL's count of trained tokens (tokens_per_second) kept here.
                inputs["use_cache"] = False
                self._total_train_tokens += int(inputs["attention_mask"].sum())
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            return super().training_step(model, inputs, num_items_in_batch)

        def _owner_step_share(self, inputs, num_items_in_batch):
            # SFT's loss is a mean over the optimizer step's response tokens (TRL: their sum over
            # num_items_in_batch); the model's own loss is a mean over this micro-batch's, so it weighs as its
            # share of those tokens, and K = 1 with no δ is plain SFT, accumulated or not.
            if num_items_in_batch is None:
                return super()._owner_step_share(inputs, num_items_in_batch)
            return float(self._share_of_accumulated_batch(inputs, num_items_in_batch))

        def _attach_embedding_noise(self):
            # Under PEFT the embeddings to perturb are the base model's (as transformers' own NEFTune).
            model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            return attach_embedding_noise(
                model, self.method.components, self.context, lambda: self._attention_mask
            )

    return RobustSFTTrainer


# ---------------------------------------------------------------------------------------------------------
# The run


def sft_run(spec: SFTRunSpec, out_dir: str | Path) -> dict[str, Any]:
    """Fine-tune one model on one instruction dataset and write the run contract into `out_dir`
    (the run's `sft/` directory). Returns the metrics. Errors leave run.json with the status and the
    error and no metrics.json, so the workflow reruns the job (which resumes from its checkpoint)."""
    started = time.time()
    method = spec.validate()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # The noise-free evaluations run in a callback and every file is written by each process: under
        # FSDP that would be wrong, not just slow. Say so instead of producing a half-right run.
        raise RunError(
            f"sft: {os.environ['WORLD_SIZE']} processes (accelerate/torchrun): instruction tuning runs in "
            "one process here; set instruct.gpus_per_run to 1 (7B full fine-tuning needs a >= 141 GB GPU, "
            "e.g. H200, or use a lora/qlora recipe)"
        )
    out_dir = Path(out_dir)
    run_record: dict[str, Any] = {"spec": {**asdict(spec), "sft": _recorded_settings(spec.sft)}}
    run_record["config_hash"] = provenance.config_hash(run_record["spec"])
    # A finished run of this configuration is left alone. model/ and losses.jsonl are written at the end of
    # a run, so a resumed run clears them too.
    resume, finished = prepare_run_dir(
        out_dir,
        RUN_FILES,
        run_record["config_hash"],
        keep_finished=True,
        rewritten_on_resume=(MODEL_DIR, "losses.jsonl"),
    )
    if finished is not None:
        logger.info("run %s is finished (metrics.json of this configuration): nothing to do", out_dir)
        return finished
    try:
        return _sft(spec, method, out_dir, run_record, resume, started)
    except BaseException as err:
        record_failure(out_dir, run_record, err, started)
        raise


# Settings added after runs were made, with the defaults those runs trained with: left out of the spec
# record (and so of its config hash) at these values, so that a finished run is still recognised as one.
LATER_SETTINGS = {"freeze": [], "sharegpt_chunk_tokens": SHAREGPT_CHUNK_TOKENS}


def _recorded_settings(settings: SFTSettings) -> dict[str, Any]:
    return provenance.settings_record(asdict(settings), LATER_SETTINGS)


def _sft_config(settings: SFTSettings, out_dir: Path, seed: int):
    from trl import SFTConfig

    from robustft.train.arguments import training_arguments
    from robustft.train.precision import resolve_precision, training_device

    # Explicit, so always used as given; the choice adds what transformers needs for bf16/fp16 on a CPU
    # (use_cpu, without which SFTConfig refuses them) and warns where the CPU has no fast bf16 kernels.
    precision = resolve_precision(settings.precision, (), training_device())
    return training_arguments(
        settings,
        out_dir,
        seed=seed,
        eval_strategy="no",  # the noise-free evaluations run in SFTHistoryCallback
        precision=precision.used,
        use_cpu=precision.use_cpu,
        arguments_class=SFTConfig,
        max_steps=settings.max_steps or -1,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        lr_scheduler_type=settings.lr_scheduler,
        max_grad_norm=settings.max_grad_norm,
        optim=settings.optimizer,
        # Always explicit: SFTConfig turns gradient checkpointing on by default (and bf16, which
        # training_arguments sets from `precision`).
        gradient_checkpointing=settings.gradient_checkpointing,
        max_length=settings.max_seq_length,
        packing=settings.packing,
        padding_free=settings.padding_free,
        eval_packing=False,  # per-example losses need one example per row
        completion_only_loss=True,
    )


def _sft(
    spec: SFTRunSpec, method, out_dir: Path, run_record: dict[str, Any], resume: Path | None, started: float
) -> dict[str, Any]:
    """The run once its directory is prepared, in the order that fixes its random numbers: the seed, the
    model, the data, the method, the adapter; then run.json, the trainer, training, losses.jsonl, model/
    and, last, metrics.json."""
    settings = spec.sft
    model, tokenizer, data, context = _load_model_data_and_method(spec, method)
    model, peft_config = _with_adapter(model, settings)
    run_record["frozen"] = freeze_parts(model, settings.freeze) if settings.freeze else None
    train, eval_train, heldout = data
    eval_sets = {
        name: data for name, data in (("train", eval_train), ("heldout", heldout)) if data is not None
    }
    _write_running_record(out_dir, run_record, method, train, eval_sets, resume)

    trainer, history, divergence, checkpoints = _build_sft_trainer(
        spec,
        method,
        context,
        model,
        tokenizer,
        peft_config,
        train,
        eval_sets,
        out_dir=out_dir,
        checkpoint_tag=run_record["config_hash"],
    )
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    output = _train_sft_or_raise(trainer, checkpoints, resume, out_dir, settings)
    if history.last_eval_step != trainer.state.global_step:
        history.evaluate(trainer.state, trainer.model)  # e.g. stopped by divergence before the last step

    _write_final_losses(out_dir / "losses.jsonl", history.last_losses)
    if settings.save_model:
        save_finetuned(trainer.model, tokenizer, out_dir / MODEL_DIR, spec.model, settings.adapter)

    result = _sft_result(
        spec,
        data,
        trainer=trainer,
        output=output,
        history=history,
        nonfinite_step=divergence.diverged_at,
        out_dir=out_dir,
        run_record=run_record,
        parameters=(trainable, total),
    )
    run_record.update(method_log=context.log, train_metrics=output.metrics)
    return finish_run(
        out_dir, run_record, result, keep_checkpoints=settings.keep_checkpoints, started=started
    )


def _load_model_data_and_method(spec: SFTRunSpec, method) -> tuple[Any, Any, tuple, Any]:
    """(model, tokenizer, (train, eval_train, heldout), context): set the seed, load the model and the
    data (token counts need its tokenizer), and let the method prepare the model."""
    from transformers import set_seed

    from robustft.methods import RunContext
    from robustft.models import load_causal_lm

    settings = spec.sft
    set_seed(spec.seed)
    model, tokenizer = load_causal_lm(
        spec.model,
        dtype="fp32" if settings.adapter != "qlora" else "bf16",  # mixed precision keeps fp32 master weights
        cache_dir=spec.cache_dir,
        quantization="4bit" if settings.adapter == "qlora" else None,
    )

    def count_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    data = load_sft_data(spec, count_tokens=count_tokens)
    context = RunContext(seed=spec.seed)
    method.prepare_model(model, context)  # before any adapter: NoisyTune perturbs the pretrained weights
    return model, tokenizer, data, context


def _with_adapter(model, settings: SFTSettings) -> tuple[Any, Any]:
    """(model, peft_config): a LoRA config for `lora`/`qlora` (TRL wraps the model with it), the 4-bit
    model made trainable for `qlora`; `full` leaves the model as it is, with no config."""
    if settings.adapter not in ("lora", "qlora"):
        return model, None
    from peft import LoraConfig, prepare_model_for_kbit_training

    if settings.adapter == "qlora":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=settings.gradient_checkpointing
        )
    peft_config = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=settings.lora_target_modules,
        task_type="CAUSAL_LM",
    )
    return model, peft_config


def _write_running_record(
    out_dir: Path, run_record: dict[str, Any], method, train, eval_sets: dict[str, Any], resume: Path | None
) -> None:
    """Add the provenance to `run_record` and write it as run.json with status `running`."""
    from robustft.runs import checkpoint_step

    run_record.update(
        method=method.describe(),
        data={"train": train.source, **{f"eval_{k}": v.source for k, v in eval_sets.items()}},
        git_commit=provenance.git_commit(),
        versions={**provenance.package_versions(), **_extra_versions()},
        hardware=provenance.hardware(),
        slurm_job_id=provenance.slurm_job_id(),
        resumed_from_step=None if resume is None else checkpoint_step(resume),
    )
    write_json_atomic(out_dir / "run.json", {**run_record, "status": "running"})


def _build_sft_trainer(
    spec: SFTRunSpec,
    method,
    context,
    model,
    tokenizer,
    peft_config,
    train,
    eval_sets: dict[str, Any],
    *,
    out_dir: Path,
    checkpoint_tag: str,
) -> tuple[Any, Any, Any, Any]:
    """(trainer, history, divergence, checkpoints): the RobustSFTTrainer and the callbacks the run reads
    afterwards; history.jsonl's noise-free evaluations need the trainer, so it is handed to them here."""
    from robustft.train.arguments import point_trackers_at
    from robustft.train.callbacks import DivergenceCallback
    from robustft.train.checkpoints import CheckpointCallback

    settings = spec.sft
    history = _make_callbacks()(out_dir / "history.jsonl", settings, tokenizer.pad_token_id)
    divergence, checkpoints = DivergenceCallback(), CheckpointCallback()
    trainer = _trainer_class()(
        method=method,
        context=context,
        checkpoint_tag=checkpoint_tag,
        model=model,
        args=_sft_config(settings, out_dir, spec.seed),
        train_dataset=_as_dataset(train),
        eval_dataset={name: _as_dataset(data) for name, data in eval_sets.items()} or None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[checkpoints, history, divergence],  # checkpoints before divergence (it may veto a save)
    )
    history.trainer = trainer
    point_trackers_at(trainer, out_dir)
    return trainer, history, divergence, checkpoints


def _train_sft_or_raise(trainer, checkpoints, resume: Path | None, out_dir: Path, settings: SFTSettings):
    """Train (from `resume` when given) and return Trainer's output; out of memory becomes a RunError
    that names the settings to lower, and a stop on SIGTERM (checkpoint saved) a RunPreempted."""
    import torch

    from robustft.train.checkpoints import stop_on_sigterm

    try:
        with stop_on_sigterm(checkpoints):
            output = trainer.train(resume_from_checkpoint=None if resume is None else str(resume))
    except torch.OutOfMemoryError as err:
        raise RunError(
            f"out of memory in sft run {out_dir} at batch size {settings.batch_size}, max_seq_length "
            f"{settings.max_seq_length}: lower batch_size (raise gradient_accumulation_steps to keep the "
            f"effective batch) or turn on gradient_checkpointing ({err})"
        ) from err
    if checkpoints.stopped_at is not None:
        raise RunPreempted(
            f"sft run {out_dir} stopped on SIGTERM with a checkpoint at step {checkpoints.stopped_at}; "
            "run the same command again to resume"
        )
    return output


def _write_final_losses(path: Path, last_losses: dict[str, list[dict[str, Any]]]) -> None:
    """losses.jsonl: the final model's per-example noise-free losses, one record per example and set."""
    lines = [
        json.dumps({"split": split, **record}) + "\n"
        for split, records in last_losses.items()
        for record in records
    ]
    write_text_atomic(path, "".join(lines))


def _sft_result(
    spec: SFTRunSpec,
    data: tuple,
    *,
    trainer,
    output,
    history,
    nonfinite_step: int | None,
    out_dir: Path,
    run_record: dict[str, Any],
    parameters: tuple[int, int],
) -> dict[str, Any]:
    """metrics.json: final noise-free losses, throughput without the evaluations, the divergence verdict
    and the status it implies, and the run's sizes."""
    settings = spec.sft
    train, eval_train, heldout = data
    trainable, total = parameters
    runtime = output.metrics.get("train_runtime") or 0.0
    train_seconds = max(runtime - history.eval_seconds, 1e-9)
    samples = output.metrics.get("train_samples_per_second")
    final = {name: mean_token_loss(records) for name, records in history.last_losses.items()}
    diverged_at, diverged_because = sft_divergence(
        nonfinite_step, output.training_loss, out_dir / "history.jsonl", settings.divergence_factor
    )
    status = "diverged" if diverged_because else "ok"
    return {
        "status": status,
        "config_hash": run_record["config_hash"],
        "model": spec.model,
        "dataset": spec.dataset,
        "recipe": spec.recipe,
        "method": spec.method,
        "seed": spec.seed,
        "final_train_loss": final.get("train"),  # noise off, final model, eval subset of the training data
        "final_heldout_loss": final.get("heldout"),
        "train_loss": output.training_loss,  # mean over this attempt's steps, as trained (noise on)
        "train_runtime": runtime,
        "train_seconds_without_eval": train_seconds,
        "train_samples_per_second": samples * runtime / train_seconds if samples else None,
        "tokens_per_second": trainer._total_train_tokens / train_seconds,
        "seconds_per_step": train_seconds
        / max(trainer.state.global_step - (run_record["resumed_from_step"] or 0), 1),
        "steps": trainer.state.global_step,
        "epoch": trainer.state.epoch,
        "diverged_at_step": diverged_at,
        "diverged_because": diverged_because,
        "n_train": len(train),
        "n_eval_train": len(eval_train) if eval_train is not None else 0,
        "n_heldout": len(heldout) if heldout is not None else 0,
        # Examples with a loss: one whose response starts past max_seq_length has none (TRL drops it).
        "n_scored": {name: len(records) for name, records in history.last_losses.items()},
        "adapter": settings.adapter,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "settings": asdict(settings),
    }


def sft_divergence(
    nonfinite_step: int | None, training_loss: float, history_path: Path, factor: float | None
) -> tuple[int | None, str | None]:
    """(step, reason) when the run diverged, else (None, None): the same rules as a GLUE/XTREME run.

    A NaN/inf loss or gradient norm (DivergenceCallback, at `nonfinite_step`) or mean training loss, else
    a finite blow-up (callbacks.loss_explosion with `factor`) read from history.jsonl: its `train_loss`
    records are the trainer's logged losses from step 1 on (logging_first_step) across resumed attempts,
    and its `eval_<set>_loss` records are the noise-free evaluations. A torn line left by a killed
    attempt is skipped, not fatal.
    """
    from robustft.train.callbacks import divergence

    records = read_jsonl(history_path, skip_malformed=True)
    # loss_explosion reads the trainer's key, `loss`; history.jsonl names it `train_loss`.
    log = [{**r, "loss": r["train_loss"]} if "train_loss" in r else r for r in records]
    return divergence(nonfinite_step, math.isfinite(training_loss), log, factor)


def _extra_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in ("trl", "peft", "bitsandbytes"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def save_finetuned(model, tokenizer, directory: Path, base_model: str, adapter: str) -> None:
    """model/: full and LoRA (merged into the base) as plain safetensors; QLoRA as the adapter only
    (merging into 4-bit weights would round them), with the base model's registry name beside it."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if adapter == "lora":
        model = model.merge_and_unload()
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    info = {"base_model": base_model, "adapter": adapter, "merged": adapter == "lora"}
    write_json_atomic(tmp / MODEL_INFO_FILE, info)
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)  # a killed save never leaves a half-written model/


def load_finetuned(sft_dir: str | Path, dtype: str = "fp32", cache_dir: str | None = None):
    """(model, tokenizer) of a finished SFT run, in eval mode, for generation and lm-eval. A QLoRA run's
    adapter is loaded on its base model in 4 bits; everything else is a plain checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from robustft.models import _torch_dtype, load_causal_lm

    directory = Path(sft_dir) / MODEL_DIR
    info_path = directory / MODEL_INFO_FILE
    if not info_path.is_file():
        raise RunError(f"no fine-tuned model at {directory} (is {Path(sft_dir) / 'metrics.json'} there?)")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    tokenizer = AutoTokenizer.from_pretrained(directory)
    if info["adapter"] == "qlora":
        from peft import PeftModel

        base, _ = load_causal_lm(info["base_model"], dtype=dtype, cache_dir=cache_dir, quantization="4bit")
        model = PeftModel.from_pretrained(base, directory)
    else:
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=_torch_dtype(dtype))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


# ---------------------------------------------------------------------------------------------------------
# CLI


def cmd_sft(args: argparse.Namespace) -> int:
    spec = SFTRunSpec(
        model=args.model,
        dataset=args.dataset,
        method=args.method,
        seed=args.seed,
        recipe=args.recipe,
        sft=settings_from_dict(args.sft_config),
        components=args.method_components,
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
    )
    spec.validate()  # names and settings fail here, before torch is imported
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = sft_run(spec, args.out)
    keys = ("status", "final_train_loss", "final_heldout_loss", "train_loss", "seconds_per_step")
    print(json.dumps({k: result.get(k) for k in keys}, indent=2))
    return 0 if result["status"] in ("ok", "diverged") else 1
