"""NoisyTune (Wu et al., ACL 2022, Eq. 1) on a tiny random BERT, and the method/component registry."""

from __future__ import annotations

import math

import pytest
import torch

from robustft.methods import COMPONENTS, MethodConfigError, RunContext, build_method
from robustft.methods.noisytune import NoisyTune
from robustft.models import load_sequence_classifier_with_info

CONSTANT = "bert.encoder.layer.0.attention.self.query.bias"


@pytest.fixture
def loaded(tiny_model: str):
    """(model, names of parameters the checkpoint did not have)."""
    torch.manual_seed(0)
    return load_sequence_classifier_with_info(tiny_model, num_labels=2)


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _perturb(model, new, lam: float = 0.15, seed: int = 1) -> RunContext:
    context = RunContext(seed=seed, new_parameter_names=frozenset(new))
    build_method("noisytune", {"noisytune": {"noise_lambda": lam}}).prepare_model(model, context)
    return context


def test_checkpoint_lacks_only_the_classifier(loaded) -> None:
    model, new = loaded
    assert new == ["classifier.bias", "classifier.weight"]
    assert sum(1 for _ in model.named_parameters()) > 30


def test_every_change_within_half_lambda_std(loaded) -> None:
    model, new = loaded
    lam = 0.15
    with torch.no_grad():
        dict(model.named_parameters())[CONSTANT].fill_(0.25)
    before = _snapshot(model)
    context = _perturb(model, new, lam)
    after = _snapshot(model)

    perturbed = 0
    for name, w in before.items():
        if name in new or name == CONSTANT:
            continue
        w = w.double()
        change = after[name].double() - w
        bound = lam / 2 * float(w.float().std())
        # fp32 rounding of W + noise: one ulp of the result
        slack = torch.finfo(torch.float32).eps * (w.abs() + bound)
        assert bool((change.abs() <= bound + slack).all()), name
        assert bool((change != 0).any()), f"{name} was not perturbed"
        # the noise is not a shift: it takes both signs
        assert bool((change > 0).any()) and bool((change < 0).any()), name
        perturbed += 1
    assert context.log["noisytune"]["tensors_perturbed"] == perturbed


def test_constant_tensor_and_new_head_untouched(loaded) -> None:
    model, new = loaded
    with torch.no_grad():
        dict(model.named_parameters())[CONSTANT].fill_(0.25)
    before = _snapshot(model)
    context = _perturb(model, new)
    after = _snapshot(model)
    assert torch.equal(after[CONSTANT], before[CONSTANT])
    for name in new:
        assert torch.equal(after[name], before[name]), name
    log = context.log["noisytune"]
    assert log["tensors_constant_skipped"] == [CONSTANT]
    assert log["tensors_new_head_skipped"] == ["classifier.bias", "classifier.weight"]
    assert log["tensors_perturbed"] == len(before) - 1 - len(new)


def test_single_element_tensor_is_skipped() -> None:
    module = torch.nn.Linear(1, 1)  # weight and bias each have one element: no std
    before = _snapshot(module)
    context = RunContext(seed=0)
    NoisyTune(noise_lambda=0.5).prepare_model(module, context)
    for name, value in _snapshot(module).items():
        assert torch.equal(value, before[name])
        assert not math.isnan(float(value))
    assert sorted(context.log["noisytune"]["tensors_constant_skipped"]) == ["bias", "weight"]


def test_lambda_zero_is_identity(loaded) -> None:
    model, new = loaded
    before = _snapshot(model)
    _perturb(model, new, lam=0.0)
    for name, value in _snapshot(model).items():
        assert torch.equal(value, before[name]), name


def test_seeded(tiny_model: str) -> None:
    def perturbed(seed: int) -> dict[str, torch.Tensor]:
        model, new = load_sequence_classifier_with_info(tiny_model, num_labels=2)
        _perturb(model, new, seed=seed)
        return {k: v for k, v in _snapshot(model).items() if k not in new}

    first, again, other = perturbed(7), perturbed(7), perturbed(8)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert all(not torch.equal(first[k], other[k]) for k in first)


def test_noise_is_uniform_with_matrix_wise_scale(loaded) -> None:
    model, new = loaded
    lam = 0.3
    name = "bert.embeddings.word_embeddings.weight"  # ~1M elements
    before = _snapshot(model)[name].double()
    _perturb(model, new, lam=lam)
    noise = ((_snapshot(model)[name].double() - before) / (lam * float(before.float().std()))).flatten()
    assert noise.numel() > 500_000
    # U(-1/2, 1/2): mean 0 and std 1/sqrt(12); the standard error of the mean here is ~3e-4
    assert abs(float(noise.mean())) < 0.005
    assert float(noise.std()) == pytest.approx(1 / math.sqrt(12), rel=0.01)
    assert float(noise.min()) == pytest.approx(-0.5, abs=0.01)
    assert float(noise.max()) == pytest.approx(0.5, abs=0.01)
    # flat, not bell-shaped: each quarter of the range holds about a quarter of the values
    quarters = torch.histc(noise.float(), bins=4, min=-0.5, max=0.5) / noise.numel()
    assert torch.allclose(quarters, torch.full((4,), 0.25, dtype=quarters.dtype), atol=0.01)


