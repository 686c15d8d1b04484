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

with γ = `pretrain_coef`, k = `anneal_k`, t0 = `anneal_t0`, w = `anneal_w` (the public code's scale of the
curve; with the default w = 1 the objective is the paper's λL + (1−λ)·penalty). lr_t is the Trainer's
scheduled learning rate (warmup and decay apply to both terms), betas, eps and weight decay come from
the TrainingArguments, and the decay / no-decay split is the Trainer's own (biases and norms undecayed).

Defaults: γ = 5000 (`RecAdam.py` `pretrain_cof` and `run_glue_with_RecAdam.py --recadam_pretrain_cof`);
sigmoid annealing with k = 0.5, t0 = 250 (the CLI defaults of `run_glue_with_RecAdam.py` L652-662; the
README's example commands use k = 0.1, t0 = 1000; grids k ∈ {0.05, 0.1, 0.2, 0.5, 1}, t0 ∈ {100, 250,
500, 1000}, methods.md §4.1). λ(0) = sigmoid(−k·t0) is ≈ 0: the backbone gets almost no task gradient
for the first ~t0 steps, so runs much shorter than t0 barely train it (logged as a warning).

Anchor θ* (`anchor`):
- `initial` (default): the weights at the start of fine-tuning, copied when the optimizer is built, i.e.
  after every component's prepare_model, whatever the order: in `noisytune+recadam` θ* is the PERTURBED
  model, so RecAdam recalls the point fine-tuning starts from (as the public code would if handed the
  perturbed model).
- `pretrained`: the checkpoint's weights, copied in recadam's own prepare_model. Components run in list
  order, so recadam must come before any component that changes weights (`recadam+noisytune`); an
  earlier component that ran prepare_model (it has written its run log) raises MethodConfigError.

Deviations from the public code, all on purpose:
- Pretrained vs new parameters come from context.new_parameter_names (the names the checkpoint did not
  provide), not from the substring `model_type in name` (L148-188), which silently turns RecAdam into
  AdamW when the prefix does not match (e.g. `deberta-v2` vs `deberta.*`), and anchors are matched by
  parameter identity, not by zip order with a second model. No pretrained parameter -> MethodConfigError.
- The Adam core is torch.optim.AdamW's (eps added after the bias correction of √v, weight decay first),
  so λ ≡ 1 reproduces the harness's baseline optimizer step for step. RecAdam.py uses the old
  transformers AdamW: eps added to √v before correcting (an effective eps·√(1−β2^t)) and weight decay
  last; the differences are O(eps) where √v̂ ≈ eps and O(lr²·wd). The pull acts on θ after the Adam step,
  as in RecAdam.py L125-129.
- The deprecated positional overloads `add_(scalar, tensor)` / `addcmul_(scalar, a, b)` are written
  with `alpha=` / `value=`.

Stability: per step the pull multiplies θ − θ* by 1 − c with c = lr_t·(w − λ)·γ ≤ lr·w·γ. For c > 1 it
overshoots θ* and oscillates; for c > 2 it diverges (γ = 5000: c = 0.1 at lr 2e-5, 1.0 at lr 2e-4).
validate() cannot know the learning rate, so build_optimizer raises MethodConfigError for lr·w·γ ≥ 2 and
warns above 1 (not for `constant`, which has no pull).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustft.methods.base import (
    Component,
    MethodConfigError,
    RunContext,
    register_component,
    require_choice,
    require_number,
)

logger = logging.getLogger(__name__)

ANNEAL_FUNCTIONS = ("sigmoid", "linear", "constant")
ANCHORS = ("initial", "pretrained")


