"""Mixout (Lee, Cho, Kang, ICLR 2020; bloodwass/mixout mixout.py L58-69, mixlinear.py) on tiny layers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from robustft.methods import MethodConfigError, RunContext, build_method
from robustft.methods.mixout import MixLinear, Mixout, mix_weight

IN, OUT = 6, 4


def _linear(seed: int = 0, bias: bool = True) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(IN, OUT, bias=bias)


def _mixed(p: float, gradient: str = "exact", bias: bool = False) -> MixLinear:
    """A MixLinear whose weight has moved away from its target everywhere (so masks are visible)."""
    layer = MixLinear(_linear(bias=bias), p, gradient)
    with torch.no_grad():
        layer.weight.add_(1.0 + torch.rand_like(layer.weight))
    return layer


def _mask_from_weight(mixed: torch.Tensor, layer: MixLinear) -> torch.Tensor:
    """Which columns of a forward's W_mix came from W (1) or are the target (0)."""
    is_target = torch.isclose(mixed, layer.target, rtol=0, atol=1e-6)
    assert bool((is_target.all(0) | (~is_target).all(0)).all()), "the mask is per input column"
    return (~is_target[0]).float()


def _forward_weight(layer: MixLinear) -> tuple[torch.Tensor, torch.Tensor]:
    """(W_mix of one training forward, the output it came from): with x = I and no bias, y = W_mixᵀ."""
    y = layer(torch.eye(IN))
    return y.detach().T, y


# ------------------------------------------------------------------------------------------ forward


@pytest.mark.parametrize("train", [True, False])
def test_p_zero_is_the_identity(train: bool) -> None:
    linear = _linear()
    layer = MixLinear(_linear(), 0.0).train(train)
    x = torch.randn(5, 3, IN)
    assert torch.equal(layer(x), linear(x))


def test_eval_uses_the_weight_as_is() -> None:
    layer = _mixed(0.9, bias=True).eval()
    x = torch.randn(5, IN)
    assert torch.equal(layer(x), nn.functional.linear(x, layer.weight, layer.bias))


def test_training_mixes_whole_columns_and_keeps_the_bias() -> None:
    torch.manual_seed(1)
    p = 0.5
    layer = _mixed(p, bias=True)
    x = torch.randn(3, IN)
    for _ in range(20):
        y = layer(torch.eye(IN))
        mixed = (y - layer.bias).detach().T
        m = _mask_from_weight(mixed, layer)
        expected = ((1 - m) * layer.target + m * layer.weight - p * layer.target) / (1 - p)
        assert torch.allclose(mixed, expected.detach(), atol=1e-6)
    # one mask per forward, shared by the whole batch: y = x·W_mixᵀ + b with a single W_mix
    batch = torch.cat([torch.eye(IN), x])
    y = layer(batch).detach()
    mixed = (y[:IN] - layer.bias).detach().T
    assert torch.allclose(y[IN:], nn.functional.linear(x, mixed, layer.bias).detach(), atol=1e-5)


def test_expected_mixed_weight_is_the_weight() -> None:
    torch.manual_seed(2)
    p, draws = 0.9, 3000
    layer = _mixed(p)
    total, kept = torch.zeros(OUT, IN), 0.0
    with torch.no_grad():
        for _ in range(draws):
            mixed = layer(torch.eye(IN)).T
            total += mixed
            kept += float(_mask_from_weight(mixed, layer).mean())
    # per entry std of the mean: |W - u|·√(p(1-p)/draws)/(1-p) ≈ 0.055·|W - u|
    spread = (layer.weight - layer.target).abs().detach()
    assert torch.all((total / draws - layer.weight.detach()).abs() <= 0.25 * spread)
    assert kept / draws == pytest.approx(1 - p, abs=0.01)  # Bernoulli(1 - p) keeps the weight


# ------------------------------------------------------------------------------------------ gradients


@pytest.mark.parametrize("p", [0.3, 0.9])
def test_exact_and_reference_gradients(p: float) -> None:
    torch.manual_seed(3)
    upstream = torch.randn(IN, OUT)  # dL/dy; with x = I, dL/dW_mix = upstreamᵀ
    grads = {}
    for gradient in ("exact", "reference"):
        layer = _mixed(p, gradient)
        torch.manual_seed(4)  # the same masks in both modes
        for _ in range(100):  # a real mix (some columns kept, some not), so the test can tell W from u
            mixed, y = _forward_weight(layer)
            m = _mask_from_weight(mixed, layer)
            if 0 < m.sum() < IN:
                break
        assert 0 < m.sum() < IN
        (y * upstream).sum().backward()
        grads[gradient] = layer.weight.grad
        if gradient == "exact":
            assert torch.allclose(layer.weight.grad, upstream.T * m / (1 - p), atol=1e-6)
        else:  # bloodwass/mixout's backward: grad_output * noise, without 1/(1 - p)
            assert torch.allclose(layer.weight.grad, upstream.T * m, atol=1e-6)
    assert torch.allclose(grads["reference"], (1 - p) * grads["exact"], atol=1e-6)


