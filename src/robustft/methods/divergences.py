"""Output divergences shared by the smoothness regularisers (SMART, R3F), computed in fp32."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def symmetric_kl(
    logits_a: torch.Tensor, logits_b: torch.Tensor, detach_opposite: bool = False
) -> torch.Tensor:
    """KL(P_a || P_b) + KL(P_b || P_a), averaged over the batch (`batchmean`), on the last dimension.

    With `detach_opposite`, each KL term treats its reference distribution as a constant (mt-dnn's
    SymKlCriterion); without it, gradients flow through both sides (fairseq's R3F).
    """
    log_a = F.log_softmax(logits_a.float(), dim=-1)
    log_b = F.log_softmax(logits_b.float(), dim=-1)
    ref_a, ref_b = (log_a.detach(), log_b.detach()) if detach_opposite else (log_a, log_b)
    kl_b_from_a = F.kl_div(log_b, ref_a, reduction="batchmean", log_target=True)  # KL(P_a || P_b)
    kl_a_from_b = F.kl_div(log_a, ref_b, reduction="batchmean", log_target=True)  # KL(P_b || P_a)
    return kl_b_from_a + kl_a_from_b


def squared_error(predictions_a: torch.Tensor, predictions_b: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of two regression outputs; shapes (B,) and (B, 1) are both squeezed
    (mt-dnn squeezes one side only and silently broadcasts to B x B)."""
    return F.mse_loss(predictions_a.float().reshape(-1), predictions_b.float().reshape(-1))


def output_divergence(
    outputs_a: torch.Tensor, outputs_b: torch.Tensor, regression: bool, detach_opposite: bool = False
) -> torch.Tensor:
    """The paper's ℓ_s: symmetric KL for classification, squared error for regression."""
    if regression:
        return squared_error(outputs_a, outputs_b)
    return symmetric_kl(outputs_a, outputs_b, detach_opposite=detach_opposite)
