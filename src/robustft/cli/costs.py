"""What a launch will cost: `robustft gpu-check` measures a node, `robustft estimate` prices a config, and
`robustft resource-usage` sets what finished jobs used against what the workflow profile requests."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robustft.cli.arguments import positive_int


def cmd_gpu_check(args: argparse.Namespace) -> int:
    from robustft.gpu_check import format_check, run_check, write_check

    report = run_check()
    write_check(report, args.out)
    print(format_check(report))
    print(f"report -> {args.out}")
    return 0 if report["passed"] else 1


def cmd_estimate(args: argparse.Namespace) -> int:
    from robustft.estimate import estimate, estimate_json, format_estimate
    from robustft.workflow_config import load_config

    config = load_config(Path(args.configfile))
    result = estimate(config, gpus=args.gpus, check=args.check, config_name=args.configfile)
    print(json.dumps(estimate_json(result), indent=2) if args.json else format_estimate(result))
    return 0


def cmd_resource_usage(args: argparse.Namespace) -> int:
    from robustft.resource_usage import format_usage, profile_requests, read_benchmarks, usage_table

    table = usage_table(read_benchmarks(Path(args.benchmarks)), profile_requests(Path(args.profile)))
    print(format_usage(table))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
        print(f"table -> {args.out}")
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:
    check = commands.add_parser(
        "gpu-check",
        help="measure this node's training throughput, MFU and memory on the workflow's paths (GPU, else a "
        "reduced CPU mode)",
        description="Trains MiniLM-L6 and a BERT-base-shaped classifier (bf16, fp16, fp32), a SmolLM2-135M "
        "SFT step, QLoRA and two-GPU FSDP where possible, for a fixed number of timed steps; prints a table "
        "and writes the same as JSON (robustft estimate --check reads it). Without a GPU it runs a reduced "
        "CPU mode. Exit status 1 when a path failed.",
    )
    check.add_argument("--out", default="results/gpu-check.json", help="JSON report (default: %(default)s)")
    check.set_defaults(func=cmd_gpu_check)

    estimate = commands.add_parser(
        "estimate",
        help="jobs, GPU-hours and wall time of a workflow config, per rule and in total",
        description="Prices every job `snakemake -n -F --configfile F` would schedule: examples x epochs x "
        "method passes / throughput, plus start-up, evaluation and checkpoint writes. Throughput comes from "
        "a gpu-check report (--check) where it has the path, else from the package's table of assumed rates.",
    )
    estimate.add_argument(
        "--configfile", required=True, help="the workflow config, e.g. config/noisytune.yaml"
    )
    estimate.add_argument("--gpus", type=positive_int, default=1, help="GPUs the run has (default 1)")
    estimate.add_argument("--check", help="a `robustft gpu-check` JSON report, e.g. results/gpu-check.json")
    estimate.add_argument("--json", action="store_true", help="print the estimate as JSON")
    estimate.set_defaults(func=cmd_estimate)

    usage = commands.add_parser(
        "resource-usage",
        help="finished jobs' peak memory and wall time (benchmark files) against the profile's requests",
        description="Reads every job's Snakemake benchmark file (results/benchmarks/<rule>/...tsv) and "
        "prints, per rule, the jobs' peak and median memory against the workflow profile's mem_mb, and "
        "the longest wall time against its runtime (attempt 1): 'over' means a first attempt is killed, "
        "'generous' that every job used under a quarter of the request.",
    )
    usage.add_argument("--benchmarks", default="results/benchmarks", help="default: %(default)s")
    usage.add_argument("--profile", default="profiles/default/config.yaml", help="default: %(default)s")
    usage.add_argument("--out", help="also write the table as CSV here")
    usage.set_defaults(func=cmd_resource_usage)
