"""Which parameters train: freezing parts of a causal LM (NEFTune Table 11, the `freeze` SFT setting).

The parts are found generically, so one setting works across model families:
- "embeddings": the input embedding module (`get_input_embeddings()`);
- "lm_head": the output projection (`get_output_embeddings()`), bias included where it has one;
- "attention": every layer's self-attention module, by the attribute name its family gives it
  (`self_attn` in Llama, SmolLM2, Mistral, Qwen2 and OPT; `attn` in GPT-2; `attention` in GPT-NeoX;
  `self_attention` in Falcon and BLOOM). The layer norms before it are not part of it and keep training.

A tied model (SmolLM2 ties its head to its input embeddings) has one matrix for both: freezing either part
freezes that matrix, and the record says the pair is tied, so "lm_head frozen" is not mistaken for a model
whose embeddings still train.
"""

from __future__ import annotations

from typing import Any

from robustft.errors import RunError

FREEZABLE_PARTS = ("embeddings", "lm_head", "attention")
# The attribute names model families give a layer's self-attention module (module docstring).
ATTENTION_MODULE_NAMES = ("self_attn", "attn", "attention", "self_attention")


def attention_modules(model: Any) -> dict[str, Any]:
    """name -> module for each self-attention module of `model`, outermost only (GPT-NeoX's `attention`
    has no inner `attn`, but a family that nests one must not count its parameters twice)."""
    found: dict[str, Any] = {}
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] not in ATTENTION_MODULE_NAMES:
            continue
        if any(name.startswith(outer + ".") for outer in found):
            continue
        found[name] = module
    if not found:
        raise RunError(
            f"sft setting 'freeze': no self-attention module found in {type(model).__name__} (looked for "
            f"modules named {list(ATTENTION_MODULE_NAMES)}); this model family names its attention "
            "otherwise, so 'attention' cannot be frozen"
        )
    return found


def _part_modules(model: Any, part: str) -> list[Any]:
    if part == "embeddings":
        modules = [model.get_input_embeddings()]
    elif part == "lm_head":
        modules = [model.get_output_embeddings()]
    else:
        modules = list(attention_modules(model).values())
    if any(module is None for module in modules):
        raise RunError(f"sft setting 'freeze': {type(model).__name__} has no {part!r} module")
    return modules


def tied_embeddings(model: Any) -> bool:
    """Whether the input embeddings and the LM head are one matrix (the same Parameter)."""
    embeddings, head = model.get_input_embeddings(), model.get_output_embeddings()
    return embeddings is not None and head is not None and embeddings.weight is head.weight


def freeze_parts(model: Any, parts: list[str]) -> dict[str, Any]:
    """Set requires_grad False on the parameters of `parts` of `model` and return what run.json records:
    the parts, whether the embeddings are tied, the names of the frozen parameters, and how many
    parameters train and how many the model has. With no parts the model is left as it is."""
    unknown = sorted(set(parts) - set(FREEZABLE_PARTS))
    if unknown:
        raise RunError(f"sft setting 'freeze': unknown part(s) {unknown}; known: {list(FREEZABLE_PARTS)}")
    frozen_ids = set()
    for part in parts:
        for module in _part_modules(model, part):
            for parameter in module.parameters():
                parameter.requires_grad_(False)
                frozen_ids.add(id(parameter))
    # named_parameters lists a tied matrix once, under its first name (the input embeddings' usually).
    named = list(model.named_parameters())
    return {
        "parts": list(parts),
        "tied_embeddings": tied_embeddings(model),
        "frozen_parameters": [name for name, parameter in named if id(parameter) in frozen_ids],
        "trainable_parameters": sum(p.numel() for _, p in named if p.requires_grad),
        "total_parameters": sum(p.numel() for _, p in named),
    }
