"""SMART (Jiang et al., ACL 2020): smoothness-inducing adversarial regularisation + momentum Bregman
proximal point optimisation (paper Eq. 1-4 and Algorithm 1).

    F(θ) = L_task(θ) + λ_s · R_s(θ) + μ · D_Breg(θ, θ̃)
    R_s(θ)       = ℓ_s(f(x + ν_adv; θ), f(x; θ))         ν_adv: K ascent steps from ν ~ N(0, σ²)
    D_Breg(θ, θ̃) = ℓ_s(f(x; θ), f(x; θ̃))                 θ̃: EMA teacher, θ̃ ← β·θ̃ + (1-β)·θ per update

ℓ_s is the symmetric KL for classification and the squared error for regression (divergences.py), in
fp32 and averaged over the batch. x is the WORD embedding `word_embeddings(input_ids)` only; the
perturbed input goes in as `inputs_embeds`, so positions and token types are added exactly once (the
mt-dnn code feeds the full embedding output back in and adds them twice, mt-dnn#230; methods.md §2.3).

Ascent (Alg. 1, inner loop), on ν with x detached, K = `ascent_steps` times:
    g = ∇_ν Σ_i ℓ_s(f(x_i + ν_i), f(x_i).detach())     (summed over the batch: each example's ν
                                                         depends on its own loss only, as in mt-dnn)
    `perturbation_norm: project` (paper, default):
        ν ← clamp(ν + η · g / ||g||_∞, -ε, ε)           (||·||_∞ per token; projection on the ℓ∞ ball)
    `perturbation_norm: normalize` (namisan/mt-dnn `mt_dnn/perturbation.py`, the code behind the
    published numbers):
        ν ← (ν + η · g) / (||ν + η · g||_∞ + 1e-6)      (raw g, per-token ℓ∞, no projection; `radius` unused)
      so every token's perturbation has ℓ∞ norm ≈ 1, not ε, and at σ = 1e-5 it is essentially the
      initial Gaussian direction rescaled (mt-dnn#214/#224, methods.md §2.2-2.3). mt-dnn's ascent loss is
      its `stable_kl` (log-odds form); ours is ℓ_s, so `normalize` matches mt-dnn's update rule, not its
      exact ascent gradient. mt-dnn's CLI default η is 1e-5; set `step_size` to reproduce it.
If the ascent gradient is NaN/inf the adversarial term is skipped for that step and counted in the run
log (mt-dnn `return 0`s there, which crashes its caller).

Bregman term: no public code (mt-dnn#147), so it follows Alg. 1: θ̃ starts as θ_0 and is a separate,
frozen `copy.deepcopy` of the model (requires_grad False), updated after every optimizer step with
`torch._foreach_lerp_` (buffers copied), β = `momentum` for the first `momentum_warmup_fraction` of
updates (t ≤ 0.1·T) and `momentum_final` afterwards. The teacher is never part of the student, so
weight decay and clipping do not see it; checkpoints save it through `state_dict`.

Defaults (paper Sec. 4.1 "Implementation details" and Alg. 1; methods.md §2.1): λ_s = 1 (grid {1, 3, 5}),
σ = 1e-5, ε = 1e-5, η = 1e-3, K = T̄ = 1, ℓ∞ norm, μ = 1, β = 0.99 for the first 10% of updates then
0.999. S = 1 inner iteration (θ̄ is θ), so the outer loop is the optimizer step itself.

Choices where the paper is silent (each documented so a run is unambiguous):
- `mask_padding` (default True): ν is zero at padding positions (initial noise and every update);
  mt-dnn noises padding too (`mask_padding: false`). Attended-away padding barely matters either way.
- Per-token ℓ∞ normalisation of g (mt-dnn `adv_norm_level 0`); the paper's x_i is the whole sequence.
- `kl_detach_opposite` (default True, mt-dnn `SymKlCriterion`): in R_s each KL term treats its reference
  distribution as a constant; False lets gradients flow through both sides (the plain gradient of ℓ_s).
  The ascent uses the full ℓ_s gradient (the clean side is detached anyway), and D_Breg too (the teacher
  is a constant, so the gradient of ℓ_s in the student is unambiguous).
- Dropout: the clean, ascent and final adversarial forwards each draw their own dropout masks, so R_s
  also penalises dropout disagreement (an R-Drop-like effect, as in mt-dnn). Kept on purpose.
- The final adversarial forward re-looks up the word embeddings (not detached), so R_s also trains the
  embedding table, as in mt-dnn (fairseq's R3F detaches instead).
- The teacher runs in eval mode (no dropout) under no_grad, and consumes no RNG.
- Teacher init = the model as `prepare_model` sees it, i.e. after the components listed BEFORE smart:
  `noisytune+smart` starts the teacher at the perturbed weights (θ_0 of fine-tuning), `smart+noisytune`
  at the unperturbed ones. Composition order matters.
- λ_s = 0 runs no adversarial forward and μ = 0 creates no teacher; with both 0 the component does
  nothing and draws no random numbers, so it is plain fine-tuning step for step.

Precision: ν is drawn and updated in fp32 and added to the fp32 embeddings; it is cast back only for a
model loaded in half precision, where σ = ε = 1e-5 rounds away (methods.md §7). Gradient checkpointing
with reentrant checkpoints does not support the ascent's `torch.autograd.grad`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustft.methods.base import (
    Batch,
    Component,
    MethodConfigError,
    RunContext,
    register_component,
    require_choice,
    require_number,
)
from robustft.methods.divergences import output_divergence

PERTURBATION_NORMS = ("project", "normalize")
NORMALIZE_EPS = 1e-6  # mt-dnn `--adv_epsilon`: the stabiliser of its ℓ∞ normaliser


MAX_ASCENT_STEPS = 10  # K: 1 in the paper; PGD-style sweeps stop well below 10


def _require_bool(setting: str, value: object) -> None:
    if not isinstance(value, bool):
        raise MethodConfigError(f"smart.{setting} must be true or false, got {value!r}")


@register_component
@dataclass
class SMART(Component):
    name = "smart"
    paper = "Jiang et al., ACL 2020, Eq. 1-4, Algorithm 1, Sec. 4.1"

    smoothness_weight: float = 1.0  # λ_s: Sec. 4.1, grid {1, 3, 5}
    noise_std: float = 1e-5  # σ: Sec. 4.1
    radius: float = 1e-5  # ε, ℓ∞ ball: Sec. 4.1 (project mode only)
    step_size: float = 1e-3  # η: Sec. 4.1 (mt-dnn CLI: 1e-5)
    ascent_steps: int = 1  # K = T̄: Sec. 4.1
    perturbation_norm: str = "project"  # paper's projection; "normalize" = mt-dnn
    kl_detach_opposite: bool = True  # mt-dnn SymKlCriterion
    mask_padding: bool = True  # our choice; mt-dnn noises padding
    bregman_weight: float = 1.0  # μ: Sec. 4.1
    momentum: float = 0.99  # β for the first `momentum_warmup_fraction` of updates: Sec. 4.1
    momentum_final: float = 0.999  # β afterwards: Sec. 4.1
    momentum_warmup_fraction: float = 0.1  # Sec. 4.1: "first 10% of the updates"

    def __post_init__(self) -> None:
        self._teacher: nn.Module | None = None  # not a dataclass field: settings() must not copy it
        super().__post_init__()

    def validate(self) -> None:
        # Upper bounds far above every published value: the paper finds λ_s >= 100 "too strong" (its grid is
        # {1, 3, 5}); σ and ε perturb each coordinate of embeddings whose entries are about 0.05, so 1 is
        # noise 20 times the signal.
        for setting, maximum, why in (
            ("smoothness_weight", 100.0, "the paper tunes 1 to 5 and finds 100 too strong"),
            ("bregman_weight", 100.0, "the paper uses 1"),
            ("noise_std", 1.0, "the paper uses 1e-5; embedding entries are about 0.05"),
            ("radius", 1.0, "the paper uses 1e-5 and finds 1e-5 to 1e-4 equivalent"),
        ):
            require_number(
                "smart", setting, getattr(self, setting), 0.0, maximum, max_inclusive=True, why=why
            )
        # No upper bound on η: `project` clamps the step to ε and `normalize` rescales it away, so a large η
        # only means "follow the gradient, not the initial noise".
        require_number("smart", "step_size", self.step_size)
        if (
            isinstance(self.ascent_steps, bool)
            or not isinstance(self.ascent_steps, int)
            or not 1 <= self.ascent_steps <= MAX_ASCENT_STEPS
        ):
            raise MethodConfigError(
                f"smart.ascent_steps must be an integer in [1, {MAX_ASCENT_STEPS}] (the paper uses 1; each "
                f"step costs a forward and a backward pass), got {self.ascent_steps!r}"
            )
        require_choice("smart", "perturbation_norm", self.perturbation_norm, PERTURBATION_NORMS)
        _require_bool("kl_detach_opposite", self.kl_detach_opposite)
        _require_bool("mask_padding", self.mask_padding)
        for setting in ("momentum", "momentum_final", "momentum_warmup_fraction"):
            require_number("smart", setting, getattr(self, setting), 0.0, 1.0, max_inclusive=True)

    # ------------------------------------------------------------------------------------------ setup

    def prepare_model(self, model: nn.Module, context: RunContext) -> None:
        if self.smoothness_weight > 0:
            getter = getattr(model, "get_input_embeddings", None)
            try:
                embeddings = getter() if getter is not None else None
            except NotImplementedError:
                embeddings = None
            if embeddings is None:
                raise MethodConfigError(
                    f"smart.smoothness_weight > 0 needs input embeddings; {type(model).__name__} has none "
                    "(set smart.smoothness_weight to 0 for the Bregman term alone)"
                )
        self._teacher = None
        if self.bregman_weight > 0:
            # θ̃_0 = θ_0: the model after the components before us (e.g. NoisyTune) have acted.
            teacher = copy.deepcopy(model)
            teacher.requires_grad_(False)
            self._teacher = teacher.eval()
        context.log["smart"] = {
            "perturbation_norm": self.perturbation_norm,
            "divergence": "squared_error" if context.regression else "symmetric_kl",
            "teacher": self._teacher is not None,
            "ascent_skipped_nonfinite": 0,
        }

    # ------------------------------------------------------------------------------------------ loss

    def extra_loss(self, batch: Batch, context: RunContext) -> torch.Tensor | None:
        terms = []
        if self.smoothness_weight > 0:
            smoothness = self.smoothness_term(batch, context)
            if smoothness is not None:
                terms.append(self.smoothness_weight * smoothness)
        if self.bregman_weight > 0:
            if self._teacher is None:
                raise RuntimeError("smart.bregman_weight > 0 but prepare_model has not created the teacher")
            terms.append(self.bregman_weight * self.bregman_term(batch, context))
        return sum(terms) if terms else None

    def _padding_mask(self, batch: Batch) -> torch.Tensor | None:
        """(B, L, 1) fp32 mask of the real tokens, or None when padding is noised too."""
        mask = batch.attention_mask
        if not self.mask_padding or mask is None:
            return None
        return mask.unsqueeze(-1).to(torch.float32)

    def adversarial_perturbation(self, batch: Batch, context: RunContext) -> torch.Tensor | None:
        """ν_adv (fp32, shape of the word embeddings) after K ascent steps; None if the gradient is not
        finite."""
        embeddings = batch.embed().detach()
        base = embeddings.float()
        clean = batch.logits.detach()
        mask = self._padding_mask(batch)
        noise = torch.randn(base.shape, dtype=torch.float32, device=base.device) * self.noise_std
        if mask is not None:
            noise = noise * mask
        for _ in range(self.ascent_steps):
            noise.requires_grad_(True)
            adversarial = batch.forward((base + noise).to(embeddings.dtype))
            # Summed over the batch, so an example's ascent step does not shrink with the batch size.
            loss = output_divergence(adversarial, clean, context.regression) * clean.shape[0]
            (grad,) = torch.autograd.grad(loss, noise, allow_unused=True)
            noise = noise.detach()
            if grad is None:  # the output does not depend on the input at all
                grad = torch.zeros_like(noise)
            if not bool(torch.isfinite(grad).all()):
                return None
            if self.perturbation_norm == "project":
                # g/||g||_∞ per token; clamp_min instead of "+ eps" keeps the direction exact when g is tiny
                direction = grad / grad.abs().amax(dim=-1, keepdim=True).clamp_min(
                    torch.finfo(grad.dtype).tiny
                )
                noise = (noise + self.step_size * direction).clamp(-self.radius, self.radius)
            else:  # mt-dnn: normalise the SUM by its per-token ℓ∞ norm, no projection
                noise = noise + self.step_size * grad
                noise = noise / (noise.abs().amax(dim=-1, keepdim=True) + NORMALIZE_EPS)
            if mask is not None:
                noise = noise * mask
        return noise

    def smoothness_term(self, batch: Batch, context: RunContext) -> torch.Tensor | None:
        """R_s with gradients to θ, or None (logged) when the ascent gradient is NaN/inf."""
        noise = self.adversarial_perturbation(batch, context)
        if noise is None:
            log = context.log.setdefault("smart", {})
            log["ascent_skipped_nonfinite"] = log.get("ascent_skipped_nonfinite", 0) + 1
            return None
        embeddings = batch.embed()  # a fresh lookup: R_s also trains the embedding table
        adversarial = batch.forward((embeddings.float() + noise).to(embeddings.dtype))
        return output_divergence(
            adversarial, batch.logits, context.regression, detach_opposite=self.kl_detach_opposite
        )

    def _teacher_on(self, model: nn.Module) -> nn.Module:
        """The teacher, moved to the model's device (the Trainer moves the model after prepare_model)."""
        teacher = self._teacher
        device = next(model.parameters()).device
        if next(teacher.parameters()).device != device:
            teacher.to(device)
        return teacher

    def bregman_term(self, batch: Batch, context: RunContext) -> torch.Tensor:
        """ℓ_s(f(x; θ), f(x; θ̃)); the teacher output is a constant."""
        teacher = self._teacher_on(batch.model)
        inputs = {key: value for key, value in batch.inputs.items() if key != "labels"}
        with torch.no_grad():
            teacher_logits = teacher(**inputs).logits
        return output_divergence(batch.logits, teacher_logits, context.regression)

    # ------------------------------------------------------------------------------------------ teacher

    def beta(self, context: RunContext) -> float:
        """β for the update that has just happened (context.step counts updates, the first is 1)."""
        if context.step <= self.momentum_warmup_fraction * context.max_steps:
            return self.momentum
        return self.momentum_final

    def after_optimizer_step(self, model: nn.Module, context: RunContext) -> None:
        if self._teacher is None:
            return
        teacher = self._teacher_on(model)
        teacher_parameters, parameters = list(teacher.parameters()), list(model.parameters())
        if len(teacher_parameters) != len(parameters):
            raise RuntimeError(
                f"smart: the teacher has {len(teacher_parameters)} parameter tensors, the model "
                f"{len(parameters)}; the model's structure changed after prepare_model"
            )
        with torch.no_grad():
            # θ̃ ← θ̃ + (1-β)(θ - θ̃) = β·θ̃ + (1-β)·θ
            torch._foreach_lerp_(
                teacher_parameters, [p.detach() for p in parameters], 1.0 - self.beta(context)
            )
            for teacher_buffer, buffer in zip(teacher.buffers(), model.buffers(), strict=True):
                teacher_buffer.copy_(buffer)

    # ------------------------------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        # θ̃ averages past student weights: neither the checkpoint's model nor prepare_model can rebuild it.
        return {} if self._teacher is None else {"teacher": self._teacher.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (self._teacher is None) != ("teacher" not in state):
            raise ValueError(
                f"smart: the checkpoint {'has' if 'teacher' in state else 'lacks'} an EMA teacher, this run "
                f"{'has none' if self._teacher is None else 'has one'} (bregman_weight {self.bregman_weight})"
            )
        if self._teacher is not None:
            self._teacher.load_state_dict(state["teacher"])
