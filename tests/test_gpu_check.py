"""robustft.gpu_check: the CPU-reduced mode end to end (what CI runs), the FLOPs formula, the peak table."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import pytest

from robustft import gpu_check
from robustft.cli import main
from robustft.gpu_check import (
    CPU_PLAN,
    Architecture,
    DevicePeak,
    Measurement,
    PathResult,
    device_peak,
    format_check,
    run_check,
    run_path,
    with_measurement,
)
from robustft.models import MODELS


@pytest.fixture(scope="module")
def cpu_report() -> dict[str, Any]:
    return run_check(CPU_PLAN)  # the CPU plan also on a machine with a GPU: CI's reduced mode


def test_the_cpu_reduced_mode_trains_every_path_it_can_and_says_why_not_the_others(cpu_report):
    assert cpu_report["mode"] == "cpu-reduced" and cpu_report["device"].startswith("cpu")
    assert cpu_report["passed"], [(p["name"], p["error"]) for p in cpu_report["paths"] if p["error"]]
    paths = {path["name"]: path for path in cpu_report["paths"]}
    trained = [f"{m} {p}" for m in ("minilm-l6", "bert-base") for p in ("fp32", "bf16")]
    trained += ["smollm2-135m sft fp32", "smollm2-135m sft bf16"]
    for name in trained:
        path = paths[name]
        assert path["status"] == "pass" and path["examples_per_s"] > 0 and path["mfu"] == "unknown"
        assert path["attention"] == "sdpa" and path["peak_memory_gb"] is None  # not measured on the CPU
        tokens = path["batch_size"] * path["sequence_length"]
        per_token = Architecture(**path["architecture"]).training_flops_per_token(path["sequence_length"])
        assert path["flops_per_step"] == pytest.approx(per_token * tokens)
        assert path["tokens_per_s"] == pytest.approx(path["examples_per_s"] * path["sequence_length"])
    assert paths["bert-base fp32"]["architecture"]["layers"] == 2  # reduced, and so noted
    assert "cut to 2 of 12 layers" in paths["bert-base fp32"]["note"]
    assert paths["minilm-l6 bf16"]["architecture"]["layers"] == 6  # the embedded model, whole
    assert paths["smollm2-135m qlora bf16"]["status"] == "skipped"
    assert paths["smollm2-135m qlora bf16"]["note"].startswith("skipped: ")
    assert paths["smollm2-135m fsdp bf16"]["note"].startswith("skipped: no GPU")
    assert "cpu-reduced" in format_check(cpu_report) and "not GPU measurements" in format_check(cpu_report)


def test_the_report_feeds_robustft_estimate(cpu_report):
    from robustft.estimate import measured_throughputs

    rows = measured_throughputs(json.loads(json.dumps(cpu_report)), "check.json")
    assert {(row.kind, row.precision) for row in rows} == {
        ("encoder", "fp32"),
        ("encoder", "bf16"),
        ("causal-lm", "fp32"),
        ("causal-lm", "bf16"),
    }
    assert all(row.measured and "cpu-reduced" in row.source for row in rows)


def test_the_command_writes_the_report_and_prints_the_table(cpu_report, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "run_check", lambda: cpu_report)
    out = tmp_path / "gpu-check.json"
    assert main(["gpu-check", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["paths"] == json.loads(json.dumps(cpu_report["paths"]))
    printed = capsys.readouterr().out
    assert "minilm-l6 bf16" in printed and "skipped: " in printed


def test_a_failed_path_is_reported_with_its_error():
    def body() -> Measurement:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    result = run_path(PathResult("bert-base fp16", "classification", "bert-base", "fp16"), body, None)
    assert result.status == "fail"
    assert result.error == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"


def test_mfu_is_achieved_flops_over_the_peak_of_every_gpu_used():
    architecture = Architecture(layers=2, hidden_size=4, intermediate_size=8, kv_size=4)
    # N = 2 x (2·4·4 + 2·4·4 + 2·4·8) = 256; per token at S = 3: 6·256 + 12·2·4·3 = 1,824 FLOPs.
    assert architecture.matmul_parameters == 256
    assert architecture.training_flops_per_token(3) == 1824
    assert architecture.training_flops_per_token(3, weight_gradients=False) == 4 * 256 + 288
    path = PathResult("p", "fsdp", "m", "bf16", gpus=2, batch_size=5, sequence_length=3, steps=10)
    peak = DevicePeak("X", "X", 1e-9, "test")  # 1,000 FLOP/s
    measured = with_measurement(path, Measurement(4.0, architecture, "sdpa", "AdamW"), peak)
    assert measured.flops_per_step == 1824 * 2 * 5 * 3
    assert measured.examples_per_s == 2 * 5 * 10 / 4.0
    assert measured.mfu == pytest.approx(1824 * 30 * 10 / 4.0 / (1000 * 2))
    unknown = with_measurement(path, Measurement(4.0, architecture, "sdpa", "AdamW"), None)
    assert unknown.mfu == "unknown"


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989),
        ("NVIDIA H100 PCIe", 756),
        ("NVIDIA H100 NVL", 835),
        ("NVIDIA H200", 989),
        ("NVIDIA A100-SXM4-80GB", 312),
        ("NVIDIA A100-PCIE-40GB", 312),
        ("NVIDIA L40S", 362),
        ("NVIDIA L4", 121),
        ("NVIDIA A10", 125),
        ("Tesla T4", None),
    ],
)
def test_peaks_are_found_by_device_name(name, peak):
    found = device_peak(name)
    assert (found.tflops if found else None) == peak
    if found:
        assert "datasheet" in found.source


def test_the_architecture_counts_the_linear_weights_of_the_models_the_check_builds():
    import torch
    from transformers import AutoModelForCausalLM, BertConfig, BertForSequenceClassification, LlamaConfig

    with torch.device("meta"):
        bert = BertForSequenceClassification(BertConfig(num_labels=2))
        smollm2 = AutoModelForCausalLM.from_config(LlamaConfig(**gpu_check.SMOLLM2_135M))

    def linear_weights(model, skip=()) -> int:
        return sum(
            module.weight.numel()
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and not name.startswith(skip)
        )

    per_sequence = ("bert.pooler", "classifier")
    assert Architecture.from_config(bert.config, causal_lm=False).matmul_parameters == linear_weights(
        bert, per_sequence
    )
    assert Architecture.from_config(smollm2.config, causal_lm=True).matmul_parameters == linear_weights(
        smollm2
    )
    # The check's SmolLM2 shape is the registry's model (tied embeddings counted once).
    assert sum(p.numel() for p in smollm2.parameters()) == MODELS["smollm2-135m"].parameters


def test_the_fsdp_worker_trains_on_one_cpu_process(tmp_path):
    from robustft.launch import free_port

    out = tmp_path / "rank0.json"
    gpu_check.fsdp_worker(0, 1, free_port(), "gloo", str(out), asdict(CPU_PLAN))
    found = json.loads(out.read_text())
    assert found["seconds"] > 0 and found["architecture"]["layers"] == CPU_PLAN.reduced_layers
    assert "FSDP2, world size 1" in found["note"]
