"""SMART (Jiang et al., ACL 2020): smoothness-inducing adversarial regularisation + momentum Bregman
proximal point optimisation (paper Eq. 1-4 and Algorithm 1).

    F(θ) = L_task(θ) + λ_s · R_s(θ) + μ · D_Breg(θ, θ̃)
    R_s(θ)       = ℓ_s(f(x + ν_adv; θ), f(x; θ))         ν_adv: K ascent steps from ν ~ N(0, σ²)
    D_Breg(θ, θ̃) = ℓ_s(f(x; θ), f(x; θ̃))                 θ̃: EMA teacher, θ̃ ← β·θ̃ + (1-β)·θ per update

ℓ_s is the symmetric KL for classification and the squared error for regression (divergences.py), in
fp32 and averaged over the batch.

Two regimes, chosen by `perturbation_norm`; the settings left unset follow it:

- `normalize` (default) follows mt-dnn's `mt_dnn/perturbation.py`, the authors' only public code and
  the one behind the published numbers: ν ← (ν + η·g) / (‖ν + η·g‖_∞ + 1e-6), no projection (ε unused),
  η = 1e-5 (mt-dnn's CLI default), ‖·‖_∞ per token (mt-dnn `adv_norm_level 0`); ‖ν‖_∞ ≈ 1 per token.
- `project` follows the paper's Algorithm 1 and Sec. 4.1: ν ← clamp(ν + η·g/‖g‖_∞, -ε, ε), η = 1e-3,
  ‖·‖_∞ per example (the paper's x_i is a whole sequence); ‖ν‖_∞ ≤ ε = 1e-5.
`step_size` and `norm_scope` (token | example) may be set explicitly in either mode.

σ = 1e-5 in both. In `normalize`, at σ = η = 1e-5 the ascent step is tiny next to the initial noise, so ν
is essentially the initial Gaussian direction rescaled to unit ℓ∞. On MiniLM-L6 (measured, docs/methods.md) it
moves the last hidden state 0.8 times as much as dropout does; in `project` the change is ~1e-4 of
dropout's, so R_s acts almost only as a dropout-consistency term. mt-dnn's ascent loss is its
`stable_kl` (log-odds form); ours is ℓ_s, so `normalize` matches mt-dnn's update rule, not its exact
ascent gradient.

Where ν is added, `perturbation_site`:
- `embedding_output` (default, mt-dnn before its 2021 double-embedding bug, mt-dnn#230): the output of the
  base model's `embeddings` module (word + position + token-type embeddings after LayerNorm and dropout),
  i.e. the encoder's input. A forward hook adds ν there, so positions are added exactly once. Models
  without such a module (XLNet, Llama: relative or rotary positions) feed the word embeddings straight to
  their layers, so there the site falls back to the word embeddings (logged as `perturbation_site_used`);
  a model that adds learned position embeddings in its forward (GPT-2, OPT) is refused.
- `word_embeddings`: the output of `get_input_embeddings()`, before positions are added (FreeLB, R3F).

Ascent (Alg. 1, inner loop), on ν, K = `ascent_steps` times:
    g = ∇_ν Σ_i ℓ_s(f(x_i + ν_i), f(x_i).detach())     (summed over the batch: each example's ν
                                                         depends on its own loss only, as in mt-dnn)
If the ascent gradient is NaN/inf the adversarial term is skipped for that step and counted in the run
log (mt-dnn `return 0`s there, which crashes its caller).

Precision, `adversarial_precision`: under bf16/fp16 autocast a perturbation far below the half-precision
spacing rounds away in the first matmul, and what R_s then sees is rounding noise (measured on MiniLM-L6,
`project` at the embedding output, docs/methods.md: the logits change by 2.8e-4 in fp32 and by 6e-3 under bf16
autocast, a change that does not flip sign with ν: rounding, not ν).
- `fp32` (default): R_s's clean reference, its ascent and its adversarial forward run in fp32 with
  autocast disabled, also when accelerate has wrapped the model's forward in autocast (the wrapper's
  forward is swapped out on the unwrapped module under DDP / DataParallel, and put back afterwards, also
  on an error). Under mixed precision that costs one more forward (and its backward): the clean reference
  of R_s is recomputed in fp32 instead of reusing the training forward's logits. In an fp32 run nothing
  changes. If R_s's forward still ran under autocast, or gave non-fp32 logits (half-precision weights), the
  step raises an error saying so rather than training on rounding noise.
- `autocast`: the forwards run in the training precision and R_s reuses the training forward's logits.
Without mixed precision, half-precision weights run R_s in their dtype; ν is cast to it.
The EMA teacher runs under the same autocast as the student's training forward (it is copied before
accelerate wraps the student, so it would otherwise run in fp32 against a bf16 student).

Measured effect: on the first training batch SMART measures, in eval mode and in R_s's precision, how
much ν_adv changes the logits and the last hidden state relative to the clean forward, and how much
dropout alone changes them, and writes it to the run log (`method_log.smart.effect` in run.json). It
runs under `torch.random.fork_rng`, so the run's random stream is unchanged. `logits_change_symmetry`
is the cosine between the logit change from +ν and the negated change from −ν: ≈ 1 when the change is
ν's own (a small ν acts linearly), well below 1 (near 0 or negative) when it is rounding, which does not
flip sign with ν. The measurement never stops a run: when the ascent gradient is not finite, or the
measurement fails, it is tried again on the next batch (up to 10), and `effect.skipped` says why; a model
without hidden states gets the logits' numbers only (`hidden_skipped`).

Bregman term: no public code (mt-dnn#147), so it follows Alg. 1: θ̃ starts as θ_0 and is a separate,
frozen `copy.deepcopy` of the model (requires_grad False), updated after every optimizer step with
`torch._foreach_lerp_` (buffers copied), β = `momentum` for the first `momentum_warmup_fraction` of
updates (t ≤ 0.1·T) and `momentum_final` afterwards. The teacher is never part of the student, so
weight decay and clipping do not see it; checkpoints save it through `state_dict`.

Other defaults (paper Sec. 4.1 "Implementation details" and Alg. 1): λ_s = 1 (grid {1, 3, 5}), σ = 1e-5,
ε = 1e-5, K = T̄ = 1, ℓ∞ norm, μ = 1, β = 0.99 for the first 10% of updates then 0.999. S = 1 inner
iteration (θ̄ is θ), so the outer loop is the optimizer step itself.

Choices where the paper is silent (each documented so a run is unambiguous):
- `mask_padding` (default True): ν is zero at padding positions (initial noise and every update);
  mt-dnn noises padding too (`mask_padding: false`). Attended-away padding barely matters either way.
- `kl_detach_opposite` (default True, mt-dnn `SymKlCriterion`): in R_s each KL term treats its reference
  distribution as a constant; False lets gradients flow through both sides (the plain gradient of ℓ_s).
  The ascent uses the full ℓ_s gradient (the clean side is detached anyway), and D_Breg too (the teacher
  is a constant, so the gradient of ℓ_s in the student is unambiguous).
- Dropout: the clean, ascent and final adversarial forwards each draw their own dropout masks (the
  embeddings' dropout included), so R_s also penalises dropout disagreement (an R-Drop-like effect, as in
  mt-dnn). Kept on purpose.
- The final adversarial forward recomputes the embeddings (not detached), so R_s also trains the
  embedding table, as in mt-dnn (fairseq's R3F detaches instead).
- The teacher runs in eval mode (no dropout) under no_grad, and consumes no RNG.
- Teacher init = the model as `prepare_model` sees it, i.e. after the components listed BEFORE smart:
  `noisytune+smart` starts the teacher at the perturbed weights (θ_0 of fine-tuning), `smart+noisytune`
  at the unperturbed ones. Composition order matters.
- λ_s = 0 runs no adversarial forward and μ = 0 creates no teacher; with both 0 the component does
  nothing and draws no random numbers, so it is plain fine-tuning step for step.

Gradient checkpointing with reentrant checkpoints does not support the ascent's `torch.autograd.grad`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from robustft.errors import MethodConfigError
from robustft.methods.base import Batch, RunContext
from robustft.methods.divergences import output_divergence
from robustft.methods.settings import SMARTSettings

logger = logging.getLogger(__name__)

NORMALIZE_EPS = 1e-6  # mt-dnn `--adv_epsilon`: the stabiliser of its ℓ∞ normaliser
# Batches on which the effect measurement is tried before it is given up (its reason stays in the log).
MAX_EFFECT_ATTEMPTS = 10


def _device_type(model: nn.Module) -> str:
    return next(model.parameters()).device.type


@contextlib.contextmanager
def full_precision(model: nn.Module) -> Iterator[None]:
    """Run `model` without autocast, also when accelerate has wrapped its forward in one.

    accelerate's mixed precision replaces the instance's `forward` by one that enters autocast itself (and
    keeps the original as `_original_forward`), so an outer `torch.autocast(enabled=False)` alone would be
    overridden; the original forward is put back for the duration, also when the body raises. accelerate
    patches the model before wrapping it for DDP / DataParallel, whose forward calls `.module`'s, so the
    swap is made on the unwrapped module."""
    module = getattr(model, "module", model)
    wrapped = module.__dict__.get("forward")
    original = getattr(module, "_original_forward", None)
    with torch.autocast(_device_type(model), enabled=False):
        if wrapped is None or original is None:
            yield
            return
        module.forward = original
        try:
            yield
        finally:
            module.forward = wrapped


def _relative_change(changed: torch.Tensor, reference: torch.Tensor) -> float:
    """‖changed - reference‖ / ‖reference‖ (Frobenius, fp32)."""
    changed, reference = changed.detach().float(), reference.detach().float()
    return float((changed - reference).norm() / reference.norm().clamp_min(1e-30))


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float().reshape(-1), b.detach().float().reshape(-1)
    return float(a @ b / (a.norm() * b.norm()).clamp_min(1e-30))


class SMART(SMARTSettings):
    """SMART's hooks; its settings and their checks are SMARTSettings (methods/settings.py)."""

    def __post_init__(self) -> None:
        # Not dataclass fields: settings() must not copy them.
        self._teacher: nn.Module | None = None
        self._site_module: nn.Module | None = None
        self._site_autocast = False  # autocast on at the perturbation site in the last perturbed forward
        super().__post_init__()  # fills in the perturbation_norm's defaults, then validates

    # ------------------------------------------------------------------------------------------ setup

    def _perturbation_site(self, model: nn.Module) -> tuple[nn.Module, str]:
        """The module whose output ν is added to, and the site that is (after any fallback)."""
        getter = getattr(model, "get_input_embeddings", None)
        try:
            word_embeddings = getter() if getter is not None else None
        except NotImplementedError:
            word_embeddings = None
        if word_embeddings is None:
            raise MethodConfigError(
                f"smart.smoothness_weight > 0 needs input embeddings; {type(model).__name__} has none "
                "(set smart.smoothness_weight to 0 for the Bregman term alone)"
            )
        if self.perturbation_site == "word_embeddings":
            return word_embeddings, "word_embeddings"
        base = getattr(model, "base_model", model)
        embeddings = getattr(base, "embeddings", None)
        if isinstance(embeddings, nn.Module):  # BERT, RoBERTa, ELECTRA, XLM-R: the encoder's input
            return embeddings, "embedding_output"
        # No embedding module: the model feeds its word embeddings to its layers, unless it adds learned
        # positions in its own forward (GPT-2 `wpe`, OPT `embed_positions`), where no hook sees the sum.
        position_tables = [
            name
            for name, module in base.named_modules()
            if isinstance(module, nn.Embedding)
            and module is not word_embeddings
            and ("position" in name or name.rsplit(".", 1)[-1] == "wpe")
        ]
        if position_tables:
            raise MethodConfigError(
                f"smart.perturbation_site 'embedding_output': {type(model).__name__} has no embedding module "
                f"and adds the position embeddings {position_tables} inside its forward, where SMART cannot "
                "perturb the sum; set smart.perturbation_site to 'word_embeddings'"
            )
        return word_embeddings, "word_embeddings"

    def prepare_model(self, model: nn.Module, context: RunContext) -> None:
        self._site_module, site_used = None, None
        if self.smoothness_weight > 0:
            self._site_module, site_used = self._perturbation_site(model)
        self._teacher = None
        if self.bregman_weight > 0:
            # θ̃_0 = θ_0: the model after the components before us (e.g. NoisyTune) have acted.
            teacher = copy.deepcopy(model)
            teacher.requires_grad_(False)
            self._teacher = teacher.eval()
        context.log["smart"] = {
            "perturbation_norm": self.perturbation_norm,
            "perturbation_site_used": site_used,
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

    @staticmethod
    def autocast_dtype(batch: Batch) -> torch.dtype | None:
        """The half-precision dtype the model's training forward autocasts to, or None in full precision:
        the trainer's mixed precision (accelerate enters autocast inside the model's forward, invisible
        here), or an autocast the caller has entered."""
        if batch.autocast_dtype is not None:
            return batch.autocast_dtype
        device_type = _device_type(batch.model)
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
        return None

    def _in_fp32(self, batch: Batch) -> bool:
        """Whether R_s's forwards leave the training precision to run in fp32."""
        return self.adversarial_precision == "fp32" and self.autocast_dtype(batch) is not None

    def _adversarial_forwards(self, batch: Batch) -> contextlib.AbstractContextManager:
        return full_precision(batch.model) if self._in_fp32(batch) else contextlib.nullcontext()

    def _padding_mask(self, batch: Batch) -> torch.Tensor | None:
        """(B, L, 1) fp32 mask of the real tokens, or None when padding is noised too."""
        mask = batch.attention_mask
        if not self.mask_padding or mask is None:
            return None
        return mask.unsqueeze(-1).to(torch.float32)

    def _linf(self, values: torch.Tensor) -> torch.Tensor:
        """‖·‖_∞ per token (B, L, 1) or per example (B, 1, 1)."""
        norms = values.abs().amax(dim=-1, keepdim=True)
        return norms if self.norm_scope == "token" else norms.amax(dim=-2, keepdim=True)

    def _perturbed(
        self, batch: Batch, noise: torch.Tensor | None, grad: bool = False, **kwargs: Any
    ) -> tuple[Any, torch.Tensor]:
        """The model's outputs with ν added to the perturbation site's output, and ν. With `noise` None, ν is
        drawn as N(0, σ²) in the site output's shape (requiring grad if `grad`)."""
        if self._site_module is None:
            raise RuntimeError("smart.smoothness_weight > 0 but prepare_model has not found the site")
        mask = self._padding_mask(batch)
        added: list[torch.Tensor] = [] if noise is None else [noise]

        def add_noise(module: nn.Module, args: Any, output: Any) -> torch.Tensor:
            if not isinstance(output, torch.Tensor):
                raise TypeError(
                    f"smart.perturbation_site {self.perturbation_site!r}: {type(module).__name__} returns "
                    f"{type(output).__name__}, not a tensor; set smart.perturbation_site to 'word_embeddings'"
                )
            if not added:
                drawn = torch.randn(output.shape, dtype=torch.float32, device=output.device) * self.noise_std
                added.append((drawn if mask is None else drawn * mask).requires_grad_(grad))
            # Whether this forward runs under autocast, for the fp32 check in smoothness_term.
            self._site_autocast = torch.is_autocast_enabled(output.device.type)
            if added[0].shape != output.shape:
                raise RuntimeError(
                    f"smart: ν has shape {tuple(added[0].shape)}, the site {tuple(output.shape)}"
                )
            # ν is kept in fp32; only half-precision weights give a half-precision output to cast it to.
            return (output.float() + added[0]).to(output.dtype)

        handle = self._site_module.register_forward_hook(add_noise)
        try:
            inputs = {key: value for key, value in batch.inputs.items() if key != "labels"}
            outputs = batch.model(**inputs, **kwargs)
        finally:
            handle.remove()
        if not added:
            raise RuntimeError(
                f"smart: the forward never called the perturbation site {self.perturbation_site}"
            )
        return outputs, added[0]

    def _clean_logits(self, batch: Batch, in_fp32: bool) -> torch.Tensor:
        """R_s's clean reference f(x): the training forward's logits, or (leaving autocast) a fresh fp32
        forward with gradients; call inside `_adversarial_forwards`."""
        if not in_fp32:  # decided before entering full precision, where a caller's autocast looks off
            return batch.logits
        inputs = {key: value for key, value in batch.inputs.items() if key != "labels"}
        return batch.model(**inputs).logits

    def adversarial_perturbation(
        self, batch: Batch, context: RunContext, clean: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """ν_adv (fp32, the site output's shape) after K ascent steps against the clean logits `clean`
        (default: the training forward's); None if the gradient is not finite. Call inside
        `_adversarial_forwards` to run in R_s's precision."""
        clean = (batch.logits if clean is None else clean).detach()
        mask = self._padding_mask(batch)
        noise = None
        for _ in range(self.ascent_steps):
            if noise is not None:
                noise.requires_grad_(True)
            outputs, noise = self._perturbed(batch, noise, grad=True)
            # Summed over the batch, so an example's ascent step does not shrink with the batch size.
            loss = output_divergence(outputs.logits, clean, context.regression) * clean.shape[0]
            (grad,) = torch.autograd.grad(loss, noise, allow_unused=True)
            noise = noise.detach()
            if grad is None:  # the output does not depend on the input at all
                grad = torch.zeros_like(noise)
            if not bool(torch.isfinite(grad).all()):
                return None
            if self.perturbation_norm == "project":
                # g/‖g‖_∞; clamp_min instead of "+ eps" keeps the direction exact when g is tiny
                direction = grad / self._linf(grad).clamp_min(torch.finfo(grad.dtype).tiny)
                noise = (noise + self.step_size * direction).clamp(-self.radius, self.radius)
            else:  # mt-dnn: normalise the SUM by its ℓ∞ norm, no projection
                noise = noise + self.step_size * grad
                noise = noise / (self._linf(noise) + NORMALIZE_EPS)
            if mask is not None:
                noise = noise * mask
        return noise

    def smoothness_term(self, batch: Batch, context: RunContext) -> torch.Tensor | None:
        """R_s with gradients to θ, or None (logged) when the ascent gradient is NaN/inf."""
        log = context.log.setdefault("smart", {})
        self._measure_effect_until_it_succeeds(batch, context, log)
        in_fp32 = self._in_fp32(batch)
        with self._adversarial_forwards(batch):
            clean = self._clean_logits(batch, in_fp32)
            noise = self.adversarial_perturbation(batch, context, clean)
            if noise is None:
                log["ascent_skipped_nonfinite"] = log.get("ascent_skipped_nonfinite", 0) + 1
                return None
            # ν is a constant here; the site's output is not detached, so R_s also trains the embeddings.
            adversarial = self._perturbed(batch, noise)[0].logits
        if in_fp32:
            self._require_fp32(batch, clean, adversarial)
        return output_divergence(
            adversarial, clean, context.regression, detach_opposite=self.kl_detach_opposite
        )

    def _require_fp32(self, batch: Batch, clean: torch.Tensor, adversarial: torch.Tensor) -> None:
        """With `adversarial_precision: fp32` under mixed precision, R_s's forwards must really have left
        autocast; otherwise ν rounds away unnoticed (accelerate's output conversion makes the logits fp32
        even then, so the perturbation site's autocast state is checked too)."""
        problems = ["ran under autocast"] if self._site_autocast else []
        half = sorted({str(t.dtype) for t in (clean, adversarial) if t.dtype != torch.float32})
        if half:
            problems.append(f"returned {', '.join(half)} logits")
        if problems:
            raise RuntimeError(
                f"smart.adversarial_precision='fp32': R_s's forward {' and '.join(problems)} under "
                f"{self.autocast_dtype(batch)} mixed precision, where the perturbation rounds away. The "
                "model's forward enters autocast in a way full_precision cannot undo (a wrapper other than "
                "accelerate's, DDP or DataParallel), or its weights are half precision; set "
                "smart.adversarial_precision to "
                "'autocast' to run R_s in the training precision"
            )

    # ------------------------------------------------------------------------------------------ effect

    def _measure_effect_until_it_succeeds(self, batch: Batch, context: RunContext, log: dict) -> None:
        """Measure the effect on the first batch where it can be measured, at most MAX_EFFECT_ATTEMPTS
        batches; a diagnostic, so it never stops the run: why it failed stays in `effect.skipped`."""
        effect = log.get("effect")
        if effect is not None and "skipped" not in effect:
            return
        attempts = 0 if effect is None else effect["attempts"]
        if attempts >= MAX_EFFECT_ATTEMPTS:
            return
        try:
            measured = self.measure_effect(batch, context)
        except Exception as error:  # any failure of the measurement: it must never stop training
            measured = {"skipped": f"{type(error).__name__}: {error}"}
        attempts += 1
        if "skipped" in measured:
            measured["attempts"] = attempts
            logger.warning(
                "smart: could not measure the perturbation's effect on training batch %d (%s); %s",
                attempts,
                measured["skipped"],
                "will try the next batch" if attempts < MAX_EFFECT_ATTEMPTS else "giving up",
            )
        elif attempts > 1:
            measured["measured_on"] = f"training batch {attempts} (earlier ones: {effect['skipped']})"
        log["effect"] = measured

    def measure_effect(self, batch: Batch, context: RunContext) -> dict[str, Any]:
        """How much ν_adv moves the logits and the last hidden state, beside dropout (module docstring).

        ν_adv is computed as training computes it; its effect is measured in eval mode, dropout's as the
        change from eval to train mode of the clean forward, all in R_s's precision. Relative changes are
        Frobenius ratios; hidden states over the real tokens. The RNG streams are forked and restored."""
        model = batch.model
        device = next(model.parameters()).device
        autocast, in_fp32 = self.autocast_dtype(batch), self._in_fp32(batch)
        precision = "fp32" if autocast is None or in_fp32 else str(autocast).replace("torch.", "")
        effect: dict[str, Any] = {"measured_on": "first training batch", "precision": precision}
        inputs = {key: value for key, value in batch.inputs.items() if key != "labels"}
        mask = batch.attention_mask
        real = None if mask is None else mask.bool()
        training = model.training
        cuda_devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices), self._adversarial_forwards(batch):
            with torch.no_grad():
                clean_for_ascent = self._clean_logits(batch, in_fp32)
            noise = self.adversarial_perturbation(batch, context, clean_for_ascent)
            if noise is None:
                return {**effect, "skipped": "the ascent gradient is not finite on this batch"}
            try:
                with torch.no_grad():
                    model.eval()
                    clean = model(**inputs, output_hidden_states=True)
                    plus = self._perturbed(batch, noise, output_hidden_states=True)[0]
                    minus = self._perturbed(batch, -noise, output_hidden_states=True)[0]
                    model.train()
                    dropped = model(**inputs, output_hidden_states=True)
            finally:
                model.train(training)

        def last_hidden(outputs: Any) -> torch.Tensor | None:
            states = getattr(outputs, "hidden_states", None)
            if not states or states[-1] is None:
                return None
            hidden = states[-1]
            return hidden if real is None or hidden.shape[:2] != real.shape else hidden[real]

        token_linf = noise.abs().amax(dim=-1)
        effect["perturbation_linf_mean"] = float(
            token_linf[real].mean() if real is not None else token_linf.mean()
        )
        effect["logits_change_perturbation"] = _relative_change(plus.logits, clean.logits)
        effect["logits_change_dropout"] = _relative_change(dropped.logits, clean.logits)
        hidden = [last_hidden(outputs) for outputs in (clean, plus, dropped)]
        if any(state is None for state in hidden):  # the same on every batch: the logits must do
            effect["hidden_skipped"] = "the model returns no hidden states"
            effect["hidden_change_perturbation"] = effect["hidden_change_dropout"] = None
        else:
            effect["hidden_change_perturbation"] = _relative_change(hidden[1], hidden[0])
            effect["hidden_change_dropout"] = _relative_change(hidden[2], hidden[0])
        for what in ("logits", "hidden"):
            dropout = effect[f"{what}_change_dropout"]
            perturbation = effect[f"{what}_change_perturbation"]
            effect[f"{what}_ratio_to_dropout"] = perturbation / dropout if dropout else None
        effect["logits_change_symmetry"] = _cosine(plus.logits - clean.logits, -(minus.logits - clean.logits))
        return effect

    # ------------------------------------------------------------------------------------------ teacher

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
        # In the student's precision: the teacher was copied before accelerate wrapped the student's forward.
        autocast = self.autocast_dtype(batch)
        teacher_autocast = (
            torch.autocast(_device_type(teacher), dtype=autocast)
            if autocast is not None
            else contextlib.nullcontext()
        )
        with torch.no_grad(), teacher_autocast:
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
