"""Mixout (Lee, Cho, Kang, ICLR 2020): in training, each input column of a Linear layer's weight is
swapped for the target (pretrained) column with probability p, rescaled so the expectation is the
current weight (bloodwass/mixout `mixout/mixout.py` L58-69, `mixout/mixlinear.py` L55-57):

    m ∈ {0,1}^in,  m_j ~ Bernoulli(1 − p), drawn once per forward (shared by the batch and all output rows)
    W_mix = ((1 − m)·u + m·W − p·u) / (1 − p)           E[W_mix] = W
    y = x·W_mixᵀ + b                                     (the bias is not mixed)
    eval: y = x·Wᵀ + b

u is the target: the layer's weight when mixout's prepare_model runs, held as a NON-PERSISTENT BUFFER, so
it follows .to(device/dtype) and stays out of state_dict (checkpoints keep the plain Linear keys). The
public code keeps it as a plain attribute: never moved or cast, copied host→device every step.
Composition order decides u: in `noisytune+mixout` u is the perturbed weight (the point fine-tuning
starts from, as for SMART's teacher), in `mixout+noisytune` the unperturbed checkpoint weight.

Gradient (`gradient`), same forward in both:
- `reference` (default): the authors' custom backward (bloodwass/mixout `mixout/mixout.py` L74-79),
  dL/dW = dL/dW_mix ⊙ m. It drops the 1/(1 − p) of the forward's derivative, so mixed weights get
  gradients (1 − p)× the true ones (10× smaller at p = 0.9), while biases, LayerNorms and unmixed layers
  get true ones. The paper's numbers were made with this code, so it is the default.
- `exact`: plain autograd through W_mix, dL/dW = dL/dW_mix ⊙ m/(1 − p), the true gradient of the forward.
  Not a harmless rescaling: AdamW cancels most of a constant factor per parameter, but the global
  gradient-norm clipping (max_grad_norm 1.0) sees mixed-weight gradients 1/(1 − p) times larger, which
  changes the clipping of every parameter, and SGD would take 1/(1 − p)-times larger steps.

Layers (`layers`):
- `paper` (default): every Linear of the pretrained model except the FFN input projections
  (BERT/RoBERTa/ELECTRA `*.intermediate.dense`, XLNet `*.ff.layer_1`). The paper replaces dropout with
  mixout, and the authors skipped exactly these layers "because there is no dropout in them"
  (bloodwass/mixout#13). Every other pretrained Linear of BERT sits in a sublayer with a dropout:
  query/key/value (attention-probability dropout), attention output and FFN output (hidden dropout on
  their outputs), the pooler (the classifier's dropout on its output); all of these are mixed. XLNet's
  attention uses raw Parameters, not Linear layers, and is not covered (mixout#3).
- `all`: every Linear of the pretrained model (the author's own practice, mixout#4).
`disable_dropout` (default True) sets every dropout probability in the model to 0 (nn.Dropout modules and
float `*dropout*` attributes such as attention-probability dropout): mixout replaces dropout (mixout#1,
the HF example).

The new task head (the layers the checkpoint did not have) has no pretrained weights to mix toward. By
default it gets no regularisation at all, neither dropout nor mixout: that is what the paper's main GLUE
experiments did (its Sec. 6.2 says so, and ablates the two alternatives below on the output layer).
- `head_dropout: true` keeps the dropout inside the head (the modules outside `model.base_model`, e.g.
  BERT's dropout on the pooled output, RoBERTa's `classifier.dropout`): the ablation's dropout(p) arm.
- `include_head: true` mixes the head's Linear layers toward their own random initialisation: the
  ablation's mixout(w_0, p) arm; with `layers: all` it is the HF example (`example_huggingface.py`,
  mixout#8). The two are alternatives; asking for both is refused.

Default p = 0.9, the paper's headline (grid {0.7, 0.8, 0.9}); p ∈ [0, 1). The mask is drawn in fp32 from
the global torch RNG (like dropout, so it follows the run seed); the mix is computed in fp32 and cast to
the weight dtype. Quantized layers (non-floating weights, e.g. bitsandbytes 4-bit) are refused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustft.errors import MethodConfigError
from robustft.methods.base import RunContext, is_quantized
from robustft.methods.settings import MixoutSettings

# The FFN input projection of each supported architecture: no dropout around it in the original models.
FFN_INPUT_SUFFIXES = ("intermediate.dense", "ff.layer_1")


def mix_weight(
    weight: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, p: float, gradient: str = "reference"
) -> torch.Tensor:
    """W_mix = ((1 − m)·u + m·W − p·u)/(1 − p) for a column mask m (shape: in_features), in fp32 or
    wider (float64 stays float64)."""
    dtype = torch.promote_types(weight.dtype, torch.float32)
    w, u, m = weight.to(dtype), target.to(dtype), mask.to(dtype)
    mixed = ((1 - m) * u + m * w - p * u) / (1 - p)
    if gradient == "reference":
        # Same value (W − W.detach() is exactly 0); the gradient to W is m·dW_mix, without 1/(1 − p).
        mixed = mixed.detach() + m * (w - w.detach())
    return mixed.to(weight.dtype)


class MixLinear(nn.Linear):
    """A Linear whose weight is mixed with a frozen target in training. It takes over the original
    layer's Parameters (same names, same tensors), so state_dict keys and the optimizer are unchanged."""

    def __init__(self, linear: nn.Linear, p: float, gradient: str = "reference") -> None:
        nn.Module.__init__(self)  # no fresh weights: the layer's own Parameters are reused below
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.p, self.gradient = float(p), gradient
        self.register_buffer("target", linear.weight.detach().clone(), persistent=False)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return F.linear(input, self.weight, self.bias)
        keep = torch.full((self.in_features,), 1 - self.p, dtype=torch.float32, device=self.weight.device)
        mask = torch.bernoulli(keep)
        return F.linear(input, mix_weight(self.weight, self.target, mask, self.p, self.gradient), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mixout={self.p}, gradient={self.gradient}"


def _head_module_names(model: nn.Module) -> frozenset[str]:
    """Names of the modules outside the pretrained backbone (`model.base_model`): the task head. Empty for
    a model that is its own base (no head)."""
    base = getattr(model, "base_model", model)
    if base is model:
        return frozenset()
    backbone = {id(module) for module in base.modules()}
    return frozenset(name for name, module in model.named_modules() if name and id(module) not in backbone)


def _set_parent(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


class Mixout(MixoutSettings):
    """Mixout's hooks; its settings and their checks are MixoutSettings (methods/settings.py)."""

    def selected_layers(self, model: nn.Module, context: RunContext) -> tuple[list[str], list[str]]:
        """(names of the Linear layers to mix, names of those skipped as FFN input projections)."""
        chosen, skipped = [], []
        for name, module in model.named_modules():
            if not isinstance(module, nn.Linear) or isinstance(module, MixLinear):
                continue
            if f"{name}.weight" in context.new_parameter_names:
                if self.include_head:
                    chosen.append(name)
            elif self.layers == "paper" and name.endswith(FFN_INPUT_SUFFIXES):
                skipped.append(name)
            else:
                chosen.append(name)
        return chosen, skipped

    def prepare_model(self, model: nn.Module, context: RunContext) -> None:
        chosen, skipped = self.selected_layers(model, context)
        if not chosen:
            raise MethodConfigError(
                f"mixout: {type(model).__name__} has no Linear layer to mix with layers={self.layers!r}, "
                f"include_head={self.include_head}"
            )
        for name in chosen:
            weight = model.get_submodule(name).weight
            if is_quantized(weight):  # bitsandbytes' Linear4bit is an nn.Linear holding packed codes
                raise MethodConfigError(
                    f"mixout: layer {name!r} has a {weight.dtype} (quantized) weight; mixout needs floating "
                    "weights (mix before quantizing, or leave the layer out with mixout.layers)"
                )
        for name in chosen:
            _set_parent(model, name, MixLinear(model.get_submodule(name), self.p, self.gradient))
        head_modules = _head_module_names(model)
        kept = head_modules if self.head_dropout else frozenset()
        dropouts = self._disable_dropout(model, keep=kept) if self.disable_dropout else []
        head_kept_dropout = self.head_dropout or not self.disable_dropout
        head = [name for name, on in (("mixout", self.include_head), ("dropout", head_kept_dropout)) if on]
        context.log["mixout"] = {
            "p": self.p,
            "gradient": self.gradient,
            "layers_mixed": chosen,
            "layers_skipped_ffn_input": skipped,
            "dropout_disabled": dropouts,
            "head_modules": sorted(head_modules),
            "head_regularisation": "+".join(head) or "none",  # mixout: toward its own initialisation
            # u = the weights as the components listed before mixout left them.
            "target_after_components": sorted(key for key in context.log if key != "mixout"),
        }

    @staticmethod
    def _disable_dropout(model: nn.Module, keep: frozenset[str] = frozenset()) -> list[str]:
        """Set every dropout probability to 0, except in the modules named in `keep`; return what was
        changed."""
        changed = []
        for name, module in model.named_modules():
            if name in keep:
                continue
            if isinstance(module, nn.modules.dropout._DropoutNd) and module.p != 0:
                module.p = 0.0
                changed.append(name)
            # Attention dropout kept as a float attribute (e.g. `attention_dropout` in Llama-style models).
            for attribute, value in list(vars(module).items()):
                if "dropout" in attribute and isinstance(value, float) and value != 0:
                    setattr(module, attribute, 0.0)
                    changed.append(f"{name}.{attribute}" if name else attribute)
        return changed
