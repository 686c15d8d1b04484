"""`robustft` command line: every Snakemake rule calls one of these subcommands, and so can a person."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger("robustft")


WORKFLOW_CONFIG_HELP = (
    "the resolved workflow config (JSON): the report then checks that its tables hold exactly its runs"
)


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def cmd_train(args: argparse.Namespace) -> int:
    from robustft.train.config import RunError, RunSpec, TrainConfig

    if not isinstance(args.train_config or {}, dict):
        raise RunError(f"--train-config must be a JSON object, got {args.train_config!r}")
    train_settings = dict(args.train_config or {})
    unknown = sorted(set(train_settings) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise RunError(f"--train-config has unknown key(s) {unknown}")
    for flag in ("max_train_samples", "max_eval_samples", "epochs"):
        if getattr(args, flag) is not None:
            train_settings[flag] = getattr(args, flag)
    spec = RunSpec(
        model=args.model,
        task=args.task,
        method=args.method,
        seed=args.seed,
        train=TrainConfig(**train_settings),
        components=args.method_components,
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
    )
    spec.validate()  # names and settings fail here, before torch is even imported
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from robustft.train.classification import train_run

    result = train_run(spec, args.out)
    print(json.dumps({k: result[k] for k in ("status", "primary_metric", "metrics")}, indent=2))
    return 0 if result["status"] in ("ok", "diverged") else 1


def cmd_aggregate(args: argparse.Namespace) -> int:
    from robustft import tables

    metrics = args.metrics or None
    run_dirs: list[str] | None = None
    if args.workflow_config is not None:  # the workflow: exactly the runs its config asks for
        from robustft.workflow_config import expected_run_dirs

        run_dirs = expected_run_dirs(args.workflow_config)["runs"]
        metrics = [f"{run_dir}/metrics.json" for run_dir in run_dirs]
    runs = tables.collect_runs(Path(args.runs), metrics_paths=metrics)
    summary = tables.summarize(runs)
    comparisons = tables.compare(runs, baseline=args.baseline)
    tables.write_tables(runs, summary, comparisons, Path(args.out))
    tables.write_curves(tables.collect_curves(runs), Path(args.out))  # the report's learning curves
    if run_dirs is not None:
        from robustft.provenance import write_grid_manifest

        write_grid_manifest(args.out, "runs", run_dirs)
    print(f"{len(runs)} runs -> {args.out}/runs.csv, summary.csv, comparisons.csv (+ .tex), curves.csv")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from robustft.provenance import summarize_runs
    from robustft.report import ReportSpec, build_report

    spec_dict = dict(args.spec)
    tables = Path(args.tables)
    _check_tables_of_config(tables, args.workflow_config, ("runs", "xtreme"))
    # The GLUE track's runs.csv and/or the XTREME track's xtreme.csv (one row per language: the run
    # directories repeat, summarize_runs reads each once).
    provenance: dict[str, str] = {}
    for table, prefix in (("runs.csv", ""), ("xtreme.csv", "XTREME runs: ")):
        if (tables / table).exists():
            summary = summarize_runs(tables, args.config_hash, table=table)
            if provenance:
                summary = {
                    prefix + k: v for k, v in summary.items() if k not in provenance or provenance[k] != v
                }
            provenance.update(summary)
    spec_dict["provenance"] = provenance
    build_report(
        Path(args.tables),
        Path(args.out),
        ReportSpec.from_dict(spec_dict),
        figures_dir=Path(args.figures),
        artifact_dirs=[Path(directory) for directory in args.artifacts],
    )
    print(f"report -> {args.out}")
    return 0


def cmd_artifact(args: argparse.Namespace) -> int:
    import pandas as pd

    from robustft.artifacts import ArtifactContext, get_artifact, write_result

    artifact = get_artifact(args.artifact)
    from robustft.stats import MIN_PAIRED_SEEDS

    context = ArtifactContext(
        paper_model=dict(args.paper_model or {}),
        extra=dict(args.context or {}),
        min_seeds=args.min_seeds or MIN_PAIRED_SEEDS,
    )
    result = artifact.build(pd.read_csv(Path(args.tables) / f"{artifact.table}.csv"), context)
    record = write_result(result, Path(args.out))
    print(f"{artifact.key}: {record['status']} {record['reason']}".rstrip() + f" -> {args.out}")
    return 0


def cmd_collect_instruct(args: argparse.Namespace) -> int:
    from robustft.instruct_tables import collect_instruct
    from robustft.io import write_text_atomic

    frame = collect_instruct([Path(p) for p in args.run_dirs])
    write_text_atomic(args.out, frame.to_csv(index=False))
    from robustft.provenance import write_grid_manifest

    write_grid_manifest(Path(args.out).parent, "instruct", list(args.run_dirs))
    runs = frame[["model", "dataset", "recipe", "method", "seed"]].drop_duplicates()
    print(f"{len(runs)} runs -> {args.out}")
    return 0


def _check_tables_of_config(
    tables: Path, workflow_config: dict[str, Any] | None, names: tuple[str, ...]
) -> None:
    """With --workflow-config (the workflow passes it), each table the report reads must hold exactly the
    runs that config asks for; by hand, without it, the tables are taken as they are."""
    if workflow_config is None:
        return
    from robustft.provenance import check_table_runs
    from robustft.workflow_config import expected_run_dirs

    expected = expected_run_dirs(workflow_config)
    for name in names:
        if (tables / f"{name}.csv").exists():
            check_table_runs(tables / f"{name}.csv", expected[name])


def cmd_instruct_report(args: argparse.Namespace) -> int:
    from robustft.instruct_report import InstructReportSpec, build_instruct_report
    from robustft.provenance import summarize_runs

    _check_tables_of_config(Path(args.table).parent, args.workflow_config, ("instruct",))

    spec = InstructReportSpec.from_dict(
        {
            **args.spec,
            "provenance": summarize_runs(
                Path(args.table).parent,
                args.config_hash,
                table=Path(args.table).name,
                run_json="sft/run.json",
            ),
        }
    )
    build_instruct_report(
        Path(args.table),
        Path(args.out),
        spec,
        figures_dir=Path(args.figures),
        artifact_dirs=[Path(directory) for directory in args.artifacts],
    )
    print(f"report -> {args.out}")
    return 0


def cmd_prefetch(args: argparse.Namespace) -> int:
    from robustft.prefetch import prefetch
    from robustft.train.config import RunError

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
    from robustft.train.config import RunError

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


# The instruction-tuning track's subcommands live next to their code: each module has
# `add_parser(commands)` and imports nothing heavy at module level (the CLI must start fast).
TRACK_COMMAND_MODULES: tuple[str, ...] = (
    "robustft.evals.leaderboard",
    "robustft.evals.generation",
    "robustft.evals.judges",
    "robustft.evals.text_stats",
    "robustft.train.sft",
    "robustft.train.xtreme",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustft", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="fine-tune one model on one task with one method and seed")
    train.add_argument("--model", required=True, help="registry name, e.g. minilm-l6, bert-base")
    train.add_argument("--task", required=True, help="task key, e.g. rte, mrpc, stsb")
    train.add_argument("--method", required=True, help="method name: finetune, noisytune, or a+b")
    train.add_argument("--seed", required=True, type=int)
    train.add_argument("--out", required=True, type=Path, help="run directory to write")
    train.add_argument("--data-dir", default="resources/data")
    train.add_argument("--cache-dir", default=None, help="Hugging Face cache (models and Hub datasets)")
    train.add_argument("--max-train-samples", type=_positive_int)
    train.add_argument("--max-eval-samples", type=_positive_int)
    train.add_argument("--epochs", type=float)
    train.add_argument("--train-config", type=_json_arg, help="JSON object of train settings")
    train.add_argument(
        "--method-components", type=_json_arg, help='JSON, e.g. {"noisytune": {"noise_lambda": 0.1}}'
    )
    train.add_argument("--threads", type=_positive_int, help="torch CPU threads")
    train.set_defaults(func=cmd_train)

    aggregate = commands.add_parser("aggregate", help="collect runs into CSV/LaTeX tables with statistics")
    aggregate.add_argument("--runs", default="results/runs")
    aggregate.add_argument("--out", required=True, help="tables directory, e.g. results/tables/<config name>")
    aggregate.add_argument("--baseline", default="finetune")
    aggregate.add_argument(
        "--workflow-config",
        type=_json_arg,
        help="the resolved workflow config (JSON): read exactly the runs it asks for",
    )
    aggregate.add_argument("metrics", nargs="*", help="metrics.json files to include (default: all found)")
    aggregate.set_defaults(func=cmd_aggregate)

    report = commands.add_parser("report", help="write the PDF report from the tables")
    report.add_argument("--tables", required=True, help="tables directory, e.g. results/tables/<config name>")
    report.add_argument(
        "--spec", type=_json_arg, required=True, help="JSON report spec (config's report block)"
    )
    report.add_argument("--config-hash", default="unknown")
    report.add_argument("--workflow-config", type=_json_arg, help=WORKFLOW_CONFIG_HELP)
    report.add_argument("--figures", default="figures")
    report.add_argument("--out", required=True)
    report.add_argument("--artifacts", nargs="*", default=[], help="artifact result directories to append")
    report.set_defaults(func=cmd_report)

    artifact = commands.add_parser("artifact", help="regenerate one paper table or figure from runs.csv")
    artifact.add_argument("--artifact", required=True, help="e.g. noisytune/table2")
    artifact.add_argument(
        "--tables", required=True, help="tables directory, e.g. results/tables/<config name>"
    )
    artifact.add_argument("--paper-model", type=_json_arg, default={}, help="JSON: our model -> paper model")
    artifact.add_argument(
        "--context",
        type=_json_arg,
        default={},
        help="JSON: track naming (judge, baseline, paper_dataset, ...)",
    )
    artifact.add_argument(
        "--min-seeds",
        type=_positive_int,
        default=None,
        help="fewer paired seeds than this: verdict 'too few seeds' (default 3: stats.MIN_PAIRED_SEEDS)",
    )
    artifact.add_argument(
        "--out", required=True, help="directory for claims.csv/.tex, figure.svg, result.json"
    )
    artifact.set_defaults(func=cmd_artifact)

    collect = commands.add_parser("collect-instruct", help="instruction-tuning runs -> instruct.csv")
    collect.add_argument("--out", required=True, type=Path)
    collect.add_argument("run_dirs", nargs="+", help="run directories results/instruct/<model>/.../seed<S>")
    collect.set_defaults(func=cmd_collect_instruct)

    instruct_report = commands.add_parser("instruct-report", help="the instruction-tuning track's PDF")
    instruct_report.add_argument("--table", required=True, help="instruct.csv")
    instruct_report.add_argument(
        "--spec", type=_json_arg, required=True, help="JSON (config's instruct.report)"
    )
    instruct_report.add_argument("--config-hash", default="unknown")
    instruct_report.add_argument("--workflow-config", type=_json_arg, help=WORKFLOW_CONFIG_HELP)
    instruct_report.add_argument("--figures", required=True)
    instruct_report.add_argument("--out", required=True)
    instruct_report.add_argument("--artifacts", nargs="*", default=[])
    instruct_report.set_defaults(func=cmd_instruct_report)

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
        "--gpus", type=_non_negative_int, default=0, help="GPUs allocated to this job (default 0)"
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

    for module in TRACK_COMMAND_MODULES:
        importlib.import_module(module).add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    from robustft.data import DataFormatError, DataNotFoundError
    from robustft.errors import TableMismatchError
    from robustft.methods import MethodConfigError
    from robustft.models import ModelNotFoundError
    from robustft.train.config import RunError
    from robustft.workflow_config import ConfigError

    expected = (
        KeyError,
        DataFormatError,
        DataNotFoundError,
        ModelNotFoundError,
        MethodConfigError,
        RunError,
        ConfigError,
        TableMismatchError,
    )
    try:
        return args.func(args)
    except expected as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"robustft {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
