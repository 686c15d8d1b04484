"""The workflow's own subcommands: fetch what offline nodes need, launch a subcommand on several GPUs,
check a config, document the config's keys, and publish a finished grid as a finding."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robustft.cli.arguments import non_negative_int
from robustft.errors import RunError


def cmd_prefetch(args: argparse.Namespace) -> int:
    from robustft.prefetch import prefetch

    xtreme_runs = []
    for item in args.xtreme:
        parts = item.split(":")
        if len(parts) != 4:
            raise RunError(f"--xtreme {item!r}: expected TASK:SETTING:EVAL_SPLIT:TRAIN_SPLIT")
        xtreme_runs.append(tuple(parts))
    prefetch(
        args.models,
        args.tasks,
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
        marker=args.marker,
        xtreme_runs=xtreme_runs,
    )
    return 0


def cmd_launch(args: argparse.Namespace) -> int:
    from robustft.launch import exec_launch

    command = args.subcommand[1:] if args.subcommand[:1] == ["--"] else args.subcommand
    if not command:
        raise RunError("launch: give the robustft subcommand to run after `--`, e.g. -- train --model ...")
    exec_launch(args.gpus, command)  # replaces this process; returns only if exec itself fails
    return 1


def cmd_check_config(args: argparse.Namespace) -> int:
    from robustft.workflow_config import load_config

    config = load_config(Path(args.config))
    if args.jobs:
        from robustft.workflow_config import training_jobs

        for job in training_jobs(config):
            print(json.dumps(job, sort_keys=True))
        return 0
    print(json.dumps(config, indent=2, sort_keys=True))
    return 0


def cmd_config_docs(args: argparse.Namespace) -> int:
    from robustft.io import write_text_atomic
    from robustft.schema import config_reference

    text = config_reference()
    if args.out is None:
        print(text, end="")
    else:
        write_text_atomic(args.out, text)
    return 0


def cmd_publish_finding(args: argparse.Namespace) -> int:
    from robustft.findings import publish_finding

    out = publish_finding(Path(args.config), Path(args.out), args.command_line, args.readme)
    print(f"finding -> {out}/ (README.md, verdicts.csv, provenance.json, report.pdf, tables)")
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:
    prefetch = commands.add_parser("prefetch", help="download models and Hub datasets for offline nodes")
    prefetch.add_argument("--models", nargs="*", default=[])
    prefetch.add_argument("--tasks", nargs="*", default=[])
    prefetch.add_argument("--data-dir", default="resources/data")
    prefetch.add_argument("--cache-dir", default="resources/hf")
    prefetch.add_argument("--marker", default=None, help="JSON file listing what was fetched")
    prefetch.add_argument(
        "--xtreme",
        nargs="*",
        default=[],
        help="XTREME data as TASK:SETTING:EVAL_SPLIT:TRAIN_SPLIT, e.g. xnli:zero-shot:test:train",
    )
    prefetch.set_defaults(func=cmd_prefetch)

    launch = commands.add_parser(
        "launch",
        help="run a subcommand on N GPUs of this machine (N > 1: accelerate launch with FSDP)",
        description="robustft launch --gpus N -- train --model ... : 0 or 1 GPU runs the subcommand "
        "directly; more starts one process per GPU with `accelerate launch --use_fsdp`.",
    )
    launch.add_argument(
        "--gpus", type=non_negative_int, default=0, help="GPUs allocated to this job (default 0)"
    )
    launch.add_argument("subcommand", nargs=argparse.REMAINDER, help="-- SUBCOMMAND [ARGS...]")
    launch.set_defaults(func=cmd_launch)

    check = commands.add_parser("check-config", help="validate a workflow config and print it with defaults")
    check.add_argument("config")
    check.add_argument(
        "--jobs",
        action="store_true",
        help="print each training job (run directory, method components, settings) as one JSON line, "
        "exactly as the workflow schedules it",
    )
    check.set_defaults(func=cmd_check_config)

    docs = commands.add_parser(
        "config-docs", help="every workflow config key with its type, default and description (Markdown)"
    )
    docs.add_argument("--out", type=Path, help="write it here (config/README.md) instead of printing it")
    docs.set_defaults(func=cmd_config_docs)

    publish = commands.add_parser(
        "publish-finding",
        help="freeze a finished config's GLUE grid into a findings/ folder, with verdicts and provenance",
    )
    publish.set_defaults(func=cmd_publish_finding)
    publish.add_argument("--config", required=True, help="the workflow config that made the runs")
    publish.add_argument("--out", required=True, help="the finding folder, e.g. findings/cpu-replication")
    publish.add_argument(
        "--command",
        dest="command_line",
        required=True,
        help="the one command that remakes the finding, named in its README, e.g. 'make replicate'",
    )
    publish.add_argument("--readme", type=Path, help="a README whose quote block of this finding to rewrite")
