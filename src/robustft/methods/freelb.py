"""FreeLB (Zhu et al., ICLR 2020, Algorithm 1): K ascent steps on an embedding perturbation δ, with the
parameter gradients of all K steps accumulated into one optimizer step ("free" large-batch training).

Following the authors' HF script (zhuchen03/FreeLB `huggingface-transformers/examples/run_glue_freelb.py`),
per training batch with word embeddings e = E(x) and attention mask m (L_i real tokens, hidden size d):

    δ_0 = U(-1, 1)·m · init_mag / √(L_i·d)     (norm l2)     or   U(-init_mag, init_mag)·m   (norm linf)
    δ_0 = 0 when init_mag = 0 (nothing is drawn, so the RNG stream is untouched)
    for t = 1..K:
        loss_t = L(f(E(x) + δ_{t-1})) · s / K;   backward   (θ-grads accumulate)
        if t == K: stop
        g = ∂loss_t/∂δ
        l2:   δ_t = δ_{t-1} + adv_lr · g / ‖g‖_F (per example); if max_norm > 0: rescale to ‖δ_t‖_F ≤ max_norm
        linf: δ_t = δ_{t-1} + adv_lr · g / ‖g‖_∞ (per example); if max_norm > 0: clamp to ±max_norm
    then the Trainer clips the gradient norm and takes one optimizer step.

s is this micro-batch's share of the optimizer step's rows (step.share_of_step): 1/gradient_accumulation_steps
for equal micro-batches, as in the HF script, and the rows' share when an epoch's last step has fewer or
smaller ones, so accumulated micro-batches take the step of one batch of all their rows.
E(x) is looked up again at every step (a fresh graph; the embedding table gets gradients from every pass).
The step returns Σ_t loss_t, i.e. the mean loss over the K passes times s (over the accumulation steps), which
is what Trainer's own training_step returns (the loss scaled for accumulation) and logs.

Named modes:
- `clean_pass: false` (default) is the HF script: with init_mag > 0 the model never sees the clean input
  (FreeLB#10, where a user recovered albert-base SST-2 accuracy with an added clean pass and the author
  argued the xxlarge hyperparameters simply do not transfer). `clean_pass: true` prepends one clean
  (δ = 0) forward/backward and divides every pass by K + 1 instead of K. Note that the authors' fairseq
  code also makes K + 1 passes with loss/(K + 1), but its first pass is at the random δ_0, not clean, so
  fairseq `--adv-steps K` matches this module with `adv_steps: K+1, clean_pass: false`.

Not reproduced: the paper's shared dropout mask across the K steps (`dp_masks`) needs the authors'
modified model code (FreeLB#13); every pass here draws fresh dropout masks, which the author says still
works (FreeLB#13/#14; paper Table 4 measures the gap). No `adv_begin_iter` warm start either.
δ is kept in fp32 and cast to the embeddings' dtype only when they are half precision.
This step replaces Trainer's compute_loss, so other components' `extra_loss` terms (R3F, SMART) are not
added to it; embedding noise hooks (NEFTune) do apply, freshly drawn at every pass.

On a causal LM (the SFT path, robustft.train.sft) L is the model's own loss with the batch's labels, which
TRL's completion-only collation sets to -100 on prompt and padding tokens: a mean over response tokens,
which the SFT trainer weighs by the step's response tokens (s above is then their share). δ covers every
real token, prompt and response alike, as NEFTune's noise does (Table 12 compares the two on one support):
an adversarial instruction is part of the attack. No KL term: FreeLB's objective is the task loss alone.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from robustft.methods.base import RunContext, require_input_embeddings
from robustft.methods.settings import FreeLBSettings


class FreeLB(FreeLBSettings):
    """FreeLB's hooks; its settings and their checks are FreeLBSettings (methods/settings.py)."""

    def prepare_model(self, model: nn.Module, context: RunContext) -> None:
        require_input_embeddings("freelb", model)
        context.log["freelb"] = {
            "passes_per_step": self.adv_steps + int(self.clean_pass),
            "dropout_masks": "independent per pass",
        }

    def init_delta(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """δ_0 in fp32; `mask` is (B, L, 1) with 1 on real tokens."""
        delta = torch.zeros(embeddings.shape, dtype=torch.float32, device=embeddings.device)
        if self.adv_init_mag == 0:
            return delta  # draw nothing: K=1 with init_mag=0 is then plain fine-tuning, RNG included
        if self.norm == "l2":
            lengths = mask.sum(dim=(1, 2))  # L_i
            magnitude = self.adv_init_mag / torch.sqrt(lengths * embeddings.size(-1))
            return delta.uniform_(-1, 1) * mask * magnitude.view(-1, 1, 1)
        return delta.uniform_(-self.adv_init_mag, self.adv_init_mag) * mask

    def ascend(self, delta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """One normalised gradient-ascent step on δ, then the projection, per example."""
        flat = grad.reshape(grad.size(0), -1).float()
        if self.norm == "l2":
            denominator = flat.norm(p=2, dim=1).clamp(min=1e-8).view(-1, 1, 1)
            delta = delta + self.adv_lr * grad / denominator
            if self.adv_max_norm > 0:
                norms = delta.reshape(delta.size(0), -1).norm(p=2, dim=1)
                # only the examples over the bound shrink (radial projection onto the l2 ball)
                scale = (self.adv_max_norm / norms).clamp(max=1.0)
                delta = delta * scale.view(-1, 1, 1)
            return delta
        denominator = flat.norm(p=math.inf, dim=1).clamp(min=1e-8).view(-1, 1, 1)
        delta = delta + self.adv_lr * grad / denominator
        if self.adv_max_norm > 0:
            delta = delta.clamp(-self.adv_max_norm, self.adv_max_norm)
        return delta

    def training_step(self, step: Any, context: RunContext) -> torch.Tensor:
        passes = self.adv_steps + int(self.clean_pass)
        if step.share_of_step is None:
            divisor = passes * step.gradient_accumulation_steps
        else:
            divisor = passes / step.share_of_step
        losses: list[torch.Tensor] = []

        def forward_backward(embeddings: torch.Tensor) -> None:
            loss, _ = step.loss_with_embeddings(embeddings)
            loss = loss / divisor
            step.backward(loss)  # parameter gradients accumulate over the passes
            losses.append(loss.detach())

        if self.clean_pass:
            forward_backward(step.embed())
        mask = step.inputs.get("attention_mask")
        ids = step.inputs["input_ids"]
        real = torch.ones(ids.shape, device=ids.device) if mask is None else mask
        real = real.to(torch.float32).unsqueeze(-1)  # (B, L, 1): 1 on real tokens
        delta: torch.Tensor | None = None
        for t in range(self.adv_steps):
            embeddings = step.embed()  # looked up again every pass: a fresh graph into the embedding table
            if delta is None:
                delta = self.init_delta(embeddings, real)
            delta.requires_grad_()
            forward_backward(embeddings + delta.to(embeddings.dtype))
            if t == self.adv_steps - 1:
                break
            # The gradient on padding is zero already (masked keys, no labels there); masked anyway, so δ
            # stays zero on padding and each sequence's norms are over its own tokens, whatever the kernel.
            delta = self.ascend(delta.detach(), delta.grad.detach() * real)
        return torch.stack(losses).sum()
