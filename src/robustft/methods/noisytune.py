"""NoisyTune (Wu et al., ACL 2022): perturb each pretrained tensor once before fine-tuning.

    W <- W + U(-λ/2, λ/2) · std(W)

Matrix-wise: every tensor gets its own scale std(W). Tensors with std 0 (e.g. RoBERTa's constant
token-type embedding) and tensors with a single element (no std) are left alone, and so is the new task
head, which is random already and not part of the pretrained model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from robustft.methods.base import Component, MethodConfigError, RunContext, register_component


@register_component
@dataclass
class NoisyTune(Component):
    name = "noisytune"
    paper = "Wu et al., ACL 2022, Eq. 1"

    noise_lambda: float = 0.15  # paper: 0.15 on GLUE, 0.1 on XTREME

    def validate(self) -> None:
        value = self.noise_lambda
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
            raise MethodConfigError(f"noisytune.noise_lambda must be a finite number >= 0, got {value!r}")

    def prepare_model(self, model: nn.Module, context: RunContext) -> None:
        generators: dict[torch.device, torch.Generator] = {}
        perturbed, constant = 0, []
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name in context.new_parameter_names:
                    continue
                # fp32 statistics and noise: in bf16 small perturbations would round away.
                weights = parameter.detach().float()
                std = weights.std() if weights.numel() > 1 else weights.new_zeros(())
                if std == 0:
                    constant.append(name)
                    continue
                device = parameter.device
                if device not in generators:
                    generators[device] = torch.Generator(device=device).manual_seed(context.seed)
                uniform = torch.rand(weights.shape, generator=generators[device], device=device)
                parameter.copy_(weights + (uniform - 0.5) * self.noise_lambda * std)
                perturbed += 1
        context.log["noisytune"] = {
            "tensors_perturbed": perturbed,
            "tensors_constant_skipped": constant,
            "tensors_new_head_skipped": sorted(context.new_parameter_names),
        }