def test_default_gradient_is_the_authors_backward() -> None:
    """By default dL/dW = dL/dW_mix ⊙ m (bloodwass/mixout's backward, with which the paper's numbers were
    made), not the true gradient dL/dW_mix ⊙ m/(1 − p): 10× smaller at p = 0.9."""
    torch.manual_seed(6)
    model = nn.Sequential(_linear())
    Mixout(layers="all").prepare_model(model, RunContext(seed=0))
    layer = model[0]
    assert isinstance(layer, MixLinear) and layer.gradient == "reference" and layer.p == 0.9
    with torch.no_grad():
        layer.weight.add_(1.0 + torch.rand_like(layer.weight))
    upstream = torch.randn(IN, OUT)
    for _ in range(200):  # p = 0.9 keeps few columns: draw until some are kept and some are not
        layer.weight.grad = None
        mixed, y = _forward_weight(layer)
        m = _mask_from_weight(mixed - layer.bias.detach()[:, None], layer)
        if 0 < m.sum() < IN:
            break
    assert 0 < m.sum() < IN
    (y * upstream).sum().backward()
    assert torch.allclose(layer.weight.grad, upstream.T * m, atol=1e-6)  # dL/dW_mix = upstreamᵀ
    assert not torch.allclose(layer.weight.grad, upstream.T * m / (1 - 0.9), atol=1e-3)


def test_modes_share_the_forward() -> None:
    weight, target = torch.randn(OUT, IN), torch.randn(OUT, IN)
    mask = torch.tensor([1.0, 0, 1, 1, 0, 1])
    exact = mix_weight(weight, target, mask, 0.7, "exact")
    assert torch.equal(mix_weight(weight, target, mask, 0.7, "reference"), exact)


def test_gradcheck_float64() -> None:
    torch.manual_seed(5)
    weight = torch.randn(OUT, IN, dtype=torch.float64, requires_grad=True)
    target = torch.randn(OUT, IN, dtype=torch.float64)
    x = torch.randn(3, IN, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([1.0, 0, 1, 1, 0, 1], dtype=torch.float64)

    def forward(gradient: str):
        return lambda w, x: nn.functional.linear(x, mix_weight(w, target, mask, 0.8, gradient))

    assert torch.autograd.gradcheck(forward("exact"), (weight, x))
    # the public code's backward is not the gradient of its forward
    assert not torch.autograd.gradcheck(forward("reference"), (weight, x), raise_exception=False)


# ------------------------------------------------------------------------------------------ the target


def test_target_is_a_non_persistent_buffer_that_follows_the_module() -> None:
    linear = _linear()
    layer = MixLinear(linear, 0.9)
    assert layer.weight is linear.weight and layer.bias is linear.bias  # same Parameters, same names
    assert [n for n, _ in layer.named_buffers()] == ["target"]
    assert set(layer.state_dict()) == {"weight", "bias"}
    assert torch.equal(layer.target, linear.weight.detach())
    with torch.no_grad():  # a copy, not a view: training W leaves u alone
        layer.weight.add_(1.0)
    assert not torch.equal(layer.target, layer.weight.detach())
    layer.to(torch.float64)
    assert layer.target.dtype == layer.weight.dtype == torch.float64
    assert layer(torch.randn(2, IN, dtype=torch.float64)).dtype == torch.float64


class Params4bit(nn.Parameter):
    """Stands in for bitsandbytes' 4-bit parameter, which can keep its packed codes in a float dtype."""


@pytest.mark.parametrize("dtype", [torch.uint8, torch.bfloat16])
def test_quantized_weights_rejected(dtype: torch.dtype) -> None:
    model = nn.Sequential(nn.Linear(IN, OUT))
    codes = torch.zeros(OUT * IN // 2, 1, dtype=dtype)
    model[0].weight = (nn.Parameter if dtype == torch.uint8 else Params4bit)(codes, requires_grad=False)
    with pytest.raises(MethodConfigError, match="quantized"):
        Mixout(layers="all").prepare_model(model, RunContext(seed=0))


def test_model_without_linear_layers_rejected() -> None:
    with pytest.raises(MethodConfigError, match="no Linear layer"):
        Mixout().prepare_model(nn.Sequential(nn.Tanh()), RunContext(seed=0))


# ------------------------------------------------------------------------------------------ tiny-bert


def _tiny_bert(tiny_model: str):
    from robustft.models import load_sequence_classifier_with_info

    torch.manual_seed(0)
    model, new = load_sequence_classifier_with_info(tiny_model, num_labels=2)
    return model, RunContext(seed=1, new_parameter_names=frozenset(new))


def _replaced(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, MixLinear)]


def _layer_names(*kinds: str) -> list[str]:
    names = []
    for i in range(2):
        prefix = f"bert.encoder.layer.{i}."
        for kind in kinds:
            names.append(prefix + kind)
    return names


ATTENTION = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense")
PAPER = [*_layer_names(*ATTENTION, "output.dense"), "bert.pooler.dense"]  # no intermediate.dense
ALL = [*_layer_names(*ATTENTION, "intermediate.dense", "output.dense"), "bert.pooler.dense"]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, PAPER),
        ({"layers": "all"}, ALL),
        ({"layers": "all", "include_head": True}, [*ALL, "classifier"]),  # the HF example
    ],
)
def test_replaced_layers_on_tiny_bert(tiny_model: str, settings: dict, expected: list[str]) -> None:
    model, context = _tiny_bert(tiny_model)
    keys = set(model.state_dict())
    build_method("mixout", {"mixout": settings}).prepare_model(model, context)
    assert sorted(_replaced(model)) == sorted(expected)
    assert sorted(context.log["mixout"]["layers_mixed"]) == sorted(expected)
    skipped = [] if settings.get("layers") == "all" else _layer_names("intermediate.dense")
    assert context.log["mixout"]["layers_skipped_ffn_input"] == skipped
    assert set(model.state_dict()) == keys  # checkpoints keep the plain model's keys
    if not settings.get("include_head"):
        assert type(model.classifier) is nn.Linear


