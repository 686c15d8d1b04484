"""Training throughput: dynamic padding against run_glue.py's defaults, and bf16 autocast against fp32.

    python benchmarks/throughput.py [--task sst2] [--samples 256] [--reps 2] [--threads 2] [--no-check]
        [--compare padding precision matmul] [--matmul-n 2048] [--matmul-reps 5]

Every configuration is robustft's own `train_run` (plain fine-tuning) on the same model, task, data subset
and hyperparameters; they differ in one setting each:

- padding: run_glue.py pads every example to max_seq_length (128) by default; we tokenise without padding
  and let DataCollatorWithPadding pad each batch to its longest example. Both in fp32.
- precision: `train.precision` bf16 against fp32, both with dynamic padding. On a CPU the Trainer's
  bf16=True makes accelerate run the forward under torch.autocast(bfloat16) on fp32 weights; the
  optimizer and the master weights stay fp32.
- matmul: the machine's own ceiling, torch.matmul of two n x n matrices in fp32 and in bf16 at the same
  thread count (a warm-up, then the median of --matmul-reps products; GFLOP/s = 2 n^3 / seconds).

All of them run in this one process, interleaved (A B C, then C B A, ...; the matrix products at the start
of every round), so load from other jobs on a shared machine falls on all alike, and the ratios are the
result. Training examples/s counts training alone: the dev evaluations inside Trainer's loop are taken out.

Training FLOPs per example use the standard estimate for a transformer encoder (forward + backward = 3x
the forward's 2 FLOPs per weight per token):

    FLOPs = 6 * N * T + 12 * n_layer * d_model * sum(L^2)

N: the parameters of the encoder layers (no embedding tables, no pooler or classifier head, which see one
token per example); T: the tokens the model computed, padding included (the attention mask does not skip
padded positions), i.e. batch size x the batch's padded length L summed over batches; the second term is
the attention scores and their weighted sum (4 L^2 d per layer forward). With dynamic padding T depends on
which examples share a batch, which the Trainer's sampler shuffles: it is the mean over 20 random batchings.
The fraction of the matrix-product rate is training GFLOP/s over the rate of the same dtype.

Exit status 1 when the padding ratio is below --target, or bf16 training reaches less than
--fraction-target of the bf16 matrix-product rate (unless --no-check).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# Before transformers is imported: progress bars would bury the table in the log. Only when run as a
# script: a plain import (a test's) must not silence the progress bars of every later subprocess.
if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np

from robustft.train.config import RunSpec, TrainConfig

REPO = Path(__file__).resolve().parents[1]
OURS = "robustft fp32 (dynamic padding)"
RUN_GLUE = "run_glue.py defaults (pad to 128)"
BF16 = "robustft bf16 autocast"
# Each configuration's settings over the base TrainConfig. Precision is always explicit: the package's
# default may change, and these comparisons must not change with it.
CONFIGS: dict[str, dict[str, Any]] = {
    OURS: {"pad_to_max_length": False, "precision": "fp32"},
    RUN_GLUE: {"pad_to_max_length": True, "precision": "fp32"},
    BF16: {"pad_to_max_length": False, "precision": "bf16"},
}
COMPARISONS: dict[str, list[str]] = {"padding": [OURS, RUN_GLUE], "precision": [OURS, BF16]}
MATMUL = "matmul"
FLOPS_FORMULA = "6 * N_encoder * T_padded + 12 * n_layer * d_model * sum(L^2)"


@dataclass(frozen=True)
class TokenCounts:
    """One epoch's examples, the tokens in them, the tokens the model computed (padding included) and the
    sum over batches of batch size x padded length squared."""

    examples: int
    real: float
    padded: float
    padded_squared: float


@dataclass(frozen=True)
class EncoderShape:
    """What the FLOPs estimate needs from the model."""

    layer_parameters: int
    layers: int
    hidden_size: int


def train_seconds(run_dir: Path, metrics: dict[str, Any]) -> float:
    """Seconds spent training, without evaluation.

    Trainer's train_runtime spans the whole training loop, which with eval_strategy="epoch" includes
    evaluating the dev set. Evaluation is not what we compare, and its cost differs between the configs
    in its own way (eval batches are padded too), so we subtract every eval_*_runtime that history.jsonl
    logged, the same way for every configuration.
    """
    eval_seconds = 0.0
    for line in (run_dir / "history.jsonl").read_text().splitlines():
        record = json.loads(line)
        eval_seconds += sum(v for k, v in record.items() if k.startswith("eval_") and k.endswith("_runtime"))
    return metrics["train_runtime_s"] - eval_seconds


def run_once(spec: RunSpec) -> float:
    """One training run in a scratch directory: training examples per second."""
    from robustft.train.glue import train_run

    # Trainer prints its logs to stdout; send them to stderr so stdout is just the table and the JSON.
    with (
        tempfile.TemporaryDirectory(prefix="robustft-throughput-") as tmp,
        contextlib.redirect_stdout(sys.stderr),
    ):
        metrics = train_run(spec, tmp)
        if metrics["status"] != "ok":
            raise RuntimeError(f"benchmark run ended with status {metrics['status']!r}")
        examples = metrics["n_train"] * spec.train.epochs
        return examples / train_seconds(Path(tmp), metrics)


def cpu_bf16_support() -> dict[str, Any]:
    """The CPU's vector extension as torch sees it, and whether oneDNN has fast bf16 kernels for it.

    Without them (no AVX512-BF16 or AMX, e.g. an AVX2-only CPU) torch computes bf16 products in a slow
    fallback kernel: a 2048^2 bf16 matmul then runs hundreds of times below the fp32 rate, and bf16
    autocast training is slower than fp32, not faster.
    """
    from robustft.provenance import cpu_capability, cpu_has_fast_bf16

    return {"capability": cpu_capability(), "mkldnn_bf16": cpu_has_fast_bf16()}


def matmul_gflops(n: int, dtype: Any, reps: int, warmup: int = 2, budget_s: float = 30.0) -> float:
    """GFLOP/s of torch.matmul on two n x n matrices of `dtype`: 2 n^3 over the median time of `reps`.

    When the first product alone shows that warm-up and reps would take longer than `budget_s` (a slow
    bf16 fallback kernel takes a minute per 2048^2 product), that first product is the measurement.
    """
    import torch

    if n < 1 or reps < 1:
        raise ValueError(f"matmul size and reps must be >= 1, got n={n}, reps={reps}")
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(n, n, generator=generator).to(dtype)
    right = torch.randn(n, n, generator=generator).to(dtype)
    start = time.perf_counter()
    torch.matmul(left, right)
    first = time.perf_counter() - start
    if first * (warmup - 1 + reps) > budget_s:
        return 2 * n**3 / first / 1e9
    for _ in range(warmup - 1):  # thread pool start-up and (for bf16) oneDNN kernel selection
        torch.matmul(left, right)
    seconds = []
    for _ in range(reps):
        start = time.perf_counter()
        torch.matmul(left, right)
        seconds.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(seconds) / 1e9


def batch_token_counts(
    lengths: np.ndarray, batch_size: int, shuffles: int = 20, seed: int = 0
) -> TokenCounts:
    """Token counts of one epoch when `lengths` are shuffled into batches of `batch_size` (the last one
    partial, as the Trainer's sampler does) and each batch is padded to its longest example; the padded
    counts are averaged over `shuffles` random batch orders."""
    if batch_size < 1 or lengths.size == 0:
        raise ValueError(f"need examples and a batch size >= 1, got {lengths.size} and {batch_size}")
    rng = np.random.default_rng(seed)
    padded, squared = [], []
    for _ in range(shuffles):
        order = rng.permutation(lengths)
        starts = range(0, order.size, batch_size)
        batches = [(order[s : s + batch_size].size, order[s : s + batch_size].max()) for s in starts]
        padded.append(sum(float(size * longest) for size, longest in batches))
        squared.append(sum(float(size * longest**2) for size, longest in batches))
    return TokenCounts(
        int(lengths.size), float(lengths.sum()), float(np.mean(padded)), float(np.mean(squared))
    )


def training_flops(counts: TokenCounts, shape: EncoderShape) -> float:
    """FLOPs of one training epoch by FLOPS_FORMULA (see the module docstring)."""
    linear = 6 * shape.layer_parameters * counts.padded
    attention = 12 * shape.layers * shape.hidden_size * counts.padded_squared
    return linear + attention


def train_token_counts(spec: RunSpec) -> TokenCounts:
    """Token counts of one epoch of `spec`'s training set, from train_run's own subsampling and
    tokenisation, so the lengths are those the Trainer sees (padded to 128 under pad_to_max_length)."""
    from robustft.data import get_task
    from robustft.data.glue import load_split
    from robustft.models import load_tokenizer
    from robustft.train.glue import _subsample, _tokenize

    config = spec.train
    split = load_split(spec.task, "train", spec.data_dir, spec.cache_dir)
    split = _subsample(split, config.max_train_samples, config.data_seed)
    tokenizer = load_tokenizer(spec.model, cache_dir=spec.cache_dir)
    dataset = _tokenize(split, tokenizer, config, get_task(spec.task).is_regression)
    lengths = np.array([len(ids) for ids in dataset["input_ids"]])
    return batch_token_counts(lengths, config.batch_size)


def encoder_shape(spec: RunSpec) -> EncoderShape:
    """Parameters of the encoder layers (base_model.encoder), their number and width."""
    from robustft.data import get_task
    from robustft.models import load_sequence_classifier_with_info

    model, _ = load_sequence_classifier_with_info(spec.model, get_task(spec.task).num_labels, spec.cache_dir)
    return model_encoder_shape(model, spec.model)


def model_encoder_shape(model: Any, name: str) -> EncoderShape:
    """EncoderShape of a loaded sequence classifier (`name` for the error)."""
    encoder = getattr(model.base_model, "encoder", None)
    if encoder is None:
        raise RuntimeError(f"model {name!r} has no base_model.encoder to count FLOPs on")
    return EncoderShape(
        layer_parameters=sum(p.numel() for p in encoder.parameters()),
        layers=int(model.config.num_hidden_layers),
        hidden_size=int(model.config.hidden_size),
    )


def interleaved(names: list[str], rep: int) -> list[str]:
    """The order of round `rep`: forwards on even rounds, backwards on odd ones, so no configuration
    always runs first or last and drift in load cancels out."""
    return names if rep % 2 == 0 else names[::-1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--task", default="sst2", help="GLUE task; sst2/cola have the short sentences")
    parser.add_argument("--data-dir", default=str(REPO / "resources" / "data"))
    parser.add_argument("--samples", type=int, default=256, help="training examples per run")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--eval-samples", type=int, default=64, help="dev examples (eval is not timed)")
    parser.add_argument("--reps", type=int, default=2, help="timed runs per configuration")
    parser.add_argument("--warmup-samples", type=int, default=32, help="untimed first run each; 0: none")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument(
        "--compare",
        nargs="+",
        choices=[*COMPARISONS, MATMUL],
        default=[*COMPARISONS, MATMUL],
        help="what to measure (default: all): padding (ours vs run_glue.py), precision (bf16 vs fp32 "
        "training), matmul (the machine's fp32 and bf16 matrix-product rates)",
    )
    parser.add_argument("--matmul-n", type=int, default=2048, help="matrix size of the matmul rate")
    parser.add_argument("--matmul-reps", type=int, default=5, help="timed products per dtype and round")
    parser.add_argument(
        "--matmul-budget-s", type=float, default=30.0, help="seconds per dtype and round before fewer reps"
    )
    parser.add_argument("--target", type=float, default=1.5, help="minimum ratio ours / run_glue.py")
    parser.add_argument(
        "--fraction-target",
        type=float,
        default=0.5,
        help="minimum fraction of the bf16 matmul rate that bf16 training reaches",
    )
    parser.add_argument("--no-check", action="store_true", help="report only, exit 0 below target")
    args = parser.parse_args()
    if args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")

    import torch

    # Trainer asks for pinned memory, which means nothing on a CPU-only machine.
    warnings.filterwarnings("ignore", message=".*pin_memory.*")

    # Fixed, so the result does not depend on how many cores torch happens to detect on a shared host;
    # the matrix products run at the same count, so the fractions compare like with like.
    torch.set_num_threads(args.threads)
    base = RunSpec(
        model=args.model,
        task=args.task,
        method="finetune",
        seed=1,
        data_dir=args.data_dir,
        train=TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            max_seq_length=args.max_seq_length,
            max_train_samples=args.samples,
            max_eval_samples=args.eval_samples,
            logging_steps=10,
        ),
    )
    comparisons = [name for name in COMPARISONS if name in args.compare]
    names = list(dict.fromkeys(config for name in comparisons for config in COMPARISONS[name]))
    specs = {name: replace(base, train=replace(base.train, **CONFIGS[name])) for name in names}
    measure_matmul = MATMUL in args.compare
    cpu = cpu_bf16_support()
    if not cpu["mkldnn_bf16"] and not torch.cuda.is_available():
        print(
            f"warning: this CPU ({cpu['capability']}) has no fast bf16 kernels (oneDNN bf16 unsupported):"
            " bf16 products run in a slow fallback, so bf16 runs take longer than fp32 ones",
            file=sys.stderr,
            flush=True,
        )
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}

    if args.warmup_samples:
        # The first run in a process pays one-off costs (lazy imports, kernel set-up); keep them out.
        for spec in specs.values():
            run_once(replace(spec, train=replace(spec.train, max_train_samples=args.warmup_samples)))

    results: dict[str, list[float]] = {name: [] for name in names}
    matmul: dict[str, list[float]] = {dtype: [] for dtype in dtypes}
    for rep in range(args.reps):
        if measure_matmul:
            for dtype in interleaved(list(dtypes), rep):
                rate = matmul_gflops(
                    args.matmul_n, dtypes[dtype], args.matmul_reps, budget_s=args.matmul_budget_s
                )
                matmul[dtype].append(rate)
            rates = ", ".join(f"{dtype} {values[-1]:.1f}" for dtype, values in matmul.items())
            print(f"rep {rep + 1} matmul GFLOP/s: {rates}", file=sys.stderr, flush=True)
        for name in interleaved(names, rep):
            results[name].append(run_once(specs[name]))
            print(
                f"rep {rep + 1} {name}: {results[name][-1]:.1f} train examples/s", file=sys.stderr, flush=True
            )

    report: dict[str, Any] = {
        "model": args.model,
        "task": args.task,
        "samples": args.samples,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "reps": args.reps,
        "cpu": cpu,
    }
    checks: dict[str, bool] = {}
    matmul_rate = {dtype: statistics.median(values) for dtype, values in matmul.items() if values}
    if matmul_rate:
        report["matmul"] = {
            "n": args.matmul_n,
            **{f"{dtype}_gflops": round(rate, 1) for dtype, rate in matmul_rate.items()},
            "bf16_over_fp32": round(matmul_rate["bf16"] / matmul_rate["fp32"], 3),
        }

    print(
        f"\n{args.model} on {args.task}: {args.samples} examples x {args.epochs:g} epoch(s), batch"
        f" {args.batch_size}, {args.threads} threads, {args.reps} reps each (median)"
    )
    print(f"CPU: {cpu['capability']}, fast bf16 kernels (oneDNN): {'yes' if cpu['mkldnn_bf16'] else 'no'}")
    median: dict[str, float] = {}
    gflops: dict[str, float] = {}
    if names:
        shape = encoder_shape(base)
        print(
            f"{'configuration':<35} {'examples/s':>10} {'runs':>17} {'pad len':>8} {'tokens':>7}"
            f" {'GFLOP/s':>8} {'of matmul':>9}"
        )
        for name in names:
            median[name] = statistics.median(results[name])
            counts = train_token_counts(specs[name])
            examples_per_epoch = counts.examples
            flops_per_example = training_flops(counts, shape) / examples_per_epoch
            gflops[name] = median[name] * flops_per_example / 1e9
            rate = matmul_rate.get(specs[name].train.precision)
            fraction = f"{gflops[name] / rate:>9.0%}" if rate else f"{'-':>9}"
            runs = ", ".join(f"{v:.1f}" for v in results[name])
            # Mean padded length per example: padded tokens over examples (batch sizes differ at the end).
            padded_length = counts.padded / examples_per_epoch
            tokens = counts.real / examples_per_epoch
            print(
                f"{name:<35} {median[name]:>10.1f} {runs:>17} {padded_length:>8.1f} {tokens:>7.1f}"
                f" {gflops[name]:>8.1f} {fraction}"
            )
        print(
            f"FLOPs per example: {FLOPS_FORMULA}, T = padded tokens the model computed; encoder"
            f" N = {shape.layer_parameters / 1e6:.2f}M, {shape.layers} layers, d = {shape.hidden_size}"
        )
        report["flops_formula"] = FLOPS_FORMULA
        report["tokens_counted"] = "padded (what the model computed)"
        report["encoder_parameters"] = shape.layer_parameters
    if "padding" in comparisons:
        ratio = median[OURS] / median[RUN_GLUE]
        checks["padding"] = ratio >= args.target
        print(f"ratio ours / run_glue.py defaults: {ratio:.2f}x (target >= {args.target:g}x)")
        report["padding"] = {
            "ours_examples_per_s": round(median[OURS], 2),
            "run_glue_examples_per_s": round(median[RUN_GLUE], 2),
            "ratio": round(ratio, 3),
            "target": args.target,
            "pass": checks["padding"],
        }
    if "precision" in comparisons:
        ratio = median[BF16] / median[OURS]
        print(f"ratio bf16 / fp32 training examples/s: {ratio:.2f}x")
        report["precision"] = {
            "fp32_examples_per_s": round(median[OURS], 2),
            "bf16_examples_per_s": round(median[BF16], 2),
            "bf16_over_fp32": round(ratio, 3),
            "fp32_train_gflops": round(gflops[OURS], 1),
            "bf16_train_gflops": round(gflops[BF16], 1),
        }
        if matmul_rate:
            fraction = gflops[BF16] / matmul_rate["bf16"]
            checks["bf16_fraction"] = fraction >= args.fraction_target
            print(
                f"bf16 training reaches {fraction:.0%} of the bf16 matmul rate (target >="
                f" {args.fraction_target:.0%}); fp32 training {gflops[OURS] / matmul_rate['fp32']:.0%}"
                " of the fp32 rate"
            )
            report["precision"].update(
                bf16_fraction_of_bf16_matmul=round(fraction, 3),
                fp32_fraction_of_fp32_matmul=round(gflops[OURS] / matmul_rate["fp32"], 3),
                fraction_target=args.fraction_target,
            )
            report["precision"]["pass"] = checks["bf16_fraction"]
    if matmul_rate:
        print(
            f"matmul {args.matmul_n}x{args.matmul_n}, {args.threads} threads: fp32"
            f" {matmul_rate['fp32']:.1f}, bf16 {matmul_rate['bf16']:.1f} GFLOP/s"
            f" ({matmul_rate['bf16'] / matmul_rate['fp32']:.2f}x)"
        )
    passed = all(checks.values())
    report["pass"] = passed
    print(json.dumps(report))
    sys.exit(0 if passed or args.no_check else 1)


if __name__ == "__main__":
    main()