def test_bf16_parameters_use_fp32_statistics() -> None:
    torch.manual_seed(0)
    module = torch.nn.Linear(64, 64).to(torch.bfloat16)
    before = module.weight.detach().float().clone()
    NoisyTune(noise_lambda=0.15).prepare_model(module, RunContext(seed=0))
    assert module.weight.dtype == torch.bfloat16
    change = module.weight.detach().float() - before
    bound = 0.15 / 2 * float(before.std())
    assert bool((change != 0).any())
    # bf16 rounding of the result adds at most half an ulp of |W| (eps 2^-7)
    assert bool((change.abs() <= bound + 2**-8 * before.abs() + 1e-6).all())


class Params4bit(torch.nn.Parameter):
    """Stands in for bitsandbytes' 4-bit parameter, which can keep its packed codes in a float dtype."""


@pytest.mark.parametrize("storage", ["uint8", "float_codes"])
def test_quantized_parameters_refused_by_name(storage: str) -> None:
    """4-bit QLoRA weights hold packed codes: perturbing them is refused, and nothing is touched."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))
    codes = torch.randint(0, 255, (32, 1), dtype=torch.uint8)
    model[0].weight = (
        torch.nn.Parameter(codes, requires_grad=False)
        if storage == "uint8"
        else Params4bit(codes.to(torch.bfloat16), requires_grad=False)
    )
    before = _snapshot(model)
    with pytest.raises(MethodConfigError, match=r"noisytune: the parameters 0\.weight are stored quantized"):
        NoisyTune().prepare_model(model, RunContext(seed=0))
    assert all(torch.equal(value, before[name]) for name, value in _snapshot(model).items())
    # the floating, unquantized rest can still be perturbed once the quantized tensors are excluded
    context = RunContext(seed=0)
    NoisyTune(exclude=[r"^0\.weight$"]).prepare_model(model, context)
    assert context.log["noisytune"]["tensors_excluded"] == ["0.weight"]
    assert torch.equal(model[0].weight, before["0.weight"])


def test_negative_lambda_rejected() -> None:
    with pytest.raises(MethodConfigError, match="noise_lambda"):
        build_method("noisytune", {"noisytune": {"noise_lambda": -0.1}})
    with pytest.raises(MethodConfigError, match="noise_lambda"):
        NoisyTune(noise_lambda="0.1")  # a string from a hand-written JSON is not a number


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_lambda_rejected(value: float) -> None:
    with pytest.raises(MethodConfigError, match="noise_lambda"):
        NoisyTune(noise_lambda=value)


def test_unknown_setting_lists_settings() -> None:
    with pytest.raises(MethodConfigError) as err:
        build_method("noisytune", {"noisytune": {"lambda": 0.1}})
    message = str(err.value)
    assert "'lambda'" in message and "noise_lambda" in message


def test_unknown_component_lists_known() -> None:
    with pytest.raises(MethodConfigError) as err:
        build_method("no-such-method")
    message = str(err.value)
    assert "'no-such-method'" in message
    for name in COMPONENTS:
        assert name in message
    with pytest.raises(MethodConfigError, match="'nosuch'"):
        build_method("noisytune+nosuch")


def test_finetune_has_no_components(loaded) -> None:
    method = build_method("finetune")
    assert method.components == []
    assert method.describe() == {"name": "finetune", "components": []}
    model, new = loaded
    before = _snapshot(model)
    context = RunContext(seed=0, new_parameter_names=frozenset(new))
    method.prepare_model(model, context)
    assert all(torch.equal(v, before[k]) for k, v in _snapshot(model).items())
    assert context.log == {}


def test_method_from_name_uses_paper_default() -> None:
    method = build_method("noisytune")
    assert [type(c) for c in method.components] == [NoisyTune]
    assert method.components[0].noise_lambda == 0.15
    paper_defaults = {
        "noise_lambda": 0.15,
        "distribution": "uniform",
        "scale": "matrix",
        "include": [],
        "exclude": [],
    }
    assert method.describe() == {"name": "noisytune", "components": [{"noisytune": paper_defaults}]}
    described = build_method("nt-0.1", {"noisytune": {"noise_lambda": 0.1}}).describe()
    assert described == {
        "name": "nt-0.1",
        "components": [{"noisytune": {**paper_defaults, "noise_lambda": 0.1}}],
    }
    # null settings mean "paper defaults"
    assert build_method("x", {"noisytune": None}).components[0].noise_lambda == 0.15
    assert NoisyTune.paper.startswith("Wu et al.")
