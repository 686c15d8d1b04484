"""Parameter groups for NoisyTune Figure 5, and their L1 norms."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

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
        ("bert.encoder.layer.0.attention.output.dense.weight", ["attention_output", "dense"]),
        ("bert.encoder.layer.0.attention.output.dense.bias", ["attention_output", "dense"]),
        ("bert.encoder.layer.0.intermediate.dense.weight", ["ffn", "dense"]),
        ("bert.encoder.layer.0.output.dense.weight", ["ffn", "dense"]),
        ("bert.encoder.layer.0.output.dense.bias", ["ffn", "dense"]),
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
        ("roberta.encoder.layer.5.attention.output.dense.weight", ["attention_output", "dense"]),
        ("roberta.encoder.layer.5.output.dense.weight", ["ffn", "dense"]),
        ("roberta.embeddings.word_embeddings.weight", ["embeddings"]),
        ("classifier.dense.weight", []),
        ("classifier.out_proj.weight", []),
        ("electra.encoder.layer.0.attention.self.value.bias", ["value"]),
        ("electra.encoder.layer.0.intermediate.dense.weight", ["ffn", "dense"]),
        ("electra.embeddings.LayerNorm.bias", ["layernorm", "embeddings"]),
        # XLNet
        ("transformer.layer.0.rel_attn.q", ["query"]),
        ("transformer.layer.0.rel_attn.k", ["key"]),
        ("transformer.layer.0.rel_attn.v", ["value"]),
        ("transformer.layer.0.rel_attn.o", ["attention_output", "dense"]),
        ("transformer.layer.0.rel_attn.r", []),
        ("transformer.layer.0.rel_attn.r_w_bias", []),
        ("transformer.layer.0.rel_attn.layer_norm.weight", ["layernorm"]),
        ("transformer.layer.0.ff.layer_1.weight", ["ffn", "dense"]),
        ("transformer.layer.0.ff.layer_2.bias", ["ffn", "dense"]),
        ("transformer.word_embedding.weight", ["embeddings"]),
        # Llama-style decoders
        ("model.layers.0.self_attn.q_proj.weight", ["query"]),
        ("model.layers.0.self_attn.k_proj.weight", ["key"]),
        ("model.layers.0.self_attn.v_proj.weight", ["value"]),
        ("model.layers.0.self_attn.o_proj.weight", ["attention_output", "dense"]),
        ("model.layers.0.mlp.gate_proj.weight", ["ffn", "dense"]),
        ("model.layers.0.mlp.up_proj.weight", ["ffn", "dense"]),
        ("model.layers.0.mlp.down_proj.weight", ["ffn", "dense"]),
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
            {"query": 2, "key": 2, "value": 2, "attention_output": 2, "ffn": 4, "dense": 6, "layernorm": 4},
        ),
        (
            "RobertaConfig",
            "RobertaForSequenceClassification",
            BERT_LIKE,
            {"query": 2, "key": 2, "value": 2, "attention_output": 2, "ffn": 4, "dense": 6, "layernorm": 4},
        ),
        (
            "ElectraConfig",
            "ElectraForSequenceClassification",
            {**BERT_LIKE, "embedding_size": 8},
            {"query": 2, "key": 2, "value": 2, "attention_output": 2, "ffn": 4, "dense": 6, "layernorm": 4},
        ),
        (
            "XLNetConfig",
            "XLNetForSequenceClassification",
            {"d_model": 8, "n_layer": 2, "n_head": 2, "d_inner": 12},
            {"query": 1, "key": 1, "value": 1, "attention_output": 1, "ffn": 4, "dense": 5, "layernorm": 4},
        ),
        (
            "LlamaConfig",
            "LlamaForCausalLM",
            {**BERT_LIKE, "num_key_value_heads": 2},
            {"query": 1, "key": 1, "value": 1, "attention_output": 1, "ffn": 3, "dense": 4, "layernorm": 2},
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
        "dense": {"l1": 8.0, "numel": 12},
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
        "dense",
        "layernorm",
        "embeddings",
    }


def test_dense_group_on_real_bert_names() -> None:
    """On BERT's own parameter names: "dense" is the six dense tensors of every encoder layer (attention
    output, intermediate, output; weight and bias) and nothing else; the pooler is not in it."""
    model = _tiny("BertConfig", "BertForSequenceClassification", **BERT_LIKE)
    dense = [n for n, _ in model.named_parameters() if "dense" in parameter_groups(n)]
    expected = [
        f"bert.encoder.layer.{layer}.{module}.dense.{kind}"
        for layer in range(2)
        for module in ("attention.output", "intermediate", "output")
        for kind in ("weight", "bias")
    ]
    assert dense == expected
    assert "bert.pooler.dense.weight" in dict(model.named_parameters())
    norms = group_l1_norms(model)
    # dense = attention_output + ffn, disjoint from query/key/value
    assert norms["dense"]["numel"] == norms["attention_output"]["numel"] + norms["ffn"]["numel"]
    assert norms["dense"]["l1"] == pytest.approx(norms["attention_output"]["l1"] + norms["ffn"]["l1"])
    per_layer = 8 * 8 + 8 + 8 * 12 + 12 + 12 * 8 + 8
    assert norms["dense"]["numel"] == 2 * per_layer


# ------------------------------------------------------------------------------ checkpoints in norms.jsonl


@pytest.mark.parametrize(
    ("max_steps", "checkpoints", "expected"),
    [
        (8, 3, {3: [1], 5: [2], 8: [3]}),  # 2.67 -> 3, 5.33 -> 5
        (10, 4, {3: [1], 5: [2], 8: [3], 10: [4]}),  # 2.5 and 7.5 round up (not to even)
        (345, 9, {38: [1], 77: [2], 115: [3], 153: [4], 192: [5], 230: [6], 268: [7], 307: [8], 345: [9]}),
        (3, 5, {1: [1, 2], 2: [3, 4], 3: [5]}),  # more checkpoints than steps share steps: 0.6, 1.2 -> 1
        (2, 9, {1: [1, 2, 3, 4, 5, 6], 2: [7, 8, 9]}),  # 0.22 and 0.44 round to step 0: moved to step 1
    ],
)
def test_norm_checkpoint_steps(max_steps: int, checkpoints: int, expected: dict[int, list[int]]) -> None:
    from robustft.train.callbacks import norm_checkpoint_steps

    assert norm_checkpoint_steps(max_steps, checkpoints) == expected


RTE_ROWS = 16  # 4 steps per epoch at batch 4; two epochs = 8 steps


@pytest.fixture(scope="module")
def rte16(glue_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rte16")
    for split in ("train", "dev"):
        source = glue_dir / "RTE" / f"{split}.tsv"
        if not source.exists():
            pytest.skip(f"{source} missing")
        lines = source.read_text(encoding="utf-8").splitlines(keepends=True)[: RTE_ROWS + 1]
        target = root / "glue" / "RTE" / f"{split}.tsv"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(lines), encoding="utf-8")
    return root


def _spec(model: str, data_dir: Path, **train: Any):
    from robustft.train.config import RunSpec, TrainConfig

    settings = {"epochs": 2, "batch_size": 4, "eval_batch_size": 16, "max_seq_length": 32, "logging_steps": 2}
    return RunSpec(
        model=model,
        task="rte",
        method="noisytune",
        seed=2,
        train=TrainConfig(**{**settings, **train}),
        data_dir=str(data_dir),
    )


_UNINTERRUPTED: dict[str, Path] = {}


@pytest.fixture
def checkpointed_run(tiny_model: str, rte16: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run with norm_checkpoints=3 and a checkpoint every 4 steps (once per module)."""
    from robustft.train.glue import train_run

    if "run" not in _UNINTERRUPTED:
        out = tmp_path_factory.mktemp("norm-checkpoints") / "run"
        assert (
            train_run(_spec(tiny_model, rte16, norm_checkpoints=3, checkpoint_steps=4), out)["status"] == "ok"
        )
        _UNINTERRUPTED["run"] = out
    return _UNINTERRUPTED["run"]


