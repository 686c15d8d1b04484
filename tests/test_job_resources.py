"""What the instruction-tuning jobs ask a cluster for (robustft.job_resources): derived from the model's
parameter count, grown with each attempt, capped at the longest job a partition takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustft.job_resources import MAX_JOB_MINUTES_ENV, instruct_job_resources, model_parameters
from robustft.models import MODELS, ModelSpec


@pytest.fixture(autouse=True)
def default_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_JOB_MINUTES_ENV, raising=False)


def test_every_registered_model_has_a_parameter_count() -> None:
    for name in MODELS:
        assert model_parameters(name) > 0, name
    assert model_parameters("llama-2-13b") > model_parameters("llama-2-7b") > model_parameters("smollm2-135m")


def test_memory_and_time_grow_with_the_model_and_the_attempt() -> None:
    small, seven_b, thirteen_b = (
        instruct_job_resources("sft", model, 1, gpus=1)
        for model in ("smollm2-135m", "llama-2-7b", "llama-2-13b")
    )
    assert small.mem_mb < seven_b.mem_mb < thirteen_b.mem_mb
    assert small.runtime < seven_b.runtime < thirteen_b.runtime
    first, second, third = (
        instruct_job_resources("sft", "llama-2-7b", attempt, gpus=1, epochs=1) for attempt in (1, 2, 3)
    )
    assert (second.mem_mb, third.mem_mb) == (2 * first.mem_mb, 3 * first.mem_mb)
    assert (second.runtime, third.runtime) == (2 * first.runtime, 3 * first.runtime)
    assert first.snakemake_resources() == {
        "gpu": 1,
        "mem_mb": first.mem_mb,
        "runtime": first.runtime,
        "slurm_extra": f"--signal=TERM@{first.sigterm_lead_s}",
        "cpus_per_gpu": 8,
    }


def test_sft_time_follows_the_epochs_and_its_sigterm_the_checkpoint_size() -> None:
    one, three = (instruct_job_resources("sft", "llama-2-7b", 1, gpus=1, epochs=epochs) for epochs in (1, 3))
    assert one.runtime < three.runtime
    # A full 7B checkpoint (~80 GB) takes minutes to write; a QLoRA adapter's is small.
    qlora = instruct_job_resources("sft", "llama-2-7b", 1, gpus=1, epochs=1, adapter="qlora")
    assert three.sigterm_lead_s >= 300 and qlora.sigterm_lead_s == 120
    assert three.sigterm_lead_s % 60 == 0 and three.sigterm_lead_s < 60 * three.runtime


def test_sft_time_follows_the_methods_passes_per_example() -> None:
    plain, freelb = (instruct_job_resources("sft", "smollm2-135m", 1, gpus=1, passes=p) for p in (1, 3))
    # The training part triples; the fixed part (loading, evaluation, saving) does not.
    assert plain.runtime < freelb.runtime < 3 * plain.runtime
    with pytest.raises(ValueError, match="passes must be >= 1"):
        instruct_job_resources("sft", "smollm2-135m", 1, gpus=1, passes=0.5)


def test_generation_evaluation_and_judges() -> None:
    for job in ("generate", "lm_eval", "judge_model"):
        resources = instruct_job_resources(job, "llama-2-7b", 1, gpus=1)
        assert resources.gpu == 1 and resources.cpus_per_gpu is None
        assert 30_000 <= resources.mem_mb < instruct_job_resources("sft", "llama-2-7b", 1, gpus=1).mem_mb
        assert resources.slurm_extra == "--signal=TERM@120"
    api = instruct_job_resources("judge_api", "llama-2-7b", 1, gpus=1)
    assert api.gpu == 0 and api.mem_mb == 4000


def test_a_cpu_job_gets_more_time_and_sft_on_a_cpu_more_memory() -> None:
    gpu, cpu = (instruct_job_resources("sft", "smollm2-135m", 1, gpus=gpus) for gpus in (1, 0))
    assert cpu.gpu == 0 and cpu.runtime > gpu.runtime and cpu.mem_mb > gpu.mem_mb


def test_time_is_capped_at_the_longest_job_a_partition_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    nine_epochs = instruct_job_resources("sft", "llama-2-13b", 3, gpus=1, epochs=9)
    assert nine_epochs.runtime == 24 * 60
    monkeypatch.setenv(MAX_JOB_MINUTES_ENV, "2880")
    assert instruct_job_resources("sft", "llama-2-13b", 3, gpus=1, epochs=9).runtime == 2880
    monkeypatch.setenv(MAX_JOB_MINUTES_ENV, "two days")
    with pytest.raises(ValueError, match=f"{MAX_JOB_MINUTES_ENV}='two days'"):
        instruct_job_resources("sft", "llama-2-7b", 1, gpus=1)


def test_a_model_without_a_parameter_count_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODELS, "unsized", ModelSpec(name="unsized", source="x/unsized", kind="causal-lm"))
    with pytest.raises(ValueError, match=r"model 'unsized' has no parameter count.*parameters="):
        instruct_job_resources("generate", "unsized", 1, gpus=1)
    with pytest.raises(ValueError, match="job kind 'train'"):
        instruct_job_resources("train", "llama-2-7b", 1, gpus=1)


def test_a_saved_model_directory_is_sized_by_its_weights(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 2_000_000)  # 1M bf16 parameters
    assert model_parameters(str(tmp_path)) == 1_000_000
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no \*\.safetensors"):
        model_parameters(str(empty))


def test_registering_a_model_with_its_size_sizes_its_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ModelSpec(name="sized", source="x/sized", kind="causal-lm", parameters=70_000_000_000)
    monkeypatch.setitem(MODELS, "sized", spec)
    assert instruct_job_resources("lm_eval", "sized", 1, gpus=1).mem_mb > 250_000
