"""What each instruction-tuning job asks a cluster for: GPUs, host memory, wall time, and how long before
its time limit SLURM sends SIGTERM. One place, derived from the model's parameter count (the registry,
robustft.models) and scaled by Snakemake's attempt number (1, then 2, 3 with `retries: 2`), so a job that
ran out of memory or time is resubmitted with more of both.

The estimates are deliberately generous (about twice docs/instruction-tuning.md's for one H100), because a job
that asks for too little is killed after hours and one that asks for too much only waits longer in the
queue:

- `sft`: host memory holds the fp32 weights while they load and while the final model is saved
  (4 bytes per parameter, 6 with headroom), or, on a CPU, the whole training state (weights, gradients
  and Adam's two moments: 16 bytes, 20 with activations). Time grows with parameters x epochs x the
  method's forward and backward passes per example (FreeLB's K ascent steps are K passes; fine-tuning and
  NEFTune are 1): ~25 minutes per pass-epoch per billion parameters on a GPU (LLaMA-2-7B, 3 epochs:
  ~9 h). SIGTERM comes early enough to finish the step and write the checkpoint (fp32 weights and Adam
  moments, 12 bytes per parameter, at an assumed 250 MB/s to shared storage), on which the run stops and
  the retry resumes.
- `generate`, `lm_eval`, a `local_hf` judge: the weights in memory (4 bytes per parameter with headroom);
  time grows with parameters (805 prompts x up to 1,024 new tokens; MMLU's 56k 5-shot continuations).
  Generations are appended per batch and judgements per call, so a retry continues where a killed job
  stopped; lm-eval starts over.
- an API judge (kind `openai`): no GPU, little memory; it runs where Snakemake runs (the compute nodes have
  no network), as a local rule.

No job asks for more than `max_job_minutes()` (24 h, or ROBUSTFT_MAX_JOB_MINUTES): past a partition's
time limit sbatch refuses a job outright, and the SIGTERM checkpoint lets a longer SFT run continue in the
next attempt. On a CPU (`gpus_per_run: 0`) a job gets 4x the time.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from robustft.models import MODELS, parameter_count

JOB_KINDS = ("sft", "generate", "lm_eval", "judge_model", "judge_api")

BASE_MEMORY_GB = 16  # Python, torch, CUDA context, tokenizer, datasets
BASE_MINUTES = 30  # loading the model and data, held-out evaluations, saving
SIGTERM_BASE_S = 120  # SLURM's grace before SIGKILL is short; one training step and the bookkeeping
CHECKPOINT_WRITE_BYTES_PER_S = 250e6  # shared storage, conservatively
CPU_TIME_FACTOR = 4
DEFAULT_MAX_JOB_MINUTES = 24 * 60
MAX_JOB_MINUTES_ENV = "ROBUSTFT_MAX_JOB_MINUTES"


@dataclass(frozen=True)
class JobResources:
    """One attempt's request: `gpu` GPUs, `mem_mb` MB of host memory, `runtime` minutes, SIGTERM
    `sigterm_lead_s` seconds before the time limit, `cpus_per_gpu` CPUs per GPU (None: the job's threads)."""

    gpu: int
    mem_mb: int
    runtime: int
    sigterm_lead_s: int
    cpus_per_gpu: int | None = None

    @property
    def slurm_extra(self) -> str:
        return f"--signal=TERM@{self.sigterm_lead_s}"

    def snakemake_resources(self) -> dict[str, int | str]:
        """As a rule's `resources:` (names the SLURM executor plugin reads)."""
        resources: dict[str, int | str] = {
            "gpu": self.gpu,
            "mem_mb": self.mem_mb,
            "runtime": self.runtime,
            "slurm_extra": self.slurm_extra,
        }
        if self.cpus_per_gpu is not None:
            resources["cpus_per_gpu"] = self.cpus_per_gpu
        return resources


def model_parameters(model: str, cache_dir: str | None = None) -> int:
    """The registry's parameter count of `model`; for a saved model directory (a `local_hf` judge may name
    one), its safetensors' size at 2 bytes per parameter (fp32 files count double: on the safe side); for
    a Hub id, the count of the model its config.json (in `cache_dir`) describes."""
    if model not in MODELS and Path(model).is_dir():
        size = sum(path.stat().st_size for path in Path(model).glob("*.safetensors"))
        if size == 0:
            raise ValueError(f"model directory {model!r} has no *.safetensors files to size its jobs by")
        return size // 2
    parameters = parameter_count(model, cache_dir)
    if not parameters:
        raise ValueError(
            f"model {model!r} has no parameter count in the registry, so its cluster jobs cannot be sized: "
            "add parameters=<number of parameters> to its ModelSpec in src/robustft/models.py"
        )
    return parameters


def max_job_minutes() -> int:
    """The longest time limit a job asks for: ROBUSTFT_MAX_JOB_MINUTES, else 24 hours."""
    value = os.environ.get(MAX_JOB_MINUTES_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_JOB_MINUTES
    try:
        minutes = int(value)
    except ValueError:
        minutes = 0
    if minutes < 10:
        raise ValueError(
            f"{MAX_JOB_MINUTES_ENV}={value!r}: give the partition's time limit in whole minutes, >= 10"
        )
    return minutes


def _megabytes(gigabytes: float) -> int:
    return math.ceil(gigabytes) * 1000


def instruct_job_resources(
    job: str,
    model: str,
    attempt: int,
    *,
    gpus: int,
    epochs: float = 3.0,
    adapter: str = "full",
    passes: float = 1.0,
    cache_dir: str | None = None,
) -> JobResources:
    """What attempt `attempt` of a `job` (one of JOB_KINDS) on `model` asks for.

    `gpus`: the GPUs the job gets (the config's gpus_per_run for sft, at most 1 for the others; 0 runs on
    the CPU). `epochs` and `adapter` (full, lora, qlora) are the SFT recipe's, `passes` its method's forward
    and backward passes per example (methods.settings.method_passes). `cache_dir`: where a Hub
    model's config.json is read (the workflow config's cache_dir).
    """
    if job not in JOB_KINDS:
        raise ValueError(f"job kind {job!r} is not one of {list(JOB_KINDS)}")
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if passes < 1:
        raise ValueError(f"passes must be >= 1 (a forward and backward per example), got {passes}")
    if job == "judge_api":  # HTTP requests from where Snakemake runs
        return JobResources(
            gpu=0, mem_mb=4000, runtime=min(120 * attempt, max_job_minutes()), sigterm_lead_s=60
        )
    billions = model_parameters(model, cache_dir) / 1e9
    time_factor = 1 if gpus > 0 else CPU_TIME_FACTOR
    if job == "sft":
        memory_gb = BASE_MEMORY_GB + (6 if gpus > 0 else 20) * billions
        minutes = BASE_MINUTES + 25 * epochs * passes * billions
        # A full fine-tuning checkpoint is the fp32 weights and Adam's two moments; an adapter's is small.
        checkpoint_bytes = 12 * billions * 1e9 if adapter == "full" else 0
        lead_s = SIGTERM_BASE_S + checkpoint_bytes / CHECKPOINT_WRITE_BYTES_PER_S
        cpus_per_gpu: int | None = 8  # tokenisation and data loading
    else:
        memory_gb = BASE_MEMORY_GB + 4 * billions
        minutes = BASE_MINUTES + {"generate": 15, "lm_eval": 15, "judge_model": 10}[job] * billions
        lead_s = SIGTERM_BASE_S
        cpus_per_gpu = None
    return JobResources(
        gpu=gpus,
        mem_mb=_megabytes(memory_gb) * attempt,
        runtime=min(math.ceil(minutes * time_factor) * attempt, max_job_minutes()),
        sigterm_lead_s=math.ceil(lead_s / 60) * 60,
        cpus_per_gpu=cpus_per_gpu,
    )
