"""NEFTune (Jain et al., ICLR 2024): noisy input embeddings during instruction fine-tuning.

    X' = X + (α / √(L·d)) · ε,   ε ~ U(-1, 1)^{L×d},   training forwards only

The expected L2 norm of the noise over a sequence is α/√3. Two named modes, because the public code
disagrees with itself on L and on padding:
- `paper`: the authors' experiment code (`experiment_code/train.py`): L is each example's unpadded
  length (attention-mask sum) and padding gets no noise.
- `hf`: the transformers/TRL `neftune_noise_alpha` hook: L is the padded batch length, one magnitude for
  the whole batch, padding noised too. Same draws as transformers' hook under the same RNG state.
`distribution: gaussian` replaces ε by N(0, 1) (NEFTune Table 6) at the same α/√(L·d) scale.
The noise is added by a forward hook on `get_input_embeddings()` that RobustTrainer attaches for
training only and removes in a `finally`, so evaluation and generation never see it.
"""

from __future__ import annotations

import torch
from torch import nn

from robustft.errors import MethodConfigError
from robustft.methods.base import RunContext, require_input_embeddings
from robustft.methods.settings import NEFTuneSettings


class NEFTune(NEFTuneSettings):
    """NEFTune's hooks; its settings and their checks are NEFTuneSettings (methods/settings.py)."""

    def prepare_model(self, model: nn.Module, context: RunContext) -> None:
        require_input_embeddings("neftune", model)
        context.log["neftune"] = {"mode": self.mode, "alpha": self.alpha, "distribution": self.distribution}

    def embedding_noise(
        self, embeddings: torch.Tensor, attention_mask: torch.Tensor | None, context: RunContext
    ) -> torch.Tensor:
        if embeddings.dim() != 3:
            raise MethodConfigError(
                f"neftune expects (batch, length, dim) embeddings, got shape {tuple(embeddings.shape)}"
            )
        if self.mode == "hf":
            return self._hf_noise(embeddings)
        return self._paper_noise(embeddings, attention_mask)

    def _draw(self, like: torch.Tensor) -> torch.Tensor:
        noise = torch.empty(like.shape, dtype=torch.float32, device=like.device)
        return noise.uniform_(-1, 1) if self.distribution == "uniform" else noise.normal_()

    def _hf_noise(self, embeddings: torch.Tensor) -> torch.Tensor:
        # Computed as transformers does (a float32 tensor sqrt), so that the bounds match to the bit.
        magnitude = self.alpha / torch.sqrt(torch.tensor(embeddings.size(1) * embeddings.size(2)))
        if self.distribution == "uniform":
            # Exactly transformers' neftune_post_forward_hook, draw for draw.
            return torch.zeros_like(embeddings).uniform_(-magnitude, magnitude)
        return (self._draw(embeddings) * magnitude).to(embeddings.dtype)

    def _paper_noise(self, embeddings: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, dim = embeddings.shape
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, device=embeddings.device)
        mask = attention_mask.to(torch.float32)
        lengths = mask.sum(dim=1).clamp(min=1)
        magnitude = self.alpha / torch.sqrt(lengths * dim)
        noise = self._draw(embeddings) * mask.unsqueeze(-1) * magnitude.view(batch, 1, 1)
        return noise.to(embeddings.dtype)