def _points(out: Path) -> list[tuple[str, int, int | None]]:
    from robustft.io import read_jsonl

    return [(r["point"], r["step"], r.get("checkpoint")) for r in read_jsonl(out / "norms.jsonl")]


def test_norm_checkpoints_are_recorded(checkpointed_run: Path) -> None:
    from robustft.io import read_jsonl

    # start = checkpoint 0; checkpoints at steps 3, 5, 8; evals at the two epoch ends (4, 8). At step 8 the
    # checkpoint comes before the evaluation, and both are written although they share a step.
    assert _points(checkpointed_run) == [
        ("start", 0, 0),
        ("checkpoint", 3, 1),
        ("eval", 4, None),
        ("checkpoint", 5, 2),
        ("checkpoint", 8, 3),
        ("eval", 8, None),
    ]
    records = read_jsonl(checkpointed_run / "norms.jsonl")
    assert "dense" in records[0]["groups"]
    assert records[4]["groups"] == records[5]["groups"]  # same step, same weights
    assert records[1]["groups"]["all"]["l1"] != records[0]["groups"]["all"]["l1"]  # training moved them
    assert records[1]["epoch"] == pytest.approx(0.75)


def test_no_norm_checkpoints_by_default(tiny_model: str, rte16: Path, tmp_path: Path) -> None:
    from robustft.train.glue import train_run

    train_run(_spec(tiny_model, rte16, epochs=1, checkpoint_steps=0), tmp_path / "run")
    assert _points(tmp_path / "run") == [("start", 0, None), ("eval", 4, None)]


def test_resumed_run_does_not_repeat_norm_checkpoints(
    checkpointed_run: Path, tiny_model: str, rte16: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Crash during step 7: the checkpoint at step 5 is written, then dropped on resume from checkpoint-4 and
    written again by the resumed run, so the file ends up exactly as the uninterrupted run's."""
    from robustft.io import read_jsonl
    from robustft.train.glue import train_run
    from robustft.train.trainer import RobustTrainer

    spec = _spec(tiny_model, rte16, norm_checkpoints=3, checkpoint_steps=4)
    out = tmp_path / "run"
    original = RobustTrainer.compute_loss

    def crash(self, model, inputs, *args, **kwargs):
        if model.training and self.state.global_step + 1 == 7:
            raise RuntimeError("worker lost")
        return original(self, model, inputs, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(RobustTrainer, "compute_loss", crash)
        with pytest.raises(RuntimeError, match="worker lost"):
            train_run(spec, out)
    assert _points(out) == [("start", 0, 0), ("checkpoint", 3, 1), ("eval", 4, None), ("checkpoint", 5, 2)]
    assert train_run(spec, out)["status"] == "ok"
    assert json.loads((out / "run.json").read_text())["resumed_from_step"] == 4
    assert read_jsonl(out / "norms.jsonl") == read_jsonl(checkpointed_run / "norms.jsonl")
