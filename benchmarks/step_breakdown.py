"""Where a training step's time goes, outside the Trainer: bare steps of one encoder in fp32 and in bf16
autocast, each with the model's dropout and with dropout off.

    python benchmarks/step_breakdown.py [--model minilm-l6] [--batch-size 32] [--length 42] [--threads 2]
        [--rounds 8] [--steps 5] [--matmul-n 2048] [--profile]

A bare step is the forward (under torch.autocast(bfloat16) for bf16, on fp32 weights), the backward and
a fused AdamW step on one fixed batch of random token ids, every position attended (no padding). It is
what `benchmarks/throughput.py`'s training would cost without the Trainer, data loading, gradient
clipping and varying batch lengths, so the two scripts' fractions of the matmul rate, side by side, say
how much of the gap to that rate is the step itself. The four configurations run in one process,
interleaved (forwards, then backwards, round after round; --steps steps each per round), and each
reports its median seconds per step; GFLOP/s use throughput.py's FLOPs estimate for one batch, and the
fractions are of the bf16 and fp32 `torch.matmul` rates measured in the same process. --profile adds a
`torch.profiler` table of three bf16 steps with dropout, by self CPU time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from throughput import (
    EncoderShape,
    TokenCounts,
    interleaved,
    matmul_gflops,
    model_encoder_shape,
    training_flops,
)

CONFIGS: dict[str, tuple[str, bool]] = {  # name: (precision, dropout on)
    "fp32, dropout": ("fp32", True),
    "bf16, dropout": ("bf16", True),
    "fp32, no dropout": ("fp32", False),
    "bf16, no dropout": ("bf16", False),
}


def batch_flops(batch_size: int, length: int, shape: EncoderShape) -> float:
    """Training FLOPs of one batch of `batch_size` examples, all `length` tokens long."""
    tokens = batch_size * length
    counts = TokenCounts(
        examples=batch_size, real=tokens, padded=tokens, padded_squared=batch_size * length**2
    )
    return training_flops(counts, shape)


def without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with every nn.Dropout at p = 0 (BERT's attention passes its dropout module's p to SDPA)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


class BareTrainer:
    """One model, its optimizer and a fixed batch; `step()` is one forward, backward and AdamW step."""

    def __init__(self, model: torch.nn.Module, precision: str, batch: dict[str, torch.Tensor]) -> None:
        self.model, self.precision, self.batch = model.train(), precision, batch
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)

    def step(self) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            loss = self.model(**self.batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=42, help="tokens per example (SST-2's mean padded: 42)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration and round")
    parser.add_argument("--matmul-n", type=int, default=2048)
    parser.add_argument("--profile", action="store_true", help="print a profile of the bf16 step")
    args = parser.parse_args()

    from robustft.models import load_sequence_classifier

    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(1000, 20000, (args.batch_size, args.length), generator=generator),
        "attention_mask": torch.ones(args.batch_size, args.length, dtype=torch.long),
        "labels": torch.randint(0, 2, (args.batch_size,), generator=generator),
    }
    trainers: dict[str, BareTrainer] = {}
    for name, (precision, dropout) in CONFIGS.items():
        torch.manual_seed(0)
        model = load_sequence_classifier(args.model, num_labels=2)
        trainers[name] = BareTrainer(model if dropout else without_dropout(model), precision, batch)
    flops = batch_flops(args.batch_size, args.length, model_encoder_shape(model, args.model))
    rates = {
        "fp32": matmul_gflops(args.matmul_n, torch.float32, 5),
        "bf16": matmul_gflops(args.matmul_n, torch.bfloat16, 5),
    }

    for trainer in trainers.values():  # warm-up: thread pool, oneDNN kernel choice, optimizer state
        trainer.step()
        trainer.step()
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    for round_ in range(args.rounds):
        for name in interleaved(list(trainers), round_):
            start = time.perf_counter()
            for _ in range(args.steps):
                trainers[name].step()
            seconds[name].append((time.perf_counter() - start) / args.steps)

    print(
        f"{args.model}: bare steps of {args.batch_size} x {args.length} tokens, {args.threads} threads, "
        f"median of {args.rounds} rounds of {args.steps} steps; {flops / 1e9:.1f} GFLOP a step"
    )
    print(
        f"matmul {args.matmul_n}², {args.threads} threads: "
        f"fp32 {rates['fp32']:.1f}, bf16 {rates['bf16']:.1f} GFLOP/s"
    )
    print(f"{'configuration':<18}{'s/step':>8}{'GFLOP/s':>9}  fraction of the same dtype's matmul rate")
    for name, (precision, _) in CONFIGS.items():
        median = statistics.median(seconds[name])
        rate = flops / median / 1e9
        print(f"{name:<18}{median:>8.3f}{rate:>9.1f}  {rate / rates[precision]:.0%}")
    if args.profile:
        print_profile(trainers["bf16, dropout"])


def print_profile(trainer: BareTrainer, steps: int = 3) -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as recorded:
        for _ in range(steps):
            trainer.step()
    print(recorded.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
