"""`robustft gpu-check`: what one node does per second on the paths the workflow trains, measured before a
cluster run is launched, so its bill is known (docs/costs.md; `robustft estimate --check` reads the JSON).

On a CUDA machine (at most about 5 minutes on one GPU) it trains, for a fixed number of timed steps after
untimed warm-up steps, with SDPA attention and AdamW (fused on CUDA):
- the embedded MiniLM-L6 and a BERT-base-shaped classifier (random weights, `BertConfig()` defaults) in
  bf16 and fp16 autocast (fp16 with a GradScaler) and in fp32, on fixed-length batches;
- a SmolLM2-135M-shaped causal LM (random weights, the Hub model's config) on one SFT step shape in bf16;
- the same model 4-bit quantised with LoRA adapters (QLoRA), when bitsandbytes and peft are importable;
- the same model under FSDP in two processes (NCCL), when two GPUs are visible.
Random weights cost the same FLOPs as trained ones, and need no download. Each path reports examples/s
and tokens/s, model FLOPs per step (FLOPS_FORMULA), MFU against the device's peak (DEVICE_PEAKS), peak
memory, and pass or fail with the error; a failed path does not stop the others.

Without a GPU the same code runs on the CPU in a reduced mode (`"mode": "cpu-reduced"`: tiny step counts,
short sequences, fp32 and bf16 autocast, the BERT-base and SmolLM2 shapes cut to 2 layers), about a minute
on 2 cores: a check of the code paths, whose numbers are CPU numbers.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import math
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from robustft.io import utc_timestamp, write_json_atomic

# Model FLOPs of one training step (PaLM, Chowdhery et al. 2022, App. B): every matmul weight does a
# multiply-add per token forward and two backward (6 FLOPs per weight per token), and attention's two
# S x S products add 12·L·d·S per token. Causal masking is not discounted (the usual convention).
FLOPS_FORMULA = (
    "model FLOPs per step = 6·N·T + 12·L·d·S·T, where T = batch x sequence length (tokens per step), "
    "N = matmul weights per token (the Linear layers of the transformer blocks, plus a causal LM's output "
    "layer; embeddings, norms and a classifier's per-sequence pooler and head left out), L = layers, "
    "d = hidden size, S = sequence length; QLoRA: 4·N·T (its frozen weights get no weight gradients)"
)


@dataclass(frozen=True)
class Architecture:
    """The sizes of a transformer that its training FLOPs depend on."""

    layers: int
    hidden_size: int
    intermediate_size: int
    kv_size: int  # width of the key and value projections: hidden_size, less with grouped-query attention
    gated_mlp: bool = False  # SwiGLU (Llama): three MLP matrices instead of two
    lm_head: int = 0  # a causal LM's vocabulary (its output layer runs at every token); 0 for a classifier

    @property
    def matmul_parameters(self) -> int:
        """N: the weights that take part in a matmul at every token."""
        hidden = self.hidden_size
        attention = 2 * hidden * hidden + 2 * hidden * self.kv_size
        mlp = (3 if self.gated_mlp else 2) * hidden * self.intermediate_size
        return self.layers * (attention + mlp) + self.lm_head * hidden

    def training_flops_per_token(self, sequence_length: int, weight_gradients: bool = True) -> float:
        """FLOPS_FORMULA per token; without weight gradients (frozen weights) the backward pass halves."""
        weights = (6 if weight_gradients else 4) * self.matmul_parameters
        return float(weights + 12 * self.layers * self.hidden_size * sequence_length)

    @classmethod
    def from_config(cls, config: Any, causal_lm: bool) -> Architecture:
        """From a transformers config (BERT, Llama, OPT and the like)."""
        hidden = config.hidden_size
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        intermediate = getattr(config, "intermediate_size", None) or getattr(config, "ffn_dim", 4 * hidden)
        return cls(
            layers=config.num_hidden_layers,
            hidden_size=hidden,
            intermediate_size=intermediate,
            kv_size=hidden * kv_heads // heads,
            gated_mlp=getattr(config, "hidden_act", "") == "silu",
            lm_head=config.vocab_size if causal_lm else 0,
        )


@dataclass(frozen=True)
class DevicePeak:
    """A GPU's peak dense bf16 (= fp16) tensor-core throughput, and where the number comes from."""

    pattern: str  # a regular expression on torch.cuda.get_device_name()
    name: str
    tflops: float
    source: str