def test_dropout_disabled(tiny_model: str) -> None:
    model, context = _tiny_bert(tiny_model)
    dropouts = [n for n, m in model.named_modules() if isinstance(m, nn.Dropout)]
    assert dropouts and all(model.get_submodule(n).p > 0 for n in dropouts)
    build_method("mixout").prepare_model(model, context)
    assert all(model.get_submodule(n).p == 0 for n in dropouts)
    assert sorted(context.log["mixout"]["dropout_disabled"]) == sorted(dropouts)
    # with p = 0 mixout is the identity, so a training forward is now deterministic
    model, context = _tiny_bert(tiny_model)
    build_method("mixout", {"mixout": {"p": 0.0}}).prepare_model(model, context)
    ids = torch.randint(5, 100, (2, 7))
    model.train()
    assert torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)


def test_dropout_kept_on_request(tiny_model: str) -> None:
    model, context = _tiny_bert(tiny_model)
    build_method("mixout", {"mixout": {"disable_dropout": False}}).prepare_model(model, context)
    assert all(m.p > 0 for m in model.modules() if isinstance(m, nn.Dropout))
    assert context.log["mixout"]["dropout_disabled"] == []


def test_float_dropout_attributes_disabled() -> None:
    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(IN, IN)
            self.attention_dropout = 0.1

    model = Attention()
    Mixout(layers="all").prepare_model(model, RunContext(seed=0))
    assert model.attention_dropout == 0.0


def _head_dropout(model: nn.Module) -> float:
    """BERT's dropout on the pooled output, the one dropout of the new head."""
    return model.dropout.p


def _backbone_dropouts(model: nn.Module) -> list[float]:
    return [m.p for m in model.bert.modules() if isinstance(m, nn.Dropout)]


def test_head_gets_no_regularisation_by_default(tiny_model: str) -> None:
    """The paper's main experiments: the new output layer has neither dropout nor mixout."""
    model, context = _tiny_bert(tiny_model)
    assert _head_dropout(model) > 0
    build_method("mixout").prepare_model(model, context)
    assert type(model.classifier) is nn.Linear
    assert _head_dropout(model) == 0 and set(_backbone_dropouts(model)) == {0}
    log = context.log["mixout"]
    assert log["head_regularisation"] == "none" and log["head_modules"] == ["classifier", "dropout"]


