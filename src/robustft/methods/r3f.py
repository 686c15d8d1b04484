"""R3F (Aghajanyan et al., 2020, "Better Fine-Tuning by Reducing Representational Collapse", Eq. 1-2).

    z ~ U(-σ, σ) or N(0, σ²)
    L = L_task(f(x)) + λ · KL_S(f(x) ‖ f(x + z))

as in fairseq `examples/rxf/rxf_src/sentence_prediction_r3f.py`, the reference implementation:
- z has the shape of the token (word) embeddings and is added at every position, padding included;
  position and token-type embeddings are added afterwards, inside the model, exactly once.
- The noisy branch starts from `embeddings.detach().clone() + z`, so it does not backpropagate into the
  embedding table; the rest of the network gets gradients from both branches.
- KL_S = KL(p‖q) + KL(q‖p) with NEITHER side detached (unlike SMART's mt-dnn criterion), in fp32,
  averaged over the batch. fairseq sums the KL and multiplies by the sample size because its task loss is
  a sum; relative to a mean task loss that is exactly our `batchmean`.
- The clean and noisy forwards use independent dropout masks (as fairseq). Combined with NEFTune, the
  looked-up embeddings already carry NEFTune's noise (its hook is on the embedding layer).

Deliberate deviation: for regression targets (STS-B) fairseq computes the KL but never adds it, so its
R3F is plain fine-tuning there. We add λ · mean((f(x) - f(x + z))²) instead, the squared-error analogue
SMART uses for regression (divergences.output_divergence). R4F (spectral norm on the head) is not here.

Precision: the noise is drawn in fp32 and added to the embeddings looked up in fp32; it is cast back to
the embeddings' dtype only if the model itself is half precision, where σ = 1e-5 is below the bf16/fp16
spacing of entries about 0.05 in size (2.4e-4 in bf16) and rounds away at once. Mixed precision with fp32
weights does not save it: under bf16 autocast the embedding lookup, x + z, the position and token-type
sums and the embedding LayerNorm all stay fp32, but the first matmul (the attention's query, key and value
projections) casts its input to bf16, whose spacing there is far above z after the LayerNorm, so x and
x + z mostly round to the same bf16 values and KL_S measures dropout and rounding rather than the noise.
Measured on MiniLM-L6 (eval mode, σ = 1e-5 uniform): after the LayerNorm z is about 4e-5 against a bf16
spacing of about 2e-3; 8% of the entries change their bf16 value; the logits move 1.2e-4 under autocast
against 9e-7 in fp32, and that move does not flip sign with z (cosine of the changes from +z and -z:
-0.2 under autocast, 0.9997 in fp32), so it is rounding, not z.
`full_precision_reason` says so, and `train.precision: auto` then trains R3F runs in fp32.
"""

from __future__ import annotations

import torch
from torch import nn

from robustft.methods.base import Batch, RunContext, require_input_embeddings
from robustft.methods.divergences import output_divergence
from robustft.methods.settings import R3FSettings


class R3F(R3FSettings):
    """R3F's hooks; its settings and their checks are R3FSettings (methods/settings.py)."""

    def prepare_model(self, model: nn.Module, context: RunContext) -> None:
        require_input_embeddings("r3f", model)
        context.log["r3f"] = {
            "noise_eps": self.noise_eps,
            "r3f_lambda": self.r3f_lambda,
            "noise_type": self.noise_type,
            "divergence": "squared_error" if context.regression else "symmetric_kl",
        }

    def noise(self, like: torch.Tensor) -> torch.Tensor:
        """z in fp32, same shape as the embeddings, every position."""
        z = torch.empty(like.shape, dtype=torch.float32, device=like.device)
        return (
            z.uniform_(-self.noise_eps, self.noise_eps)
            if self.noise_type == "uniform"
            else z.normal_(0.0, self.noise_eps)
        )

    def extra_loss(self, batch: Batch, context: RunContext) -> torch.Tensor | None:
        if self.r3f_lambda == 0:
            return None  # no term, so no second forward either
        embeddings = batch.embed()
        noisy_embeddings = (embeddings.detach().float() + self.noise(embeddings)).to(embeddings.dtype)
        noisy_logits = batch.forward(noisy_embeddings)
        # Gradients flow through both the clean and the noisy outputs (fairseq detaches neither).
        divergence = output_divergence(noisy_logits, batch.logits, regression=context.regression)
        return self.r3f_lambda * divergence