# Most specific first: "NVIDIA H100 PCIe" must not match the SXM row. NVIDIA's datasheets print the
# with-sparsity figure first; the dense one is half of it.
DEVICE_PEAKS: tuple[DevicePeak, ...] = (
    DevicePeak(
        r"H100.*NVL", "H100 NVL", 835.0, "NVIDIA H100 datasheet: BF16/FP16 1,671 TFLOPS with sparsity"
    ),
    DevicePeak(
        r"H100.*PCIe", "H100 PCIe", 756.0, "NVIDIA H100 datasheet: BF16/FP16 1,513 TFLOPS with sparsity"
    ),
    DevicePeak(r"H100", "H100 SXM", 989.0, "NVIDIA H100 datasheet: BF16/FP16 1,979 TFLOPS with sparsity"),
    DevicePeak(
        r"H200.*NVL", "H200 NVL", 835.0, "NVIDIA H200 datasheet: BF16/FP16 1,671 TFLOPS with sparsity"
    ),
    DevicePeak(r"H200", "H200 SXM", 989.0, "NVIDIA H200 datasheet: BF16/FP16 1,979 TFLOPS with sparsity"),
    DevicePeak(
        r"A100", "A100", 312.0, "NVIDIA A100 datasheet: BF16/FP16 312 TFLOPS dense (624 with sparsity)"
    ),
    DevicePeak(
        r"L40S", "L40S", 362.0, "NVIDIA L40S datasheet: BF16/FP16 362.05 TFLOPS dense (733 with sparsity)"
    ),
    DevicePeak(r"\bL4\b", "L4", 121.0, "NVIDIA L4 datasheet: BF16/FP16 242 TFLOPS with sparsity"),
    DevicePeak(r"\bA10\b", "A10", 125.0, "NVIDIA A10 datasheet: BF16/FP16 250 TFLOPS with sparsity"),
)


def device_peak(device_name: str) -> DevicePeak | None:
    """The peak of a GPU named as torch names it ("NVIDIA H100 80GB HBM3"), or None for one not listed."""
    return next((peak for peak in DEVICE_PEAKS if re.search(peak.pattern, device_name)), None)


# HuggingFaceTB/SmolLM2-135M's config.json (the embedded smollm2-135m is its instruct version, same shape).
SMOLLM2_135M = {
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "max_position_embeddings": 8192,
    "rope_theta": 100000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}


@dataclass(frozen=True)
class CheckPlan:
    """How much each path runs. GPU_PLAN and CPU_PLAN are the two the command uses."""

    mode: str  # "gpu" or "cpu-reduced"
    warmup_steps: int
    steps: int
    precisions: tuple[str, ...]  # of the classifiers
    sft_precisions: tuple[str, ...]
    classifier_batch: int
    classifier_length: int
    sft_batch: int
    sft_length: int
    qlora_batch: int
    reduced_layers: int | None  # None: full depth; else the BERT-base and SmolLM2 shapes keep this many
    # A path that would start after this many seconds is skipped. None on the CPU: a check of the code
    # paths must run them all, however slow or shared the machine.
    budget_s: float | None