def test_head_dropout_keeps_only_the_heads_dropout(tiny_model: str) -> None:
    model, context = _tiny_bert(tiny_model)
    before = _head_dropout(model)
    build_method("mixout", {"mixout": {"head_dropout": True}}).prepare_model(model, context)
    assert _head_dropout(model) == before > 0  # the ablation's dropout(p) arm
    assert set(_backbone_dropouts(model)) == {0} and type(model.classifier) is nn.Linear
    assert "dropout" not in context.log["mixout"]["dropout_disabled"]
    assert context.log["mixout"]["head_regularisation"] == "dropout"


def test_include_head_mixes_the_head_toward_its_initialisation(tiny_model: str) -> None:
    model, context = _tiny_bert(tiny_model)
    initial = model.classifier.weight.detach().clone()
    build_method("mixout", {"mixout": {"include_head": True}}).prepare_model(model, context)
    assert isinstance(model.classifier, MixLinear) and torch.equal(model.classifier.target, initial)
    assert _head_dropout(model) == 0  # the ablation's mixout(w_0, p) arm replaces the head's dropout
    assert context.log["mixout"]["head_regularisation"] == "mixout"


def test_head_dropout_and_include_head_are_alternatives() -> None:
    with pytest.raises(MethodConfigError, match=r"mixout\.head_dropout and mixout\.include_head"):
        build_method("mixout", {"mixout": {"head_dropout": True, "include_head": True}})


@pytest.mark.parametrize(
    ("method", "target_is_perturbed"), [("noisytune+mixout", True), ("mixout+noisytune", False)]
)
def test_composition_order_decides_the_target(
    tiny_model: str, method: str, target_is_perturbed: bool
) -> None:
    model, context = _tiny_bert(tiny_model)
    name = "bert.encoder.layer.0.attention.self.query"
    original = model.get_submodule(name).weight.detach().clone()
    build_method(method).prepare_model(model, context)
    layer = model.get_submodule(name)
    assert isinstance(layer, MixLinear)
    assert not torch.equal(layer.weight, original)  # NoisyTune perturbed W either way
    expected = layer.weight.detach() if target_is_perturbed else original
    assert torch.equal(layer.target, expected)
    assert context.log["mixout"]["target_after_components"] == (["noisytune"] if target_is_perturbed else [])


# ------------------------------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"p": -0.1}, "p"),
        ({"p": 1.0}, "p"),
        ({"p": math.nan}, "p"),
        ({"p": True}, "p"),
        ({"p": "0.9"}, "p"),
        ({"layers": "dropout"}, "layers"),
        ({"gradient": "paper"}, "gradient"),
        ({"include_head": 1}, "include_head"),
        ({"disable_dropout": "yes"}, "disable_dropout"),
        ({"head_dropout": 0}, "head_dropout"),
    ],
)
def test_invalid_settings_name_the_setting(settings: dict, named: str) -> None:
    with pytest.raises(MethodConfigError, match=f"mixout\\.{named}\\b"):
        build_method("mixout", {"mixout": settings})


def test_defaults() -> None:
    component = build_method("mixout").components[0]
    assert component.settings() == {
        "p": 0.9,
        "layers": "paper",
        "include_head": False,
        "gradient": "reference",
        "disable_dropout": True,
        "head_dropout": False,
    }


# ------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("method", ["mixout", "noisytune+mixout"])
def test_train_run(tiny_model: str, glue_dir: Path, tmp_path: Path, method: str) -> None:
    from robustft.train.glue import train_run
    from tests.train.test_glue import make_spec

    data = tmp_path / "data" / "glue" / "RTE"
    data.mkdir(parents=True)
    for split in ("train", "dev"):
        lines = (glue_dir / "RTE" / f"{split}.tsv").read_text(encoding="utf-8").splitlines(keepends=True)[:25]
        (data / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
    out = tmp_path / "run"
    result = train_run(make_spec(tiny_model, tmp_path / "data", method=method, learning_rate=1e-3), out)
    assert result["status"] == "ok"
    assert all(math.isfinite(v) for v in result["metrics"].values())
    log = json.loads((out / "run.json").read_text())["method_log"]["mixout"]
    assert len(log["layers_mixed"]) == 11 and log["p"] == 0.9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_target_and_mask_live_on_the_device() -> None:
    layer = _mixed(0.9, bias=True).to("cuda", torch.bfloat16)
    assert layer.target.device.type == "cuda" and layer.target.dtype == torch.bfloat16
    y = layer(torch.randn(4, IN, device="cuda", dtype=torch.bfloat16))
    y.float().sum().backward()
    assert y.dtype == torch.bfloat16 and layer.weight.grad.device.type == "cuda"
