"""The Hugging Face Trainer, with the method components' hooks wired in (see methods/base.py).

Plain fine-tuning goes through Trainer's own code: with no components every hook is a no-op, so
`finetune` is the library's training loop, with one correction under gradient accumulation. Trainer
stops dividing the loss by the accumulation steps whenever it counts `num_items_in_batch`, trusting the
model to divide by that count, which sequence classifiers never do; `compute_loss` therefore weights
each micro-batch's task loss by its share of the step's labelled items and each component's term by its
share of the step's rows, so accumulating 2 × 16 examples takes the same step as one batch of 32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, has_length

from robustft.methods import Method, RunContext
from robustft.methods.base import Batch, Component, overrides
from robustft.train.checkpoints import (
    loss_window,
    read_method_state,
    read_run_state,
    remove_other_checkpoints,
    restore_loss_window,
    write_run_state,
)


def forward_with_embeddings(
    model: nn.Module, inputs: dict[str, Any], embeddings: torch.Tensor
) -> torch.Tensor:
    """Logits of the model run on word embeddings instead of token ids (positions are added inside)."""
    kwargs = {k: v for k, v in inputs.items() if k not in ("input_ids", "labels")}
    return model(inputs_embeds=embeddings, **kwargs).logits


def attach_embedding_noise(
    model: nn.Module,
    components: list[Component],
    context: RunContext,
    attention_mask: Callable[[], torch.Tensor | None],
) -> torch.utils.hooks.RemovableHandle | None:
    """Hook the components' `embedding_noise` onto the input embeddings; active in training mode only.

    `attention_mask()` returns the mask of the batch being processed (set by the trainer before the
    forward), which per-example noise such as NEFTune's paper mode needs. Returns the hook's handle, or
    None when no component adds embedding noise.
    """
    noisy = [c for c in components if overrides(c, "embedding_noise")]
    if not noisy:
        return None

    def add_noise(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor | None:
        if not module.training:
            return None
        noises = [c.embedding_noise(output, attention_mask(), context) for c in noisy]
        noises = [noise for noise in noises if noise is not None]
        return output + sum(noises) if noises else None

    return model.get_input_embeddings().register_forward_hook(add_noise)


@dataclass
class StepFunctions:
    """What a component that owns the training step (FreeLB) gets to work with."""

    model: nn.Module
    inputs: dict[str, Any]
    backward: Any  # accelerator.backward: handles mixed precision and distributed training
    gradient_accumulation_steps: int  # micro-batches in this optimizer step
    # This micro-batch's rows over the optimizer step's: the weight of its mean loss, so unequal micro-batches
    # (an epoch's last step) weigh as their rows do. None: 1 / gradient_accumulation_steps.
    share_of_step: float | None = None

    def embed(self) -> torch.Tensor:
        return self.model.get_input_embeddings()(self.inputs["input_ids"])

    def loss_with_embeddings(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kwargs = {k: v for k, v in self.inputs.items() if k != "input_ids"}
        outputs = self.model(inputs_embeds=embeddings, **kwargs)
        return outputs.loss, outputs.logits


def _rows(batch: dict[str, Any]) -> int:
    """The number of examples (rows) in a collated batch."""
    for key in ("labels", "input_ids"):
        value = batch.get(key)
        if isinstance(value, torch.Tensor):
            return value.shape[0]
    return next(value.shape[0] for value in batch.values() if isinstance(value, torch.Tensor))


class _ComponentStepCallback(TrainerCallback):
    def __init__(self, trainer: RobustTrainer) -> None:
        self.trainer = trainer
        self.method, self.context = trainer.method, trainer.context

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self.context.max_steps = state.max_steps
        self.context.step = state.global_step  # > 0 when resuming from a checkpoint
        self.trainer._apply_resumed_state()

    def on_step_end(self, args, state, control, model=None, **kwargs) -> None:
        self.context.step = state.global_step
        for component in self.method.components:
            component.after_optimizer_step(model, self.context)


class RobustTrainer(Trainer):
    """Trainer with the method's hooks; its checkpoints also hold the run state (checkpoints.py).

    `checkpoint_tag` identifies the run configuration; it is stored with each checkpoint so a changed
    configuration is never resumed from an old one. `curve_eval_dataset`, when given, replaces the eval
    datasets in the evaluations the training loop makes before its last step (the learning curve's points):
    the last evaluation, the reported one, still scores `eval_dataset`.
    """

    def __init__(
        self,
        *args: Any,
        method: Method,
        context: RunContext,
        checkpoint_tag: str = "",
        curve_eval_dataset: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.method, self.context = method, context
        self.checkpoint_tag = checkpoint_tag
        self.curve_eval_dataset = curve_eval_dataset
        self._attention_mask: torch.Tensor | None = None
        self._rows_in_step = 0  # rows of the current optimizer step's micro-batches (get_batch_samples)
        self._resumed_state: tuple[dict[str, Any], dict[str, Any]] | None = None
        self.add_callback(_ComponentStepCallback(self))

    def train(self, resume_from_checkpoint: str | None = None, **kwargs: Any):
        if resume_from_checkpoint is not None:
            self._load_run_state(Path(resume_from_checkpoint))
        handle = self._attach_embedding_noise()
        try:
            return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        finally:  # the noise must never outlive training, even when it raises (unlike transformers' hook)
            if handle is not None:
                handle.remove()

    def _get_eval_sampler(self, eval_dataset: Any) -> torch.utils.data.Sampler | None:
        # With train_sampling_strategy "group_by_length", Trainer also batches evaluation and prediction
        # through its LengthGroupedSampler, whose mega-batches shrink to one batch on a small eval set:
        # random batches that undo our length-sorted eval order and pad to their longest example
        # (measured: the demo's STS-B dev scored at 26 examples/s instead of 40), and `predict` returning
        # rows in a shuffled order. Grouping is for training only: evaluation takes Trainer's ungrouped
        # samplers, the set's own order in one process and Accelerate's sequential shards across several.
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_eval_sampler(eval_dataset)
        if eval_dataset is None or not has_length(eval_dataset):
            return None
        return torch.utils.data.SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval"):
        # The training loop asks with no dataset; a caller that names one gets exactly that. The last
        # evaluation is at the last step or where training stops early (a divergence stop: its evaluation
        # is the one reported).
        interim = self.state.global_step < self.state.max_steps and not self.control.should_training_stop
        if eval_dataset is None and interim and self.curve_eval_dataset is not None:
            eval_dataset = self.curve_eval_dataset
        return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        if not self.args.should_save:
            return  # another process of a distributed run: the main one writes the files
        run_dir = Path(self._get_output_dir(trial=trial))
        checkpoint = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        run_state = {
            "checkpoint_tag": self.checkpoint_tag,
            "step": self.state.global_step,
            "method_log": self.context.log,
            "loss_window": loss_window(self),
        }
        write_run_state(checkpoint, run_state, self.method.state_dict())
        remove_other_checkpoints(checkpoint.parent, keep=checkpoint)

    def _load_run_state(self, checkpoint: Path) -> None:
        """Read what Trainer's own resume does not restore: the components' state, the method log
        (components keep counters there) and the logging window; `_apply_resumed_state` applies it."""
        run_state = read_run_state(checkpoint)
        if run_state["checkpoint_tag"] != self.checkpoint_tag:
            raise ValueError(
                f"checkpoint {checkpoint} is of another run configuration "
                f"({run_state['checkpoint_tag']!r}, this run {self.checkpoint_tag!r})"
            )
        self._resumed_state = (run_state, read_method_state(checkpoint))

    def _apply_resumed_state(self) -> None:
        """Called at on_train_begin: Trainer has by then loaded the checkpoint and built the optimizer
        (build_optimizer hooks write the method log again) and has just reset its logging window."""
        if self._resumed_state is None:
            return
        run_state, method_state = self._resumed_state
        self._resumed_state = None
        self.method.load_state_dict(method_state)  # after prepare_model: e.g. SMART's teacher exists
        self.context.log.clear()
        self.context.log.update(run_state["method_log"])
        restore_loss_window(self, run_state["loss_window"])

    def _attach_embedding_noise(self):
        return attach_embedding_noise(
            self.model, self.method.components, self.context, lambda: self._attention_mask
        )

    def _autocast_dtype(self) -> torch.dtype | None:
        """The dtype accelerate's mixed precision autocasts the forward to (bf16 also on CPU), or None."""
        if not getattr(self.accelerator, "native_amp", False):
            return None
        # fp8: accelerate autocasts the rest of the forward to bf16 (get_mixed_precision_context_manager), the
        # fp8 matmuls being its backend's own modules.
        precision = str(self.accelerator.mixed_precision)
        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp8": torch.bfloat16}.get(precision)

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        # Trainer fetches all the micro-batches of an optimizer step at once: count their rows, which weigh
        # the components' per-example terms in compute_loss.
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        self._rows_in_step = sum(_rows(batch) for batch in batch_samples)
        return batch_samples, num_items_in_batch

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self._attention_mask = inputs.get("attention_mask")
        outputs = model(**inputs)
        loss = outputs.loss
        terms: list[torch.Tensor] = []  # the components' extra terms, each a mean over the micro-batch's rows
        if model.training:
            batch = Batch(
                model=model,
                inputs=inputs,
                logits=getattr(outputs, "logits", None),  # QA models have start/end logits instead
                task_loss=loss,
                embed=lambda: model.get_input_embeddings()(inputs["input_ids"]),
                forward=lambda embeddings: forward_with_embeddings(model, inputs, embeddings),
                autocast_dtype=self._autocast_dtype(),
            )
            for component in self.method.components:
                term = component.extra_loss(batch, self.context)
                if term is not None:
                    terms.append(term)
        if num_items_in_batch is not None:
            loss = loss * self._share_of_accumulated_batch(inputs, num_items_in_batch)
            if terms:
                rows = self._share_of_accumulated_rows(inputs)
                terms = [term * rows for term in terms]
        for term in terms:
            loss = loss + term
        return (loss, outputs) if return_outputs else loss

    def _share_of_accumulated_batch(
        self, inputs: dict[str, Any], num_items_in_batch: torch.Tensor | int
    ) -> torch.Tensor | float:
        """This micro-batch's labelled items over those of the whole accumulated batch (one optimizer step):
        the weight of the model's task loss.

        Trainer counts `num_items_in_batch` (labels != -100 over all micro-batches of the step) when the
        model's forward takes **kwargs, and then treats the loss compute_loss returns as already normalised
        over the accumulated batch: training_step no longer divides it by the accumulation steps. The model's
        loss here is a mean over this micro-batch's labelled items (sequence classifiers: its rows; token
        classifiers: its tokens with a label; they never look at the count), so this share makes it the
        accumulated batch's mean. For a causal LM, whose loss is a mean over the micro-batch's labelled
        tokens, this is exactly Trainer's sum / num_items_in_batch. Without the count (QA heads, models
        without **kwargs), training_step divides by the accumulation steps itself.
        """
        labels = inputs.get("shift_labels")
        if labels is None:
            labels = inputs["labels"]  # Trainer counted the items from them, so they are there
            if getattr(self, "_loss_shifts_labels", False):  # causal LM: position 0 is never a target
                labels = labels[..., 1:]
        share = labels.ne(-100).sum() / num_items_in_batch
        if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
            # As Trainer.compute_loss: the count was summed over processes, whose gradients are averaged.
            share = share * self.accelerator.num_processes
        return share

    def _share_of_accumulated_rows(self, inputs: dict[str, Any]) -> float:
        """This micro-batch's rows over those of the optimizer step: the weight of the components' terms.

        R3F's and SMART's divergences are means over the rows (symmetric KL `batchmean`, squared error per
        example), whatever a row's number of labelled items: weighting them by the item share would, for token
        classification, give the micro-batch with more labelled tokens more than its rows' weight. No
        gathering across processes: each process's gradient is its own rows' mean, and DDP averages them.
        """
        rows_in_step = self._rows_in_step
        if not rows_in_step:
            raise RuntimeError(
                "RobustTrainer: num_items_in_batch was given, but get_batch_samples did not count the rows "
                "of the optimizer step"
            )
        return _rows(inputs) / rows_in_step

    def training_step(self, model, inputs, num_items_in_batch=None):
        owner = self.method.step_owner()
        if owner is None:
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        inputs = self._prepare_inputs(inputs)
        self._attention_mask = inputs.get("attention_mask")
        # Micro-batches of this optimizer step: fewer than gradient_accumulation_steps in an epoch's last one.
        accumulation_steps = getattr(
            self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps
        )
        share = self._owner_step_share(inputs, num_items_in_batch)
        step = StepFunctions(model, inputs, self.accelerator.backward, accumulation_steps, share)
        return owner.training_step(step, self.context).detach()

    def _owner_step_share(
        self, inputs: dict[str, Any], num_items_in_batch: torch.Tensor | int | None
    ) -> float | None:
        """The weight of this micro-batch's mean loss in the optimizer step, for a component that owns the
        step: its share of the step's rows (None, i.e. 1 / accumulation steps, when they were not counted).
        A trainer whose loss is a mean over tokens (the SFT trainer) weighs by tokens instead."""
        return _rows(inputs) / self._rows_in_step if self._rows_in_step else None

    def create_optimizer(self, model=None):
        owner = self.method.optimizer_owner()
        if owner is not None and self.optimizer is None:
            self.optimizer = owner.build_optimizer(self.model, self.args, self.context)
        return super().create_optimizer(model)