# GPU: the paper configs' shapes (GLUE: batch 32 at 128 tokens; SFT: 4 x 512 per device, QLoRA 1 x 512).
# fp32 classifiers too: SMART runs its adversarial passes in fp32 (robustft estimate prices them so).
GPU_PLAN = CheckPlan(
    mode="gpu",
    warmup_steps=3,
    steps=20,
    precisions=("bf16", "fp16", "fp32"),
    sft_precisions=("bf16",),
    classifier_batch=32,
    classifier_length=128,
    sft_batch=4,
    sft_length=512,
    qlora_batch=1,
    reduced_layers=None,
    budget_s=270.0,
)
CPU_PLAN = CheckPlan(
    mode="cpu-reduced",
    warmup_steps=1,
    steps=2,
    precisions=("fp32", "bf16"),
    sft_precisions=("fp32", "bf16"),
    classifier_batch=4,
    classifier_length=32,
    sft_batch=1,
    sft_length=32,
    qlora_batch=1,
    reduced_layers=2,
    budget_s=None,
)


@dataclass
class PathResult:
    """One path of the check: what ran, how fast, and whether it worked."""

    name: str
    kind: str  # classification | sft | qlora | fsdp
    model: str
    precision: str
    status: str = "pass"  # pass | fail | skipped
    error: str | None = None
    note: str = ""
    gpus: int = 1
    batch_size: int = 0
    sequence_length: int = 0
    warmup_steps: int = 0
    steps: int = 0
    seconds: float | None = None
    examples_per_s: float | None = None
    tokens_per_s: float | None = None
    flops_per_step: float | None = None
    achieved_tflops: float | None = None
    mfu: float | str | None = None
    peak_memory_gb: float | None = None
    architecture: dict[str, Any] | None = None
    weight_gradients: bool = True
    attention: str | None = None
    optimizer: str | None = None


@dataclass
class Measurement:
    """What a path's body returns: the timed steps and the model they trained."""

    seconds: float
    architecture: Architecture
    attention: str
    optimizer: str
    peak_memory_bytes: int | None = None
    weight_gradients: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # PathResult fields a body sets itself


def _torch():
    import torch

    return torch


def synchronize(device: Any) -> None:
    if device.type == "cuda":
        _torch().cuda.synchronize(device)


def autocast_dtype(precision: str):
    torch = _torch()
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def make_optimizer(parameters: list[Any], device: Any):
    """AdamW, fused into one kernel on CUDA (torch's default elsewhere); lr is irrelevant to timing."""
    torch = _torch()
    fused = True if device.type == "cuda" else None
    return torch.optim.AdamW(parameters, lr=1e-5, fused=fused), "AdamW (fused)" if fused else "AdamW"


def make_train_step(model: Any, batch: dict[str, Any], precision: str, device: Any) -> tuple[Callable, str]:
    """One training step of `model` on `batch` under autocast in `precision` (fp16 with a GradScaler, so a
    step whose gradients overflow is skipped as in real training); the step returns its loss."""
    torch = _torch()
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer, optimizer_name = make_optimizer(parameters, device)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    dtype = autocast_dtype(precision)

    def step() -> Any:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = model(**batch).loss
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step, optimizer_name


def timed_steps(step: Callable, plan: CheckPlan, device: Any) -> float:
    """Seconds of `plan.steps` steps after `plan.warmup_steps` untimed ones (allocator, kernels, autotuning);
    the device is synchronised on both sides of the timed ones. A non-finite loss is an error."""
    for _ in range(plan.warmup_steps):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(plan.steps):
        loss = step()
    synchronize(device)
    seconds = time.perf_counter() - start
    if not math.isfinite(float(loss)):
        raise FloatingPointError(f"the training loss is {float(loss)}")
    return seconds


@contextmanager
def peak_memory(device: Any) -> Iterator[dict[str, int | None]]:
    """{"bytes": torch.cuda.max_memory_allocated} over the block on CUDA; None on the CPU."""
    torch = _torch()
    found: dict[str, int | None] = {"bytes": None}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    yield found
    if device.type == "cuda":
        found["bytes"] = torch.cuda.max_memory_allocated(device)


