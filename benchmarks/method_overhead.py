"""Cost of each method: training-step time against plain fine-tuning, on MiniLM-L6, in one process.

    python benchmarks/method_overhead.py [--task mrpc] [--batch 32] [--steps 8] [--reps 3] [--threads 2]
        [--methods finetune smart smart_no_breg ...]    # presets come from the shipped configs

Every method trains the same real model on the same real batches through robustft's RobustTrainer
(forward, extra loss terms, backward, optimizer step, post-step hooks). Methods are interleaved step by
step, so load from other jobs falls on all of them alike; the ratio of median step times to `finetune`
is the result.
NoisyTune costs nothing per step; its one-off perturbation is timed on a 110M-parameter BERT-base.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
from transformers import BertConfig, BertForSequenceClassification, DataCollatorWithPadding, TrainingArguments

from robustft.data.glue import load_split
from robustft.methods import COMPONENTS, RunContext, build_method
from robustft.models import load_sequence_classifier_with_info, load_tokenizer
from robustft.train.trainer import RobustTrainer
from robustft.workflow_config import load_config

TARGETS = {"neftune": 1.05, "r3f": 2.1, "smart": 2.5}  # docs/benchmarks.md's targets: step time / finetune
NOISYTUNE_TARGET_S = 2.0


def batches(task: str, data_dir: str, batch_size: int, count: int) -> list[dict[str, torch.Tensor]]:
    tokenizer = load_tokenizer("minilm-l6")
    split = load_split(task, "train", data_dir)
    collate = DataCollatorWithPadding(tokenizer)
    out = []
    for start in range(0, batch_size * count, batch_size):
        texts = [column[start : start + batch_size] for column in split.texts]
        encoded = tokenizer(*texts, truncation=True, max_length=128)
        features = [{k: v[i] for k, v in encoded.items()} for i in range(batch_size)]
        batch = collate(features)
        batch["labels"] = torch.tensor(split.labels[start : start + batch_size])
        out.append(batch)
    return out


class Arm:
    """One method, ready to take training steps."""

    def __init__(
        self, method_name: str, num_labels: int, components: dict | None = None, seed: int = 0
    ) -> None:
        torch.manual_seed(seed)
        model, new = load_sequence_classifier_with_info("minilm-l6", num_labels)
        self.method = build_method(method_name, components)
        self.context = RunContext(seed=seed, new_parameter_names=frozenset(new), max_steps=1000)
        self.method.prepare_model(model, self.context)
        args = TrainingArguments(output_dir="/tmp/robustft-overhead", report_to="none", learning_rate=2e-5)
        self.trainer = RobustTrainer(model=model, args=args, method=self.method, context=self.context)
        self.trainer.create_optimizer()
        self.trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(), which we bypass
        self.handle = self.trainer._attach_embedding_noise()
        self.model = model

    def step(self, batch: dict[str, torch.Tensor]) -> None:
        self.trainer.training_step(self.model, batch)
        self.trainer.optimizer.step()
        self.trainer.optimizer.zero_grad()
        self.context.step += 1
        for component in self.method.components:
            component.after_optimizer_step(self.model, self.context)


def noisytune_one_off_seconds() -> float:
    model = BertForSequenceClassification(BertConfig())  # BERT-base shape: 110M parameters
    parameters = sum(p.numel() for p in model.parameters())
    method = build_method("noisytune")
    start = time.perf_counter()
    method.prepare_model(model, RunContext(seed=0))
    elapsed = time.perf_counter() - start
    print(f"noisytune one-off on a {parameters / 1e6:.0f}M-parameter BERT-base: {elapsed:.2f} s")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="mrpc")
    parser.add_argument("--data-dir", default="resources/data")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="distinct batches per round")
    parser.add_argument("--reps", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--methods",
        nargs="*",
        default=None,
        help="components, combinations (a+b) or presets of --presets; default: finetune + every component",
    )
    parser.add_argument(
        "--presets",
        nargs="*",
        default=["config/methods.yaml", "config/smart-cpu.yaml", "config/noisytune-cpu.yaml"],
        help="workflow configs whose `methods` name presets (the first to name one wins)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    presets: dict = {}
    for config_path in reversed(args.presets):  # reversed: the first config to name a preset wins
        if Path(config_path).exists():
            presets.update(load_config(Path(config_path))["methods"])
    names = args.methods or ["finetune", *sorted(COMPONENTS)]
    if "finetune" not in names:
        names = ["finetune", *names]  # the baseline of every ratio
    data = batches(args.task, args.data_dir, args.batch, args.steps)
    num_labels = 1 if args.task == "stsb" else 3 if args.task == "mnli" else 2
    arms = {name: Arm(name, num_labels, presets.get(name)) for name in names}
    for arm in arms.values():  # warm-up: allocator, first-call kernel selection
        arm.step(data[0])
    times: dict[str, list[float]] = {name: [] for name in names}
    # Interleaved step by step (not method by method), so a burst of load from other processes falls on
    # every method alike; the median step then shrugs off the bursts.
    for _ in range(args.reps):
        for batch in data:
            for name, arm in arms.items():
                start = time.perf_counter()
                arm.step(batch)
                times[name].append(time.perf_counter() - start)

    base = statistics.median(times["finetune"])
    print(f"\n{'method':<12} {'ms/step':>9} {'ratio':>7} {'target':>7}")
    results = {}
    for name in names:
        step = statistics.median(times[name])
        target = TARGETS.get(name)
        results[name] = {
            "ms_per_step": round(1000 * step, 1),
            "ratio": round(step / base, 3),
            "target": target,
        }
        print(f"{name:<12} {1000 * step:>9.1f} {step / base:>7.2f} {target or '':>7}")
    one_off = noisytune_one_off_seconds()
    results["noisytune_one_off_s"] = {"seconds": round(one_off, 2), "target": NOISYTUNE_TARGET_S}
    print(json.dumps({"task": args.task, "batch": args.batch, "threads": args.threads, "results": results}))


if __name__ == "__main__":
    main()
