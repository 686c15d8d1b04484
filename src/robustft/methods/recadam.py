"""RecAdam (Chen et al., EMNLP 2020, "Recall and Learn"): Adam that anneals from recalling the pretrained
weights to learning the target task (Sanyuan-Chen/RecAdam `RecAdam.py` L28-36, L116-129).

It optimises λ(t)·L_task + (1 − λ(t))·(γ/2)·||θ − θ*||² for the pretrained parameters, with the quadratic
penalty applied outside the Adam preconditioner (decoupled, like AdamW's weight decay). One optimizer
step t (t = 1, 2, ... counts optimizer steps, i.e. after gradient accumulation) is, for each parameter:

    θ ← θ − lr_t·wd·θ                                         (decoupled weight decay; `weight_decay`)
    m, v ← Adam moments of the gradient g;  m̂ = m/(1−β1^t), v̂ = v/(1−β2^t)
    pretrained θ:  θ ← θ − lr_t·λ(t)·m̂/(√v̂ + eps)            (task gradient scaled by λ(t))
                   θ ← θ − lr_t·(w − λ(t))·γ·(θ − θ*)          (pull toward the anchor θ*)
    new θ (the task head, context.new_parameter_names): plain AdamW, λ ≡ 1 and no pull

    λ(t) = w·f(t),   f = sigmoid(k·(t − t0))  (`anneal_fun: sigmoid`, the paper's choice)
                         min(1, t/t0)         (`linear`)
                         1                    (`constant`: λ ≡ w, no pull; w = 1 is plain AdamW)

with γ = `pretrain_coef`, w = `anneal_w` (the public code's scale of the curve; with the default w = 1
the objective is the paper's λL + (1−λ)·penalty). lr_t is the Trainer's scheduled learning rate (warmup
and decay apply to both terms), betas, eps and weight decay come from the TrainingArguments, and the
decay / no-decay split is the Trainer's own (biases and norms undecayed).

The schedule's unit (`anneal_unit`):
- `fraction` (default): t0 = `anneal_t0`·T and the sigmoid's width 1/k = `anneal_width`·T, where T is the
  run's planned number of optimizer steps (context.max_steps), so the curve has the same shape at any run
  length. Defaults t0 = 0.01 and width = 8e-5: the public code's t0 = 250 steps and k = 0.5 (a width of
  2 steps) at a 25,000-step run, the geometric middle of the authors' BERT-base runs (9,000 steps for
  STS-B to 61,360 for MNLI), where t0 = 250 ends the recall phase after 0.4-2.8% of training. So λ ≈ 0
  (the backbone held at θ*, only the head trains) for the first 1% of the steps, then λ ≈ 1 (λ ≥ 1/2
  from step ⌈0.01·T⌉ on, at every T). The recall is NOT the same at every length: each step multiplies
  θ − θ* by 1 − lr_t·γ·(w − λ_t), so what the pull removes depends on how many steps the recall phase has
  and on the learning rate over them (warm-up keeps lr_t small at the start). At lr 2e-5, γ 5000 and 10%
  linear warm-up the share of the starting offset θ_1 − θ* (NoisyTune's noise in `noisytune+recadam`)
  left after the run is about 0.99 at 234 steps (RTE, 3 epochs), 0.91 at 2,000, 0.29 at 25,000 and
  0.16 at 36,816 (MNLI): short runs barely recall, long ones pull most of the way back. Below ~100
  steps t0 < 1 step, so λ(1) ≈ w and RecAdam is AdamW from the first step (no recall at all).
- `steps`: t0 = `anneal_t0` and k = `anneal_k` in optimizer steps, the public code's CLI defaults t0 = 250,
  k = 0.5 (`run_glue_with_RecAdam.py` L652-662; its README's examples use k = 0.1, t0 = 1000; the
  authors' grids are k ∈ {0.05, 0.1, 0.2, 0.5, 1}, t0 ∈ {100, 250, 500, 1000}). λ(t) ≈ 0 for the first
  ~t0 steps whatever the run's length: a 3-epoch RTE run (234 steps at batch 32) keeps λ ≤ 3.4e-4 and
  never trains its backbone. A run whose λ stays below 1% of w to its last step raises MethodConfigError
  at the first optimizer step; one whose λ ends below w/2 is logged as a warning.
The schedule resolved to steps (t0, width, λ at step 1, 10%, 50% and the last step, the mean λ) is written
to the run log (`method_log.recadam.schedule` in run.json) at the first optimizer step, with
`initial_offset_remaining` = ∏_t (1 − lr_t·γ·(w − λ_t)) over the planned steps: the share of θ_1 − θ* the
pull alone leaves by the last step (the task steps move θ too). lr_t is Trainer's planned schedule, rebuilt
from the TrainingArguments (`offset_remaining_lr: scheduled`); where the arguments name no LambdaLR
schedule it is the peak learning rate held constant (`peak (approximation)`, which overstates the pull).

Anchor θ* (`anchor`):
- `pretrained` (default): the checkpoint's weights, copied in `before_prepare_model`, i.e. before any
  component's prepare_model, whatever the order of the components: in `noisytune+recadam` θ* is the
  UNPERTURBED checkpoint, as in the public code, which loads a second, separate copy of the pretrained
  model as θ*.
- `initial`: the weights at the start of fine-tuning, copied when the optimizer is built, i.e. after every
  component's prepare_model: in `noisytune+recadam` θ* is then the perturbed model.
Without other components that change weights the two are the same.

Deviations from the public code, all on purpose:
- Pretrained vs new parameters come from context.new_parameter_names (the names the checkpoint did not
  provide), not from the substring `model_type in name` (L148-188), which silently turns RecAdam into
  AdamW when the prefix does not match (e.g. `deberta-v2` vs `deberta.*`), and anchors are matched by
  parameter name, not by zip order with a second model. No pretrained parameter -> MethodConfigError.
- The Adam core is torch.optim.AdamW's (eps added after the bias correction of √v, weight decay first),
  so λ ≡ 1 reproduces the harness's baseline optimizer step for step. RecAdam.py uses the old
  transformers AdamW: eps added to √v before correcting (an effective eps·√(1−β2^t)) and weight decay
  last; the differences are O(eps) where √v̂ ≈ eps and O(lr²·wd). The pull acts on θ after the Adam step,
  as in RecAdam.py L125-129.
- The deprecated positional overloads `add_(scalar, tensor)` / `addcmul_(scalar, a, b)` are written
  with `alpha=` / `value=`.
- The default schedule is in fractions of the run (above); `anneal_unit: steps` is the public code's.

Stability: per step the pull multiplies θ − θ* by 1 − c with c = lr_t·(w − λ)·γ ≤ lr·w·γ. For c > 1 it
overshoots θ* and oscillates; for c > 2 it diverges (γ = 5000: c = 0.1 at lr 2e-5, 1.0 at lr 2e-4).
validate() cannot know the learning rate, so build_optimizer raises MethodConfigError for lr·w·γ ≥ 2 and
warns above 1 (not for `constant`, which has no pull).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from robustft.errors import MethodConfigError
from robustft.methods.base import RunContext
from robustft.methods.settings import ANNEAL_FUNCTIONS, RecAdamSettings

logger = logging.getLogger(__name__)

# λ/w below this at the last planned step: the backbone never gets its task gradient, which is no longer
# RecAdam but a frozen backbone (refused); below 1/2: it gets it for only part of the last steps (warned).
NEGLIGIBLE_LAMBDA = 0.01


def planned_learning_rates(training_args: Any, planned_steps: int) -> tuple[list[float], str]:
    """The learning rate of optimizer steps 1..planned_steps as Trainer schedules it, and its source:
    `scheduled` (Trainer's own scheduler, rebuilt as `Trainer.create_scheduler` builds it, on a probe
    optimizer) or `peak (approximation)` (the peak rate throughout, when the arguments name no scheduler
    or it is not a LambdaLR, e.g. reduce_lr_on_plateau, which depends on the metrics)."""
    lr = float(training_args.learning_rate)
    constant = [lr] * planned_steps, "peak (approximation)"
    scheduler_type = getattr(training_args, "lr_scheduler_type", None)
    warmup_steps = getattr(training_args, "get_warmup_steps", None)
    if scheduler_type is None or warmup_steps is None:
        return constant
    from transformers import get_scheduler

    probe = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = get_scheduler(
        scheduler_type,
        optimizer=probe,
        num_warmup_steps=warmup_steps(planned_steps),
        num_training_steps=planned_steps,
        scheduler_specific_kwargs=getattr(training_args, "lr_scheduler_kwargs", None) or {},
    )
    factors = getattr(scheduler, "lr_lambdas", None)
    if not factors:
        return constant
    # Trainer steps the scheduler after each optimizer step, so step t runs at the factor of t - 1.
    return [lr * factors[0](t - 1) for t in range(1, planned_steps + 1)], "scheduled"


def anneal_lambda(function: str, step: float, k: float, t0: float, w: float = 1.0) -> float:
    """λ(t) = w·f(t) (RecAdam.py `anneal_function`), in optimizer steps, with an overflow-free sigmoid."""
    if function == "sigmoid":
        x = k * (step - t0)
        f = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
    elif function == "linear":
        f = min(1.0, step / t0)
    elif function == "constant":
        f = 1.0
    else:
        raise MethodConfigError(
            f"recadam.anneal_fun must be one of {list(ANNEAL_FUNCTIONS)}, got {function!r}"
        )
    return w * f


class RecAdamOptimizer(torch.optim.Optimizer):
    """AdamW whose `recall` groups anneal toward per-parameter anchors (see the module docstring).

    Each parameter of a recall group needs `anchors[p]`, a tensor of its shape (kept in fp32). `anneal`
    maps the optimizer step t (1, 2, ...) to λ(t); it is not saved with the optimizer's state (the run's
    configuration rebuilds it).
    """

    def __init__(
        self,
        params: Iterable[dict[str, Any]],
        anchors: dict[nn.Parameter, torch.Tensor],
        lr: float,
        *,
        anneal: Callable[[int], float],
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        anneal_w: float = 1.0,
        pretrain_coef: float = 5000.0,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            recall=False,
            anneal_w=anneal_w,
            pretrain_coef=pretrain_coef,
        )
        super().__init__(params, defaults)
        self.anneal = anneal
        for group in self.param_groups:
            if not group["recall"]:
                continue
            for p in group["params"]:
                if p not in anchors:
                    raise ValueError("every parameter of a recall group needs an anchor")
                # In the state, so checkpoints save it and a resumed run recalls the same θ*.
                self.state[p]["anchor"] = anchors[p].detach().to(device=p.device, dtype=torch.float32)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("RecAdam does not support sparse gradients")
                state = self.state[p]
                if "step" not in state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]

                # torch.optim.AdamW's single-tensor update, operation for operation.
                p.mul_(1 - lr * weight_decay)
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step_size = lr / (1 - beta1**t)
                denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**t)).add_(eps)
                if not group["recall"]:
                    p.addcdiv_(exp_avg, denom, value=-step_size)
                    continue
                lam = self.anneal(t)
                p.addcdiv_(exp_avg, denom, value=-step_size * lam)
                pull = lr * (group["anneal_w"] - lam) * group["pretrain_coef"]
                if pull != 0:
                    anchor = state["anchor"]
                    p.add_((p.float() - anchor).to(p.dtype), alpha=-pull)
        return loss


def _decay_parameter_names(model: nn.Module) -> set[str]:
    """The Trainer's decay / no-decay split (biases and norm weights undecayed), so RecAdam and the
    AdamW baseline decay the same tensors. The method does not use `self`."""
    from transformers import Trainer

    return set(Trainer.get_decay_parameter_names(None, model))


class RecAdam(RecAdamSettings):
    """RecAdam's hooks; its settings and their checks are RecAdamSettings (methods/settings.py)."""

    def __post_init__(self) -> None:
        # Not dataclass fields: settings() must not copy tensors.
        self._pretrained: dict[str, torch.Tensor] | None = None
        self._anchors_handed_over = False  # build_optimizer took the copy (and dropped it)
        self._training_args: Any = None  # for the planned learning rates (build_optimizer)
        self._schedule_checked_for: int | None = None
        super().__post_init__()  # resolves the unit's defaults, then validates

    # ------------------------------------------------------------------------------------ schedule

    def schedule_in_steps(self, planned_steps: int) -> tuple[float, float]:
        """(t0, k) in optimizer steps for a run of `planned_steps` optimizer steps."""
        if self.anneal_unit == "steps":
            return float(self.anneal_t0), float(self.anneal_k)
        if planned_steps < 1:
            raise MethodConfigError(
                f"recadam.anneal_unit='fraction' needs the run's planned number of optimizer steps "
                f"(context.max_steps), got {planned_steps!r}"
            )
        return self.anneal_t0 * planned_steps, 1.0 / (self.anneal_width * planned_steps)

    def anneal(self, step: int, planned_steps: int = 0) -> float:
        """λ at optimizer step `step` (1, 2, ...) of a run of `planned_steps` optimizer steps."""
        t0, k = self.schedule_in_steps(planned_steps)
        return anneal_lambda(self.anneal_fun, step, k, t0, self.anneal_w)

    def schedule_summary(self, planned_steps: int, training_args: Any = None) -> dict[str, Any]:
        """The schedule a run of `planned_steps` optimizer steps gets, in steps (for the run log); with the
        run's `training_args` also the share of the starting offset from θ* that the pull leaves."""
        t0, k = self.schedule_in_steps(planned_steps)
        lambdas = [self.anneal(t, planned_steps) for t in range(1, planned_steps + 1)]
        half = next((t for t, lam in enumerate(lambdas, 1) if lam >= self.anneal_w / 2), None)
        remaining, lr_source = None, None
        if training_args is not None:
            learning_rates, lr_source = planned_learning_rates(training_args, planned_steps)
            remaining = 1.0
            for lam, lr in zip(lambdas, learning_rates, strict=True):
                remaining *= 1.0 - lr * self.pretrain_coef * (self.anneal_w - lam)

        def at(fraction: float) -> float:
            return lambdas[max(1, math.ceil(fraction * planned_steps)) - 1]

        return {
            "unit": self.anneal_unit,
            "planned_steps": planned_steps,
            "t0_steps": t0,
            "width_steps": 1.0 / k if self.anneal_fun == "sigmoid" else None,
            "lambda_at_step_1": lambdas[0],
            "lambda_at_10pct": at(0.1),
            "lambda_at_50pct": at(0.5),
            "lambda_at_last_step": lambdas[-1],
            # The first step from which the backbone gets at least half its task gradient (None: never).
            "first_step_lambda_at_least_half_w": half,
            # The share of the task gradient the backbone gets over the whole run (w: all of it).
            "mean_lambda": sum(lambdas) / planned_steps,
            # ∏(1 − lr_t·γ·(w − λ_t)): the share of θ_1 − θ* the pull alone leaves after the planned steps.
            # It depends on the run's length even in the fraction unit (module docstring).
            "initial_offset_remaining": remaining,
            "offset_remaining_lr": lr_source,
        }

    def _check_schedule(self, context: RunContext) -> None:
        """At the first optimizer step, once the planned length is known: log the schedule, refuse one
        under which the backbone never learns and warn about one that reaches λ = w/2 only at the end."""
        planned = context.max_steps
        if planned == self._schedule_checked_for:
            return
        if planned < 1:  # unknown: `steps` needs no length, `fraction` cannot do without it
            self.schedule_in_steps(planned)
            return
        self._schedule_checked_for = planned
        summary = self.schedule_summary(planned, self._training_args)
        context.log.setdefault("recadam", {})["schedule"] = summary
        final = summary["lambda_at_last_step"]
        where = (
            f"anneal_unit {self.anneal_unit!r}, anneal_t0 {self.anneal_t0:g} "
            f"({summary['t0_steps']:g} optimizer steps), {planned} planned steps"
        )
        if final < NEGLIGIBLE_LAMBDA * self.anneal_w:
            raise MethodConfigError(
                f"recadam: λ(t) stays at or below {final:.3g} for the whole run ({where}): the backbone "
                "would get no task gradient and only the head would train; use anneal_unit: fraction (the "
                "default) or a smaller anneal_t0"
            )
        if final < 0.5 * self.anneal_w:
            logger.warning(
                "recadam: λ(t) only reaches %.3g at the last step (%s): the backbone gets little task "
                "gradient in this run",
                final,
                where,
            )

    # ------------------------------------------------------------------------------------ hooks

    def before_prepare_model(self, model: nn.Module, context: RunContext) -> None:
        # Before any component's prepare_model: the checkpoint's weights, whatever comes first.
        self._pretrained, self._anchors_handed_over = None, False
        if self.anchor == "pretrained":
            self._pretrained = {
                name: p.detach().to(torch.float32, copy=True)
                for name, p in model.named_parameters()
                if name not in context.new_parameter_names
            }

    def build_optimizer(self, model: nn.Module, training_args: Any, context: RunContext) -> RecAdamOptimizer:
        lr = float(training_args.learning_rate)
        self._check_optimizer_inputs(lr)
        param_groups, anchors, pretrained_names, new_names = self._parameter_groups(
            model, training_args, context
        )
        context.log["recadam"] = {
            "anchor": self.anchor,
            "pretrained_tensors": len(pretrained_names),
            "new_tensors": new_names,
            "lr_x_pretrain_coef": lr * self.pretrain_coef,
        }

        self._training_args = training_args
        # The anchors now hold the copy (the optimizer moves them to the parameters' devices); a host-side
        # fp32 copy of the whole backbone must not outlive that for the whole run.
        if self._pretrained is not None:
            self._pretrained, self._anchors_handed_over = None, True

        def anneal(step: int) -> float:
            # The planned length is known from the first optimizer step on (Trainer sets it after
            # building the optimizer), so the schedule is resolved, logged and checked there.
            self._check_schedule(context)
            return self.anneal(step, context.max_steps)

        return RecAdamOptimizer(
            param_groups,
            anchors,
            lr=lr,
            anneal=anneal,
            betas=(training_args.adam_beta1, training_args.adam_beta2),
            eps=training_args.adam_epsilon,
            weight_decay=training_args.weight_decay,
            anneal_w=self.anneal_w,
            pretrain_coef=self.pretrain_coef,
        )

    def _check_optimizer_inputs(self, lr: float) -> None:
        """Refuse a pull toward the anchors that diverges (warn when it overshoots), and an optimizer
        that needs the checkpoint's weights when they were never copied or were already handed over."""
        stiffness = lr * self.pretrain_coef * self.anneal_w
        if self.anneal_fun != "constant" and stiffness >= 2:
            raise MethodConfigError(
                f"recadam: learning_rate·pretrain_coef·anneal_w = {lr:g}·{self.pretrain_coef:g}·"
                f"{self.anneal_w:g} = {stiffness:g} >= 2: the pull toward the pretrained weights diverges; "
                "lower recadam.pretrain_coef or learning_rate (keep the product below 1)"
            )
        if self.anneal_fun != "constant" and stiffness > 1:
            logger.warning(
                "recadam: learning_rate·pretrain_coef·anneal_w = %g > 1: the pull toward the pretrained "
                "weights overshoots and oscillates",
                stiffness,
            )
        if self.anchor == "pretrained" and self._pretrained is None and self._anchors_handed_over:
            raise MethodConfigError(
                "recadam.anchor='pretrained': the checkpoint's weights were handed to the optimizer built "
                "before and not kept; run Method.prepare_model on a freshly loaded model for a new optimizer"
            )
        if self.anchor == "pretrained" and self._pretrained is None:
            raise MethodConfigError(
                "recadam.anchor='pretrained' needs the checkpoint's weights, which Method.prepare_model "
                "copies (before_prepare_model) before any component changes them; run it first"
            )

    def _parameter_groups(
        self, model: nn.Module, training_args: Any, context: RunContext
    ) -> tuple[list[dict[str, Any]], dict[nn.Parameter, torch.Tensor], list[str], list[str]]:
        """(param groups, anchors, pretrained names, new names): the trainable parameters grouped by
        (recalled, decayed), recalled groups first, and each recalled parameter's anchor θ*."""
        decay = _decay_parameter_names(model)
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        anchors: dict[nn.Parameter, torch.Tensor] = {}
        pretrained_names, new_names = [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            recall = name not in context.new_parameter_names
            groups.setdefault((recall, name in decay), []).append(p)
            if not recall:
                new_names.append(name)
                continue
            pretrained_names.append(name)
            if self._pretrained is None:  # `initial`: a copy of the weights as they are now
                anchors[p] = p.detach().to(dtype=torch.float32, copy=True)
            elif name in self._pretrained:  # `pretrained`: the copy taken before prepare_model
                anchors[p] = self._pretrained[name]
            else:
                raise MethodConfigError(
                    f"recadam.anchor='pretrained': parameter {name!r} did not exist when the checkpoint was "
                    "loaded (a component added or renamed it), so it has no pretrained weights to recall"
                )
        if not pretrained_names:
            raise MethodConfigError(
                "recadam: no trainable parameter came from the checkpoint (all are in "
                "context.new_parameter_names), so there is nothing to recall"
            )
        param_groups = [
            {
                "params": params,
                "recall": recall,
                "weight_decay": training_args.weight_decay if decayed else 0.0,
            }
            for (recall, decayed), params in sorted(groups.items(), key=lambda item: item[0], reverse=True)
        ]
        return param_groups, anchors, pretrained_names, new_names