def random_batch(vocab_size: int, batch: int, length: int, device: Any, causal: bool) -> dict[str, Any]:
    """Fixed-length random tokens (a seeded generator): every step costs the same."""
    torch = _torch()
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(100, vocab_size, (batch, length), generator=generator)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    inputs["labels"] = ids.clone() if causal else torch.randint(0, 2, (batch,), generator=generator)
    return {name: tensor.to(device) for name, tensor in inputs.items()}


def reduced(config_layers: int, plan: CheckPlan) -> int:
    return min(config_layers, plan.reduced_layers) if plan.reduced_layers else config_layers


def build_classifier(model: str, plan: CheckPlan) -> tuple[Any, str]:
    """The embedded MiniLM-L6 (its weights, a new 2-label head) or a random BERT-base-shaped classifier,
    with SDPA attention; and a note on what was built."""
    from transformers import AutoModelForSequenceClassification, BertConfig

    if model == "minilm-l6":
        from robustft.models import get_model_spec

        location = get_model_spec(model).location()
        built = AutoModelForSequenceClassification.from_pretrained(
            location, num_labels=2, attn_implementation="sdpa", use_safetensors=True
        )
        return built, "embedded weights, new 2-label head"
    config = BertConfig(num_labels=2)
    layers = reduced(config.num_hidden_layers, plan)
    config.num_hidden_layers = layers
    built = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")
    cut = f", cut to {layers} of 12 layers" if layers != 12 else ""
    return built, f"random weights, BertConfig() defaults{cut}"


def build_smollm2(plan: CheckPlan) -> tuple[Any, str]:
    """A random SmolLM2-135M-shaped causal LM with SDPA attention, and a note on what was built."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    layers = reduced(SMOLLM2_135M["num_hidden_layers"], plan)
    config = LlamaConfig(**{**SMOLLM2_135M, "num_hidden_layers": layers})
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    cut = f", cut to {layers} of 30 layers" if layers != 30 else ""
    return model, f"random weights, SmolLM2-135M's config{cut}"


def classifier_body(model_name: str, precision: str, plan: CheckPlan, device: Any) -> Measurement:
    return _timed_training(
        lambda: build_classifier(model_name, plan),
        plan.classifier_batch,
        plan.classifier_length,
        False,
        precision,
        plan,
        device,
    )


def sft_body(precision: str, plan: CheckPlan, device: Any) -> Measurement:
    return _timed_training(
        lambda: build_smollm2(plan), plan.sft_batch, plan.sft_length, True, precision, plan, device
    )


def _timed_training(
    build: Any, batch_size: int, length: int, causal_lm: bool, precision: str, plan: CheckPlan, device: Any
) -> Measurement:
    """Build a model (`build()` -> (model, note)), then time the plan's training steps on random batches."""
    with peak_memory(device) as memory:
        model, note = build()
        model.to(device).train()
        batch = random_batch(model.config.vocab_size, batch_size, length, device, causal_lm)
        step, optimizer = make_train_step(model, batch, precision, device)
        seconds = timed_steps(step, plan, device)
    return Measurement(
        seconds,
        Architecture.from_config(model.config, causal_lm=causal_lm),
        model.config._attn_implementation,
        optimizer,
        memory["bytes"],
        extra={"note": note + ("; causal LM loss on every token" if causal_lm else "")},
    )


def qlora_unavailable_reason(device: Any) -> str | None:
    """Why the QLoRA path cannot run here, or None."""
    for package in ("bitsandbytes", "peft"):
        if importlib.util.find_spec(package) is None:
            return f"{package} not installed"
    if device.type != "cuda":
        return "bitsandbytes 4-bit needs a CUDA GPU"
    return None