def anneal_lambda(function: str, step: int, k: float, t0: float, w: float = 1.0) -> float:
    """λ(t) = w·f(t) (RecAdam.py `anneal_function`), with an overflow-free sigmoid."""
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

    Each parameter of a recall group needs `anchors[p]`, a tensor of its shape (kept in fp32).
    """

    def __init__(
        self,
        params: Iterable[dict[str, Any]],
        anchors: dict[nn.Parameter, torch.Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        anneal_fun: str = "sigmoid",
        anneal_k: float = 0.5,
        anneal_t0: float = 250.0,
        anneal_w: float = 1.0,
        pretrain_coef: float = 5000.0,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            recall=False,
            anneal_fun=anneal_fun,
            anneal_k=anneal_k,
            anneal_t0=anneal_t0,
            anneal_w=anneal_w,
            pretrain_coef=pretrain_coef,
        )
        super().__init__(params, defaults)
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
                lam = anneal_lambda(
                    group["anneal_fun"], t, group["anneal_k"], group["anneal_t0"], group["anneal_w"]
                )
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


@register_component
@dataclass
class RecAdam(Component):
    name = "recadam"
    paper = "Chen et al., EMNLP 2020 (Sanyuan-Chen/RecAdam)"

    pretrain_coef: float = 5000.0  # γ: RecAdam.py / run_glue_with_RecAdam.py default
    anneal_fun: str = "sigmoid"  # paper and CLI default
    anneal_k: float = 0.5  # CLI default (README examples: 0.1)
    anneal_t0: float = 250.0  # CLI default, in optimizer steps (README examples: 1000)
    anneal_w: float = 1.0  # CLI `--recadam_anneal_w` default; λ = w·f(t)
    anchor: str = "initial"  # θ*: weights at the start of fine-tuning; "pretrained": before other components

    def __post_init__(self) -> None:
        # Not a dataclass field: settings() must not copy tensors.
        self._pretrained: dict[str, torch.Tensor] | None = None
        self._warned_short_run = False
        super().__post_init__()

    def validate(self) -> None:
        require_number(
            "recadam",
            "pretrain_coef",
            self.pretrain_coef,
            0.0,
            1e6,
            max_inclusive=True,
            why="the code's default is 5000",
        )
        require_choice("recadam", "anneal_fun", self.anneal_fun, ANNEAL_FUNCTIONS)
        # k > 0: λ must rise from recall to learning; k = 0 freezes λ at 1/2, k < 0 anneals backwards. No
        # upper bound: a large k is a hard switch from recall to learning at t0, a sensible choice.
        require_number("recadam", "anneal_k", self.anneal_k, 0.0, min_inclusive=False)
        t0_why = "optimizer steps; the authors sweep 100 to 1000"
        if self.anneal_fun == "linear":  # t/t0
            require_number(
                "recadam",
                "anneal_t0",
                self.anneal_t0,
                0.0,
                1e6,
                min_inclusive=False,
                max_inclusive=True,
                why=t0_why,
            )
        else:
            require_number("recadam", "anneal_t0", self.anneal_t0, 0.0, 1e6, max_inclusive=True, why=t0_why)
        # w = 0 would freeze the backbone (the public code instead silently switches to plain Adam).
        require_number(
            "recadam", "anneal_w", self.anneal_w, 0.0, 1.0, min_inclusive=False, max_inclusive=True
        )
        require_choice("recadam", "anchor", self.anchor, ANCHORS)

    def anneal(self, step: int) -> float:
        return anneal_lambda(self.anneal_fun, step, self.anneal_k, self.anneal_t0, self.anneal_w)

    def prepare_model(self, model: nn.Module, context: RunContext) -> None:
        self._pretrained = None
        if self.anchor != "pretrained":
            return
        earlier = sorted(context.log)
        if earlier:
            raise MethodConfigError(
                f"recadam.anchor='pretrained' copies the weights in recadam's prepare_model, but {earlier} "
                "already prepared the model and may have changed its weights; list recadam first "
                "(e.g. 'recadam+noisytune'), or use recadam.anchor='initial'"
            )
        self._pretrained = {
            name: p.detach().to(torch.float32, copy=True)
            for name, p in model.named_parameters()
            if name not in context.new_parameter_names
        }

    def build_optimizer(self, model: nn.Module, training_args: Any, context: RunContext) -> RecAdamOptimizer:
        lr = float(training_args.learning_rate)
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
        if self.anchor == "pretrained" and self._pretrained is None:
            raise MethodConfigError("recadam.anchor='pretrained' needs prepare_model to run first")

        decay = _decay_parameter_names(model)
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        anchors: dict[nn.Parameter, torch.Tensor] = {}
        pretrained_names, new_names = [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            recall = name not in context.new_parameter_names
            groups.setdefault((recall, name in decay), []).append(p)
            if recall:
                pretrained_names.append(name)
                source = self._pretrained[name] if self._pretrained is not None else p
                anchors[p] = source.detach().to(device=p.device, dtype=torch.float32, copy=True)
            else:
                new_names.append(name)
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
        context.log["recadam"] = {
            "anchor": self.anchor,
            "pretrained_tensors": len(pretrained_names),
            "new_tensors": new_names,
            "lr_x_pretrain_coef": lr * self.pretrain_coef,
            "lambda_at_step_1": self.anneal(1),
        }
        return RecAdamOptimizer(
            param_groups,
            anchors,
            lr=lr,
            betas=(training_args.adam_beta1, training_args.adam_beta2),
            eps=training_args.adam_epsilon,
            weight_decay=training_args.weight_decay,
            anneal_fun=self.anneal_fun,
            anneal_k=self.anneal_k,
            anneal_t0=self.anneal_t0,
            anneal_w=self.anneal_w,
            pretrain_coef=self.pretrain_coef,
        )

    def after_optimizer_step(self, model: nn.Module, context: RunContext) -> None:
        # Once, when the planned length is known: a run much shorter than t0 barely trains the backbone.
        if self._warned_short_run or context.step != 1 or self.anneal_fun == "constant":
            return
        self._warned_short_run = True
        final = self.anneal(context.max_steps)
        if context.max_steps and final < 0.5:
            logger.warning(
                "recadam: λ(t) only reaches %.3g at the last step (%d steps, anneal_t0 = %g): the backbone "
                "gets little task gradient in this run",
                final,
                context.max_steps,
                self.anneal_t0,
            )
        context.log.setdefault("recadam", {})["lambda_at_last_step"] = final
