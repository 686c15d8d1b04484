"""Parameter groups for NoisyTune Figure 5, and their L1 norms."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn

from robustft.train.norms import GROUP_PATTERNS, group_l1_norms, parameter_groups


@pytest.mark.parametrize(
    ("name", "groups"),
    [
        # BERT / MiniLM
        ("bert.encoder.layer.0.attention.self.query.weight", ["query"]),
        ("bert.encoder.layer.3.attention.self.key.bias", ["key"]),
        ("bert.encoder.layer.11.attention.self.value.weight", ["value"]),
        ("bert.encoder.layer.0.attention.output.dense.weight", ["attention_output"]),
        ("bert.encoder.layer.0.attention.output.dense.bias", ["attention_output"]),
        ("bert.encoder.layer.0.intermediate.dense.weight", ["ffn"]),
        ("bert.encoder.layer.0.output.dense.weight", ["ffn"]),
        ("bert.encoder.layer.0.output.dense.bias", ["ffn"]),
        ("bert.encoder.layer.0.attention.output.LayerNorm.weight", ["layernorm"]),
        ("bert.encoder.layer.0.output.LayerNorm.bias", ["layernorm"]),
        ("bert.embeddings.word_embeddings.weight", ["embeddings"]),
        ("bert.embeddings.position_embeddings.weight", ["embeddings"]),
        ("bert.embeddings.token_type_embeddings.weight", ["embeddings"]),
        ("bert.embeddings.LayerNorm.weight", ["layernorm", "embeddings"]),
        ("bert.pooler.dense.weight", []),
        ("classifier.weight", []),
        # RoBERTa and ELECTRA: same encoder names under another prefix; their heads are in no group
        ("roberta.encoder.layer.5.attention.self.query.weight", ["query"]),
        ("roberta.encoder.layer.5.attention.output.dense.weight", ["attention_output"]),
        ("roberta.encoder.layer.5.output.dense.weight", ["ffn"]),
        ("roberta.embeddings.word_embeddings.weight", ["embeddings"]),
        ("classifier.dense.weight", []),
        ("classifier.out_proj.weight", []),
        ("electra.encoder.layer.0.attention.self.value.bias", ["value"]),
        ("electra.encoder.layer.0.intermediate.dense.weight", ["ffn"]),
        ("electra.embeddings.LayerNorm.bias", ["layernorm", "embeddings"]),
        # XLNet
        ("transformer.layer.0.rel_attn.q", ["query"]),
        ("transformer.layer.0.rel_attn.k", ["key"]),
        ("transformer.layer.0.rel_attn.v", ["value"]),
        ("transformer.layer.0.rel_attn.o", ["attention_output"]),
        ("transformer.layer.0.rel_attn.r", []),
        ("transformer.layer.0.rel_attn.r_w_bias", []),
        ("transformer.layer.0.rel_attn.layer_norm.weight", ["layernorm"]),
        ("transformer.layer.0.ff.layer_1.weight", ["ffn"]),
        ("transformer.layer.0.ff.layer_2.bias", ["ffn"]),
        ("transformer.word_embedding.weight", ["embeddings"]),
        # Llama-style decoders
        ("model.layers.0.self_attn.q_proj.weight", ["query"]),
        ("model.layers.0.self_attn.k_proj.weight", ["key"]),
        ("model.layers.0.self_attn.v_proj.weight", ["value"]),
        ("model.layers.0.self_attn.o_proj.weight", ["attention_output"]),
        ("model.layers.0.mlp.gate_proj.weight", ["ffn"]),
        ("model.layers.0.mlp.up_proj.weight", ["ffn"]),
        ("model.layers.0.mlp.down_proj.weight", ["ffn"]),
        ("model.layers.0.input_layernorm.weight", ["layernorm"]),
        ("model.layers.0.post_attention_layernorm.weight", ["layernorm"]),
        ("model.norm.weight", ["layernorm"]),
        ("model.embed_tokens.weight", ["embeddings"]),
        ("lm_head.weight", []),
    ],
)
def test_parameter_groups(name: str, groups: list[str]) -> None:
    assert parameter_groups(name) == groups


def _tiny(config_cls_name: str, model_cls_name: str, **kwargs) -> nn.Module:
    import transformers

    config = getattr(transformers, config_cls_name)(vocab_size=64, **kwargs)
    return getattr(transformers, model_cls_name)(config)


BERT_LIKE = {"hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 12}


@pytest.mark.parametrize(
    ("config_cls", "model_cls", "kwargs", "per_layer"),
    [
        (
            "BertConfig",
            "BertForSequenceClassification",
            BERT_LIKE,
            {"query": 2, "key": 2, "value": 2, "attention_output": 2, "ffn": 4, "layernorm": 4},
        ),
        (
            "RobertaConfig",
            "RobertaForSequenceClassification",
            BERT_LIKE,
            {"query": 2, "key": 2, "value": 2, "attention_output": 2, "ffn": 4, "layernorm": 4},
        ),
        (
            "ElectraConfig",
            "ElectraForSequenceClassification",
            {**BERT_LIKE, "embedding_size": 8},
            {"query": 2, "key": 2, "value": 2, "attention_output": 2, "ffn": 4, "layernorm": 4},
        ),
        (
            "XLNetConfig",
            "XLNetForSequenceClassification",
            {"d_model": 8, "n_layer": 2, "n_head": 2, "d_inner": 12},
            {"query": 1, "key": 1, "value": 1, "attention_output": 1, "ffn": 4, "layernorm": 4},
        ),
        (
            "LlamaConfig",
            "LlamaForCausalLM",
            {**BERT_LIKE, "num_key_value_heads": 2},
            {"query": 1, "key": 1, "value": 1, "attention_output": 1, "ffn": 3, "layernorm": 2},
        ),
    ],
)
def test_groups_cover_real_architectures(config_cls, model_cls, kwargs, per_layer) -> None:
    """Parameter names as the installed transformers really spells them, two layers each."""
    model = _tiny(config_cls, model_cls, **kwargs)
    counts: Counter[str] = Counter()
    for name, _ in model.named_parameters():
        if ".layer.0." in name or ".layers.0." in name:
            counts.update(g for g in parameter_groups(name) if g != "embeddings")
    assert dict(counts) == per_layer
    # Every encoder-layer parameter is in a group, except XLNet's relative-position extras.
    for name, _ in model.named_parameters():
        if (".layer.1." in name or ".layers.1." in name) and "rel_attn" not in name:
            assert parameter_groups(name), name
    # Exactly one word-embedding matrix is recognised as embeddings.
    embeddings = [n for n, _ in model.named_parameters() if "embeddings" in parameter_groups(n)]
    assert any("word_embedding" in n or "embed_tokens" in n for n in embeddings)


class _Toy(nn.Module):
    """BERT-like names with hand-set weights: per-group L1 sums are easy to write down."""

    def __init__(self) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(2, 3)
        self.layer = nn.ModuleDict(
            {
                "attention": nn.ModuleDict(
                    {
                        "self": nn.ModuleDict({"query": nn.Linear(2, 2)}),
                        "output": nn.ModuleDict({"dense": nn.Linear(2, 2), "LayerNorm": nn.LayerNorm(2)}),
                    }
                ),
                "output": nn.ModuleDict({"dense": nn.Linear(2, 2)}),
            }
        )
        self.classifier = nn.Linear(2, 1)
        values = {
            "embeddings.weight": -1.5,  # 6 elements -> 9
            "layer.attention.self.query.weight": 0.25,  # 4 -> 1
            "layer.attention.self.query.bias": -2.0,  # 2 -> 4
            "layer.attention.output.dense.weight": 1.0,  # 4 -> 4
            "layer.attention.output.dense.bias": 0.0,  # 2 -> 0
            "layer.attention.output.LayerNorm.weight": -3.0,  # 2 -> 6
            "layer.attention.output.LayerNorm.bias": 0.5,  # 2 -> 1
            "layer.output.dense.weight": 0.5,  # 4 -> 2
            "layer.output.dense.bias": -1.0,  # 2 -> 2
            "classifier.weight": -4.0,  # 2 -> 8
            "classifier.bias": 10.0,  # 1 -> 10
        }
        with torch.no_grad():
            for name, parameter in self.named_parameters():
                parameter.fill_(values.pop(name))
        assert not values


def test_group_l1_norms_exact() -> None:
    norms = group_l1_norms(_Toy())
    assert norms == {
        "query": {"l1": 5.0, "numel": 6},
        "attention_output": {"l1": 4.0, "numel": 6},
        "ffn": {"l1": 4.0, "numel": 6},
        "layernorm": {"l1": 7.0, "numel": 4},
        "embeddings": {"l1": 9.0, "numel": 6},
        "all": {"l1": 47.0, "numel": 31},
    }
    # Groups with no parameter (key, value here) are left out rather than reported as 0/0.
    assert "key" not in norms and "value" not in norms
    assert all(type(g["l1"]) is float and type(g["numel"]) is int for g in norms.values())


def test_group_l1_norms_exclude() -> None:
    norms = group_l1_norms(_Toy(), exclude=frozenset({"classifier.weight", "classifier.bias"}))
    assert norms["all"] == {"l1": 29.0, "numel": 28}
    norms = group_l1_norms(
        _Toy(), exclude=frozenset({"layer.attention.self.query.bias", "embeddings.weight"})
    )
    assert norms["query"] == {"l1": 1.0, "numel": 4}
    assert "embeddings" not in norms
    assert norms["all"] == {"l1": 47.0 - 4.0 - 9.0, "numel": 31 - 2 - 6}


def test_group_l1_norms_match_float64_reference() -> None:
    torch.manual_seed(0)
    model = nn.Linear(300, 400)  # names "weight", "bias": only in "all"
    expected = sum(float(p.detach().double().abs().sum()) for p in model.parameters())
    norms = group_l1_norms(model)
    assert set(norms) == {"all"}
    assert norms["all"]["l1"] == pytest.approx(expected, rel=1e-12)
    assert norms["all"]["numel"] == 300 * 400 + 400


def test_every_group_has_patterns() -> None:
    assert set(GROUP_PATTERNS) == {
        "query",
        "key",
        "value",
        "attention_output",
        "ffn",
        "layernorm",
        "embeddings",
    }