def qlora_body(plan: CheckPlan, device: Any) -> Measurement:
    """QLoRA's reference settings: NF4 with double quantisation, bf16 compute, LoRA r 64 / alpha 16 on every
    linear layer. The random model is saved and loaded back quantised, as a checkpoint would be."""
    torch = _torch()
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    model, note = build_smollm2(plan)
    architecture = Architecture.from_config(model.config, causal_lm=True)
    with tempfile.TemporaryDirectory(prefix="robustft-gpu-check-") as folder:
        model.save_pretrained(folder)
        del model
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        with peak_memory(device) as memory:
            model = AutoModelForCausalLM.from_pretrained(
                folder,
                quantization_config=quantization,
                dtype=torch.bfloat16,
                device_map={"": device.index or 0},
                attn_implementation="sdpa",
            )
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
            lora = LoraConfig(r=64, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
            model = get_peft_model(model, lora).train()
            batch = random_batch(architecture.lm_head, plan.qlora_batch, plan.sft_length, device, True)
            step, optimizer = make_train_step(model, batch, "bf16", device)
            seconds = timed_steps(step, plan, device)
    return Measurement(
        seconds,
        architecture,
        model.config._attn_implementation,
        optimizer,
        memory["bytes"],
        weight_gradients=False,
        extra={"note": note + "; NF4 + LoRA r64 on all linear layers"},
    )


FSDP_GPUS = 2


def fsdp_train(world_size: int, plan: CheckPlan, device: Any) -> dict[str, Any]:
    """The SFT step of SmolLM2 sharded by FSDP2 (one unit per decoder layer, as `robustft launch` wraps
    models), bf16 compute with fp32 gradient reduction on CUDA, fp32 on the CPU. Every rank times the
    same steps; the slowest rank's time and the largest peak memory are returned."""
    torch = _torch()
    import torch.distributed as dist
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    torch.manual_seed(0)
    with peak_memory(device) as memory:
        model, note = build_smollm2(plan)
        architecture = Architecture.from_config(model.config, causal_lm=True)
        model.to(device).train()
        policy = (
            MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
            if device.type == "cuda"
            else MixedPrecisionPolicy()
        )
        for layer in model.model.layers:
            fully_shard(layer, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        # torch's default AdamW (foreach): the fused kernel's support of sharded (DTensor) parameters is
        # not something this check should depend on.
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        batch = random_batch(architecture.lm_head, plan.sft_batch, plan.sft_length, device, True)

        def step():
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss.detach()

        dist.barrier()
        seconds = timed_steps(step, plan, device)
    slowest = torch.tensor([seconds, float(memory["bytes"] or 0)], dtype=torch.float64, device=device)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    return {
        "seconds": float(slowest[0]),
        "peak_memory_bytes": int(slowest[1]) if memory["bytes"] is not None else None,
        "architecture": asdict(architecture),
        "attention": model.config._attn_implementation,
        "optimizer": "AdamW (FSDP2-sharded)",
        "note": f"{note}; FSDP2, world size {world_size}, one unit per decoder layer",
    }


def fsdp_worker(rank: int, world_size: int, port: int, backend: str, out: str, plan: dict[str, Any]) -> None:
    """One process of the FSDP path (torch.multiprocessing.spawn calls it with its rank); rank 0 writes
    the result to `out`."""
    torch = _torch()
    import torch.distributed as dist

    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        result = fsdp_train(world_size, CheckPlan(**plan), device)
        if rank == 0:
            Path(out).write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def fsdp_body(plan: CheckPlan, device: Any) -> Measurement:
    import torch.multiprocessing as multiprocessing

    from robustft.launch import free_port

    with tempfile.TemporaryDirectory(prefix="robustft-gpu-check-") as folder:
        out = Path(folder) / "rank0.json"
        arguments = (FSDP_GPUS, free_port(), "nccl", str(out), asdict(plan))
        multiprocessing.spawn(fsdp_worker, args=arguments, nprocs=FSDP_GPUS, join=True)
        found = json.loads(out.read_text())
    return Measurement(
        found["seconds"],
        Architecture(**found["architecture"]),
        found["attention"],
        found["optimizer"],
        found["peak_memory_bytes"],
        extra={"note": found["note"]},
    )


def describe_error(err: BaseException) -> str:
    """One line naming the error: a spawned process's is the last line of its traceback ("torch.
    OutOfMemoryError: CUDA out of memory..."), any other's the first line of its message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if "terminated with the following error" in str(err):
        return lines[-1]
    return f"{type(err).__name__}: {lines[0]}"


def release_memory() -> None:
    gc.collect()
    torch = _torch()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def with_measurement(result: PathResult, measured: Measurement, peak: DevicePeak | None) -> PathResult:
    """`result` with its rates, FLOPs, MFU and memory filled in from `measured`."""
    examples = result.gpus * result.batch_size * result.steps
    tokens_per_step = result.gpus * result.batch_size * result.sequence_length
    per_token = measured.architecture.training_flops_per_token(
        result.sequence_length, measured.weight_gradients
    )
    achieved = per_token * tokens_per_step * result.steps / measured.seconds
    mfu: float | str = "unknown"
    if peak is not None and result.precision in ("bf16", "fp16"):
        mfu = achieved / (peak.tflops * 1e12 * result.gpus)
    memory = measured.peak_memory_bytes
    return replace(
        result,
        seconds=measured.seconds,
        examples_per_s=examples / measured.seconds,
        tokens_per_s=examples * result.sequence_length / measured.seconds,
        flops_per_step=per_token * tokens_per_step,
        achieved_tflops=achieved / 1e12,
        mfu=mfu,
        peak_memory_gb=None if memory is None else memory / 1e9,
        architecture=asdict(measured.architecture),
        weight_gradients=measured.weight_gradients,
        attention=measured.attention,
        optimizer=measured.optimizer,
        **measured.extra,
    )


def run_path(result: PathResult, body: Callable[[], Measurement], peak: DevicePeak | None) -> PathResult:
    try:
        measured = body()
    except Exception as err:  # a path's failure is its result: the other paths still run
        return replace(result, status="fail", error=describe_error(err))
    finally:
        release_memory()
    return with_measurement(result, measured, peak)


def planned_paths(plan: CheckPlan, device: Any) -> list[tuple[PathResult, Callable[[], Measurement] | None]]:
    """Every path of the check, each with the body that measures it, or None with the reason in its note."""
    torch = _torch()
    common = {"warmup_steps": plan.warmup_steps, "steps": plan.steps}
    classifier = {"batch_size": plan.classifier_batch, "sequence_length": plan.classifier_length, **common}
    sft = {"batch_size": plan.sft_batch, "sequence_length": plan.sft_length, **common}
    paths: list[tuple[PathResult, Callable[[], Measurement] | None]] = []
    for model in ("minilm-l6", "bert-base"):
        for precision in plan.precisions:
            result = PathResult(f"{model} {precision}", "classification", model, precision, **classifier)
            paths.append((result, lambda m=model, p=precision: classifier_body(m, p, plan, device)))
    for precision in plan.sft_precisions:
        result = PathResult(f"smollm2-135m sft {precision}", "sft", "smollm2-135m", precision, **sft)
        paths.append((result, lambda p=precision: sft_body(p, plan, device)))
    qlora = PathResult("smollm2-135m qlora bf16", "qlora", "smollm2-135m", "bf16", **{**sft, "batch_size": 1})
    reason = qlora_unavailable_reason(device)
    if reason is None:
        paths.append((replace(qlora, batch_size=plan.qlora_batch), lambda: qlora_body(plan, device)))
    else:
        paths.append((replace(qlora, status="skipped", note=f"skipped: {reason}"), None))
    visible = torch.cuda.device_count() if device.type == "cuda" else 0
    fsdp = PathResult("smollm2-135m fsdp bf16", "fsdp", "smollm2-135m", "bf16", gpus=FSDP_GPUS, **sft)
    if visible >= FSDP_GPUS:
        paths.append((fsdp, lambda: fsdp_body(plan, device)))
    else:
        why = "one GPU" if visible == 1 else "no GPU (FSDP with NCCL needs two)"
        paths.append((replace(fsdp, status="skipped", note=f"skipped: {why}"), None))
    return paths


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No loading progress bars or load reports (MiniLM's new head is meant to be new) among the table."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def run_check(plan: CheckPlan | None = None) -> dict[str, Any]:
    """Run every path (GPU_PLAN on a CUDA machine, else CPU_PLAN) and return the report `write_check`
    writes: the device, its peak, the formula, and one entry per path."""
    torch = _torch()
    import platform

    import transformers

    cuda = torch.cuda.is_available()
    plan = plan or (GPU_PLAN if cuda else CPU_PLAN)
    device = torch.device("cuda", 0) if cuda and plan.mode == "gpu" else torch.device("cpu")
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
        peak = device_peak(device_name)
        mfu_note = None if peak else f"MFU unknown: {device_name!r} is not in robustft.gpu_check.DEVICE_PEAKS"
    else:
        device_name, peak = f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)", None
        mfu_note = "MFU unknown on the CPU (the table of peaks is of GPUs)"
    started_at, started = utc_timestamp(), time.perf_counter()
    results = []
    with quiet_transformers():
        for result, body in planned_paths(plan, device):
            spent = plan.budget_s is not None and time.perf_counter() - started > plan.budget_s
            if body is not None and spent:
                result = replace(
                    result, status="skipped", note=f"skipped: the check's {plan.budget_s:.0f} s were spent"
                )
            elif body is not None:
                result = run_path(result, body, peak)
            results.append(result)
    return {
        "mode": plan.mode,
        "device": device_name,
        "gpus_visible": torch.cuda.device_count() if cuda else 0,
        "peak": None
        if peak is None
        else {"name": peak.name, "dense_bf16_fp16_tflops": peak.tflops, "source": peak.source},
        "mfu_note": mfu_note,
        "flops_formula": FLOPS_FORMULA,
        "plan": asdict(plan),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "cuda": torch.version.cuda,
        },
        "started_at": started_at,
        "seconds": time.perf_counter() - started,
        "passed": all(result.status != "fail" for result in results),
        "paths": [asdict(result) for result in results],
    }


def _number(value: float | None, digits: int = 1) -> str:
    """`digits` decimals, or 3 significant digits for a small number (CPU rates)."""
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if abs(value) >= 10 else f"{value:.3g}"


def format_check(report: dict[str, Any]) -> str:
    """The report as a table, with what it measured on and how MFU was computed."""
    lines = [f"robustft gpu-check: mode {report['mode']} on {report['device']}, {report['seconds']:.0f} s"]
    if report["mode"] == "cpu-reduced":
        lines.append(
            "  no GPU: the CPU-reduced mode (tiny step counts, short sequences, BERT-base and SmolLM2 shapes "
            "cut to 2 layers) checks the code paths; its numbers are CPU numbers, not GPU measurements"
        )
    if report["peak"]:
        peak = report["peak"]
        lines.append(
            f"  peak: {peak['name']} {peak['dense_bf16_fp16_tflops']:g} TFLOP/s dense ({peak['source']})"
        )
    if report["mfu_note"]:
        lines.append(f"  {report['mfu_note']}")
    lines.append(f"  {report['flops_formula']}")
    header = ("path", "status", "batch x len", "examples/s", "tokens/s", "TFLOP/s", "MFU", "peak GB", "")
    rows = [header]
    for path in report["paths"]:
        mfu = path["mfu"]
        rows.append(
            (
                path["name"],
                path["status"],
                f"{path['gpus'] * path['batch_size']} x {path['sequence_length']}",
                _number(path["examples_per_s"]),
                _number(path["tokens_per_s"], 0),
                _number(path["achieved_tflops"], 2),
                f"{mfu:.1%}" if isinstance(mfu, float) else (mfu or "-"),
                _number(path["peak_memory_gb"], 2),
                path["error"] or path["note"],
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  " + "  ".join(cells) + ("  " + row[-1] if row[-1] else ""))
    return "\n".join(line.rstrip() for line in lines)


def write_check(report: dict[str, Any], out: str | Path) -> None:
    write_json_atomic(out, report)
