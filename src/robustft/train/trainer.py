"""The Hugging Face Trainer, with the method components' hooks wired in (see methods/base.py).

Plain fine-tuning goes through Trainer's own code unchanged: with no components every hook is a no-op,
so `finetune` is exactly the library's training loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback

from robustft.methods import Method, RunContext
from robustft.methods.base import Batch, Component, overrides


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
    gradient_accumulation_steps: int

    def embed(self) -> torch.Tensor:
        return self.model.get_input_embeddings()(self.inputs["input_ids"])

    def loss_with_embeddings(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kwargs = {k: v for k, v in self.inputs.items() if k != "input_ids"}
        outputs = self.model(inputs_embeds=embeddings, **kwargs)
        return outputs.loss, outputs.logits


class _ComponentStepCallback(TrainerCallback):
    def __init__(self, method: Method, context: RunContext) -> None:
        self.method, self.context = method, context

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self.context.max_steps = state.max_steps

    def on_step_end(self, args, state, control, model=None, **kwargs) -> None:
        self.context.step = state.global_step
        for component in self.method.components:
            component.after_optimizer_step(model, self.context)


class RobustTrainer(Trainer):
    def __init__(self, *args: Any, method: Method, context: RunContext, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.method, self.context = method, context
        self._attention_mask: torch.Tensor | None = None
        self.add_callback(_ComponentStepCallback(method, context))

    def train(self, *args: Any, **kwargs: Any):
        handle = self._attach_embedding_noise()
        try:
            return super().train(*args, **kwargs)
        finally:  # the noise must never outlive training, even when it raises (unlike transformers' hook)
            if handle is not None:
                handle.remove()

    def _attach_embedding_noise(self):
        return attach_embedding_noise(
            self.model, self.method.components, self.context, lambda: self._attention_mask
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self._attention_mask = inputs.get("attention_mask")
        outputs = model(**inputs)
        loss = outputs.loss
        if model.training:
            batch = Batch(
                model=model,
                inputs=inputs,
                logits=outputs.logits,
                task_loss=loss,
                embed=lambda: model.get_input_embeddings()(inputs["input_ids"]),
                forward=lambda embeddings: forward_with_embeddings(model, inputs, embeddings),
            )
            for component in self.method.components:
                term = component.extra_loss(batch, self.context)
                if term is not None:
                    loss = loss + term
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        owner = self.method.step_owner()
        if owner is None:
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        inputs = self._prepare_inputs(inputs)
        self._attention_mask = inputs.get("attention_mask")
        step = StepFunctions(model, inputs, self.accelerator.backward, self.args.gradient_accumulation_steps)
        return owner.training_step(step, self.context).detach()

    def create_optimizer(self, model=None):
        owner = self.method.optimizer_owner()
        if owner is not None and self.optimizer is None:
            self.optimizer = owner.build_optimizer(self.model, self.args, self.context)
        return super().create_optimizer(model)
