"""NoisyTune (Wu et al., ACL 2022): perturb each pretrained tensor once before fine-tuning.

    W <- W + U(-λ/2, λ/2) · std(W)                     (Eq. 1: matrix-wise, uniform; the paper's method)

Variants of the paper's Figure 2 (`scale` × `distribution`):
- `scale: global`: one scale for every tensor. The paper does not say which; we use the std of all
  perturbed parameters pooled together.
- `distribution: gaussian`: N(0, σ²) with σ = λ·s/√12, the same variance as the uniform noise (the paper
  does not say how it matched them).
Tensors with std 0 (e.g. RoBERTa's constant token-type embedding) and single-element tensors (no std)
are left alone (matrix-wise), and so is the new task head, which is not part of the pretrained model.
`exclude` (regular expressions on parameter names) keeps tensors out, e.g. `word_embeddings` for
multilingual models (NoisyTune Table 3); `include`, when given, limits the perturbation to matches.
Noise is drawn in fp32 on each tensor's own device from a generator seeded with the run seed.

Quantized weights (4-bit QLoRA: bitsandbytes Params4bit, also Int8Params or any non-floating parameter)
are refused with a MethodConfigError naming them, not perturbed. Their storage is packed codes, so noise
added to it is not noise on the weights; and perturbing the de-quantized weights would not survive
re-quantization: NF4 has 16 levels per block, far coarser than noise of λ/2 = 0.075 std, so nearly all
of it would round away. To combine NoisyTune with an adapter, use LoRA on unquantized weights, or keep
the quantized tensors out with `exclude`.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from robustft.errors import MethodConfigError
from robustft.methods.base import RunContext, is_quantized
from robustft.methods.settings import NoisyTuneSettings


class NoisyTune(NoisyTuneSettings):
    """NoisyTune's hooks; its settings and their checks are NoisyTuneSettings (methods/settings.py)."""

    def _selected(self, model: nn.Module, context: RunContext) -> list[tuple[str, nn.Parameter]]:
        def matches(name: str, patterns: list[str]) -> bool:
            return any(re.search(pattern, name) for pattern in patterns)

        return [
            (name, parameter)
            for name, parameter in model.named_parameters()
            if name not in context.new_parameter_names
            and (not self.include or matches(name, self.include))
            and not matches(name, self.exclude)
        ]

    def prepare_model(self, model: nn.Module, context: RunContext) -> None:
        selected = self._selected(model, context)
        if not selected:
            raise MethodConfigError("noisytune: include/exclude leave no parameter to perturb")
        quantized = [name for name, parameter in selected if is_quantized(parameter)]
        if quantized:
            more = f", … ({len(quantized)} in all)" if len(quantized) > 4 else ""
            shown = ", ".join(quantized[:4]) + more
            raise MethodConfigError(
                f"noisytune: the parameters {shown} are stored quantized (e.g. 4-bit QLoRA); NoisyTune "
                "perturbs weights, not quantized codes, and re-quantizing perturbed weights would round the "
                "noise away. Run it on unquantized weights (adapter full or lora), or keep these out with "
                "noisytune.exclude"
            )
        generators: dict[torch.device, torch.Generator] = {}
        perturbed, constant = [], []
        with torch.no_grad():
            global_std = self._global_std(selected) if self.scale == "global" else None
            for name, parameter in selected:
                # fp32 statistics and noise: in bf16 small perturbations would round away.
                weights = parameter.detach().float()
                std = weights.std() if weights.numel() > 1 else weights.new_zeros(())
                if std == 0:
                    constant.append(name)
                    continue
                scale = std if global_std is None else global_std.to(weights.device)
                device = parameter.device
                if device not in generators:
                    generators[device] = torch.Generator(device=device).manual_seed(context.seed)
                noise = self._unit_noise(weights, generators[device]).mul_(scale)
                if weights is parameter.data:
                    parameter.add_(noise)  # fp32 parameter: in place, no extra copy of the tensor
                else:
                    parameter.copy_(weights.add_(noise))
                perturbed.append(name)
        context.log["noisytune"] = {
            "tensors_perturbed": len(perturbed),
            "tensors_constant_skipped": constant,
            "tensors_new_head_skipped": sorted(context.new_parameter_names),
            "tensors_excluded": sorted(
                {n for n, _ in model.named_parameters()}
                - {n for n, _ in selected}
                - set(context.new_parameter_names)
            ),
            "global_std": None if global_std is None else float(global_std),
        }

    @staticmethod
    def _global_std(selected: list[tuple[str, nn.Parameter]]) -> torch.Tensor:
        """Std of all selected parameters pooled, from per-tensor sums (no concatenated copy)."""
        count = sum(p.numel() for _, p in selected)
        total = sum(p.detach().double().sum() for _, p in selected)
        total_sq = sum(p.detach().double().pow(2).sum() for _, p in selected)
        mean = total / count
        return ((total_sq - count * mean**2) / (count - 1)).sqrt().float()

    def _unit_noise(self, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Noise for a unit scale: U(-λ/2, λ/2), or the Gaussian of the same variance (λ²/12)."""
        if self.distribution == "uniform":
            noise = torch.rand(like.shape, generator=generator, device=like.device)
            return noise.sub_(0.5).mul_(self.noise_lambda)
        noise = torch.randn(like.shape, generator=generator, device=like.device)
        return noise.mul_(self.noise_lambda / math.sqrt(12))
