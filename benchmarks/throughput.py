"""Training throughput: our fine-tuning (dynamic padding) vs. transformers' run_glue.py defaults.

    python benchmarks/throughput.py [--task sst2] [--samples 256] [--reps 2] [--threads 2] [--no-check]

Both configurations are robustft's own `train_run` on the same model, task, data subset and
hyperparameters; they differ only in padding. run_glue.py pads every example to max_seq_length (128)
by default; we tokenise without padding and let DataCollatorWithPadding pad each batch to its longest
example. Both run in this one process, interleaved A B B A ..., so load from other jobs on a shared
machine falls on both alike, and the ratio is the result. Exit status 1 when the ratio is below
--target (unless --no-check).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

# Before transformers is imported: progress bars would bury the table in the log.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np

from robustft.train.config import RunSpec, TrainConfig

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "robustft (dynamic padding)": False,
    "run_glue.py defaults (pad to 128)": True,
}


def train_seconds(run_dir: Path, metrics: dict[str, Any]) -> float:
    """Seconds spent training, without evaluation.

    Trainer's train_runtime (and so train_samples_per_second) spans the whole training loop, which with
    eval_strategy="epoch" includes evaluating the dev set. Evaluation is not what we compare, and its
    cost differs between the configs in its own way (eval batches are padded too), so we subtract every
    eval_*_runtime that history.jsonl logged, the same way for both configurations.
    """
    eval_seconds = 0.0
    for line in (run_dir / "history.jsonl").read_text().splitlines():
        record = json.loads(line)
        eval_seconds += sum(v for k, v in record.items() if k.startswith("eval_") and k.endswith("_runtime"))
    return metrics["train_runtime_s"] - eval_seconds


def run_once(spec: RunSpec) -> tuple[float, float]:
    """One training run in a scratch directory: (train examples per second, HF's samples/s)."""
    from robustft.train.classification import train_run

    # Trainer prints its logs to stdout; send them to stderr so stdout is just the table and the JSON.
    with (
        tempfile.TemporaryDirectory(prefix="robustft-throughput-") as tmp,
        contextlib.redirect_stdout(sys.stderr),
    ):
        metrics = train_run(spec, tmp)
        if metrics["status"] != "ok":
            raise RuntimeError(f"benchmark run ended with status {metrics['status']!r}")
        examples = metrics["n_train"] * spec.train.epochs
        return examples / train_seconds(Path(tmp), metrics), metrics["train_samples_per_second"]


def mean_padded_length(spec: RunSpec, shuffles: int = 20) -> float:
    """Mean padded length of a training batch: its longest example, averaged over random batchings.

    Uses train_run's own subsampling and tokenisation, so the lengths are those the Trainer sees; the
    batch order is the Trainer's random sampler's business, hence the average over shuffles.
    """
    from robustft.data import get_task
    from robustft.data.glue import load_split
    from robustft.models import load_tokenizer
    from robustft.train.classification import _subsample, _tokenize

    config = spec.train
    split = load_split(spec.task, "train", spec.data_dir, spec.cache_dir)
    split = _subsample(split, config.max_train_samples, config.data_seed)
    tokenizer = load_tokenizer(spec.model, cache_dir=spec.cache_dir)
    dataset = _tokenize(split, tokenizer, config, get_task(spec.task).is_regression)
    lengths = np.array([len(ids) for ids in dataset["input_ids"]])
    rng = np.random.default_rng(0)
    batch_max = [
        chunk.max()
        for _ in range(shuffles)
        for chunk in np.array_split(rng.permutation(lengths), np.ceil(len(lengths) / config.batch_size))
    ]
    return float(np.mean(batch_max))


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
    parser.add_argument("--target", type=float, default=1.5, help="minimum ratio ours / run_glue.py")
    parser.add_argument("--no-check", action="store_true", help="report only, exit 0 below target")
    args = parser.parse_args()

    import torch

    # Trainer asks for pinned memory, which means nothing on a CPU-only machine.
    warnings.filterwarnings("ignore", message=".*pin_memory.*")

    # Fixed, so the result does not depend on how many cores torch happens to detect on a shared host.
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
    specs = {
        name: replace(base, train=replace(base.train, pad_to_max_length=pad)) for name, pad in CONFIGS.items()
    }

    if args.warmup_samples:
        # The first run in a process pays one-off costs (lazy imports, kernel set-up); keep them out.
        for spec in specs.values():
            run_once(replace(spec, train=replace(spec.train, max_train_samples=args.warmup_samples)))

    names = list(specs)
    results: dict[str, list[float]] = {name: [] for name in names}
    hf_results: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(args.reps):
        # A B, then B A: neither configuration always runs first, so drift in load cancels out.
        for name in names if rep % 2 == 0 else names[::-1]:
            ours, hf = run_once(specs[name])
            results[name].append(ours)
            hf_results[name].append(hf)
            print(f"rep {rep + 1} {name}: {ours:.1f} train examples/s", file=sys.stderr, flush=True)

    print(
        f"\n{args.model} on {args.task}: {args.samples} examples x {args.epochs:g} epoch(s), batch"
        f" {args.batch_size}, {args.threads} threads, {args.reps} reps each (median)"
    )
    print(f"{'configuration':<35} {'examples/s':>10} {'runs':>17} {'HF incl. eval':>13} {'pad len':>8}")
    median = {}
    for name in names:
        median[name] = statistics.median(results[name])
        runs = ", ".join(f"{v:.1f}" for v in results[name])
        hf = statistics.median(hf_results[name])
        padded = mean_padded_length(specs[name])
        print(f"{name:<35} {median[name]:>10.1f} {runs:>17} {hf:>13.1f} {padded:>8.1f}")
    ours, theirs = (median[name] for name in names)
    ratio = ours / theirs
    passed = ratio >= args.target
    print(f"ratio ours / run_glue.py defaults: {ratio:.2f}x (target >= {args.target:g}x)")
    print(
        json.dumps(
            {
                "task": args.task,
                "ours_examples_per_s": round(ours, 2),
                "run_glue_examples_per_s": round(theirs, 2),
                "ratio": round(ratio, 3),
                "target": args.target,
                "pass": passed,
            }
        )
    )
    sys.exit(0 if passed or args.no_check else 1)


if __name__ == "__main__":
    main()
