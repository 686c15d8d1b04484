"""`train.precision`: what `auto` resolves to per device, CPU kernels and method, and explicit values."""

from __future__ import annotations

import logging

import pytest
import torch

from robustft.methods import COMPONENTS, build_method
from robustft.train import precision as precision_module
from robustft.train.precision import PrecisionChoice, cpu_has_fast_bf16, resolve_precision


@pytest.fixture
def fast_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU with native bf16 kernels (AVX512-BF16/AMX), whatever this machine has."""
    monkeypatch.setattr(precision_module, "cpu_has_fast_bf16", lambda: True)
    monkeypatch.setattr(precision_module, "cpu_capability", lambda: "AVX512")


@pytest.fixture
def slow_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU that emulates bf16 (AVX2 only)."""
    monkeypatch.setattr(precision_module, "cpu_has_fast_bf16", lambda: False)
    monkeypatch.setattr(precision_module, "cpu_capability", lambda: "AVX2")


def components(method: str, settings: dict | None = None) -> list:
    return build_method(method, settings).components


def test_auto_trains_in_bf16_on_a_cpu_with_fast_bf16_kernels(fast_cpu) -> None:
    choice = resolve_precision("auto", components("noisytune"), "cpu")
    assert choice == PrecisionChoice(
        "auto", "bf16", "auto: bf16 autocast, this CPU has fast bf16 kernels (AVX512)", "cpu"
    )
    assert choice.use_cpu  # transformers refuses bf16 without a GPU unless told


def test_auto_trains_in_fp32_on_a_cpu_that_emulates_bf16(slow_cpu) -> None:
    choice = resolve_precision("auto", components("finetune"), "cpu")
    assert (choice.used, choice.why) == ("fp32", "auto: fp32, this CPU has no fast bf16 kernels (AVX2)")
    assert not choice.use_cpu
    assert choice.record() == {"requested": "auto", "used": "fp32", "why": choice.why, "device": "cpu"}


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_auto_keeps_fp32_for_a_component_whose_numbers_need_it(
    fast_cpu, monkeypatch: pytest.MonkeyPatch, device: str
) -> None:
    monkeypatch.setattr(precision_module, "cuda_has_bf16", lambda: True)
    choice = resolve_precision("auto", components("noisytune+r3f"), device)
    assert choice.used == "fp32"
    assert choice.why.startswith("auto: fp32, r3f needs fp32: its noise (noise_eps 1e-05)")


def test_smart_needs_fp32_only_when_its_perturbation_runs_under_autocast(fast_cpu) -> None:
    # Its default computes R_s in fp32 itself, so the rest of the step may run in bf16.
    assert resolve_precision("auto", components("smart"), "cpu").used == "bf16"
    under_autocast = components("smart", {"smart": {"adversarial_precision": "autocast"}})
    choice = resolve_precision("auto", under_autocast, "cpu")
    assert choice.used == "fp32" and "smart needs fp32: adversarial_precision autocast" in choice.why


def test_only_r3f_needs_fp32_at_its_default_settings() -> None:
    needing = {name for name, cls in COMPONENTS.items() if cls().full_precision_reason() is not None}
    assert needing == {"r3f"}


@pytest.mark.parametrize(("supported", "used"), [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda_follows_the_gpus_bf16_support(
    monkeypatch: pytest.MonkeyPatch, supported: bool, used: str
) -> None:
    monkeypatch.setattr(precision_module, "cuda_has_bf16", lambda: supported)
    choice = resolve_precision("auto", components("neftune"), "cuda")
    assert (choice.used, choice.use_cpu) == (used, False)
    assert "GPU" in choice.why


def test_auto_elsewhere_is_fp32(fast_cpu) -> None:
    assert resolve_precision("auto", [], "mps").used == "fp32"


@pytest.mark.parametrize("requested", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_an_explicit_precision_is_used_as_given(fast_cpu, requested: str, device: str) -> None:
    choice = resolve_precision(requested, components("r3f"), device)
    assert (choice.requested, choice.used, choice.why) == (requested, requested, "set explicitly")
    assert choice.use_cpu == (device == "cpu" and requested != "fp32")


def test_explicit_bf16_on_a_cpu_that_emulates_it_runs_and_warns_once(
    slow_cpu, caplog: pytest.LogCaptureFixture
) -> None:
    precision_module._warn_slow_cpu_bf16.cache_clear()
    with caplog.at_level(logging.WARNING, logger=precision_module.__name__):
        first = resolve_precision("bf16", [], "cpu")
        second = resolve_precision("bf16", [], "cpu")
    assert first.used == second.used == "bf16" and first.use_cpu
    assert "slower than fp32 here: this CPU has no fast bf16 kernels (AVX2)" in first.why
    warnings = [r for r in caplog.records if "slower than in fp32" in r.getMessage()]
    assert len(warnings) == 1 and "AVX2" in warnings[0].getMessage()


def test_an_unknown_precision_is_named() -> None:
    with pytest.raises(ValueError, match="'bf17'"):
        resolve_precision("bf17", [], "cpu")


def test_the_cpu_probe_answers_no_when_the_build_cannot_tell(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(cpu_has_fast_bf16(), bool)  # the real probe, whatever this CPU has

    def broken() -> bool:
        raise RuntimeError("no oneDNN in this build")

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", broken)
    assert cpu_has_fast_bf16() is False
