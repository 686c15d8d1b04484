"""The `freeze` SFT setting (robustft.train.freeze): which parameters train, on tiny random causal LMs of
the families the attention lookup names (Llama/SmolLM2, GPT-2, OPT), tied and untied."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    OPTConfig,
    OPTForCausalLM,
)

from robustft.errors import RunError
from robustft.train.freeze import attention_modules, freeze_parts
from robustft.train.sft import SFTSettings


def tiny_llama(tied: bool = False) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=40,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=tied,  # SmolLM2 ties its head to its embeddings
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForCausalLM(config)


def trainable_names(model: torch.nn.Module) -> set[str]:
    return {name for name, parameter in model.named_parameters() if parameter.requires_grad}


def test_nothing_frozen_by_default():
    model = tiny_llama()
    assert SFTSettings().freeze == []
    assert trainable_names(model) == {name for name, _ in model.named_parameters()}


def test_freezing_the_embeddings_leaves_the_untied_head_training():
    model = tiny_llama()
    record = freeze_parts(model, ["embeddings"])
    frozen = {name for name, _ in model.named_parameters()} - trainable_names(model)
    assert frozen == {"model.embed_tokens.weight"} == set(record["frozen_parameters"])
    assert model.lm_head.weight.requires_grad and not record["tied_embeddings"]
    embedding_size = model.model.embed_tokens.weight.numel()
    assert record["trainable_parameters"] == record["total_parameters"] - embedding_size
    assert record["total_parameters"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("part", ["embeddings", "lm_head"])
def test_a_tied_pair_is_frozen_together(part: str):
    model = tiny_llama(tied=True)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    record = freeze_parts(model, [part])
    assert record["tied_embeddings"] and record["parts"] == [part]
    assert not model.lm_head.weight.requires_grad and not model.model.embed_tokens.weight.requires_grad
    # The shared matrix is counted once, under the name named_parameters gives it.
    assert record["frozen_parameters"] == ["model.embed_tokens.weight"]
    assert "model.layers.0.self_attn.q_proj.weight" in trainable_names(model)


def test_attention_freezes_each_layers_self_attention_only():
    model = tiny_llama()
    record = freeze_parts(model, ["attention"])
    frozen = set(record["frozen_parameters"])
    projections = {f"model.layers.{i}.self_attn.{p}_proj.weight" for i in (0, 1) for p in "qkvo"}
    assert frozen == projections
    trainable = trainable_names(model)
    assert (
        "model.layers.0.mlp.up_proj.weight" in trainable
        and "model.layers.0.input_layernorm.weight" in trainable
    )
    assert "model.embed_tokens.weight" in trainable and "lm_head.weight" in trainable
    assert record["trainable_parameters"] == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_attention_is_found_in_gpt2_and_opt():
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_embd=16, n_layer=2, n_head=2, n_positions=32))
    assert sorted(attention_modules(gpt2)) == ["transformer.h.0.attn", "transformer.h.1.attn"]
    record = freeze_parts(gpt2, ["attention"])
    assert {"transformer.h.0.attn.c_attn.weight", "transformer.h.1.attn.c_proj.bias"} <= set(
        record["frozen_parameters"]
    )
    assert all(".attn." in name for name in record["frozen_parameters"])
    assert "transformer.h.0.mlp.c_fc.weight" in trainable_names(gpt2)
    opt = OPTForCausalLM(
        OPTConfig(
            vocab_size=40,
            hidden_size=16,
            ffn_dim=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            word_embed_proj_dim=16,
            max_position_embeddings=32,
        )
    )
    assert sorted(attention_modules(opt)) == [
        "model.decoder.layers.0.self_attn",
        "model.decoder.layers.1.self_attn",
    ]


class _NoAttentionLM(torch.nn.Module):
    """A causal-LM-shaped model whose sequence mixer has a name no attention lookup knows (a state-space
    family's `mixer`)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.mixer = torch.nn.Linear(4, 4)
        self.head = torch.nn.Linear(4, 10)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.embed

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.head


def test_no_attention_module_is_a_clear_error():
    with pytest.raises(RunError, match="no self-attention module found in _NoAttentionLM"):
        freeze_parts(_NoAttentionLM(), ["attention"])
    record = freeze_parts(_NoAttentionLM(), ["lm_head"])  # the other parts are found all the same
    assert record["frozen_parameters"] == ["head.weight", "head.bias"]


@pytest.mark.parametrize(
    ("freeze", "named"),
    [
        (["embedding"], r"unknown: \['embedding'\]"),
        (["attention", "attention"], "at most once"),
        ("attention", "must be a list"),
    ],
)
def test_a_bad_freeze_setting_names_the_value(freeze, named: str):
    with pytest.raises(ValueError, match=named):
        SFTSettings(freeze=freeze)


def test_freeze_is_refused_with_an_adapter():
    with pytest.raises(ValueError, match="applies to full fine-tuning; adapter 'lora'"):
        SFTSettings(freeze=["lm_head"], adapter="lora")
