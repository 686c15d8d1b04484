"""The GLUE track's subcommands: train one run, aggregate runs into tables, write the report, and
regenerate one paper artifact. Each command imports the code it runs when it runs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from robustft.cli.arguments import (
    HF_CACHE_HELP,
    MODEL_HELP,
    TABLES_DIR_HELP,
    THREADS_HELP,
    WORKFLOW_CONFIG_HELP,
    json_value,
    model_name,
    positive_int,
)
from robustft.errors import RunError


def run_spec(args: argparse.Namespace) -> Any:
    """The RunSpec of the `train` options in `args` (a train.config.RunSpec; not imported at the top, so
    the parser starts without it)."""
    from robustft.train.config import RunSpec, TrainConfig

    if not isinstance(args.train_config or {}, dict):
        raise RunError(f"--train-config must be a JSON object, got {args.train_config!r}")
    train_settings = dict(args.train_config or {})
    unknown = sorted(set(train_settings) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise RunError(f"--train-config has unknown key(s) {unknown}")
    for flag in ("max_train_samples", "max_eval_samples", "epochs"):
        if getattr(args, flag) is not None:
            train_settings[flag] = getattr(args, flag)
    return RunSpec(
        model=args.model,
        task=args.task,
        method=args.method,
        seed=args.seed,
        train=TrainConfig(**train_settings),
        components=args.method_components,
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
    )


def set_torch_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def cmd_train(args: argparse.Namespace) -> int:
    spec = run_spec(args)
    spec.validate()  # names and settings fail here, before torch is even imported
    set_torch_threads(args.threads)
    from robustft.train.glue import train_run

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


def check_tables_of_config(
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


def cmd_report(args: argparse.Namespace) -> int:
    from robustft.provenance import summarize_runs
    from robustft.report import ReportSpec, build_report

    spec_dict = dict(args.spec)
    tables = Path(args.tables)
    check_tables_of_config(tables, args.workflow_config, ("runs", "xtreme"))
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


class _RunOptionsParser(argparse.ArgumentParser):
    """The `train` options of one run of a pack: an error names the run instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise RunError(message)


def packed_run(options: dict[str, Any]) -> Any:
    """A train.many.PackedRun from one run's `train` options, as a JSON object: {"model": ..., "task": ...,
    "method": ..., "seed": ..., "out": ..., "train_config": {...}, ...} (keys: the option names with `_`;
    not `threads`, which the whole pack shares). Read by the `train` command's own parser, so a run of a
    pack means exactly what the same `robustft train` options mean."""
    from robustft.train.many import PackedRun

    if not isinstance(options, dict):
        raise RunError(f"a run must be a JSON object of `train` options, got {options!r}")
    parser = _RunOptionsParser(prog="run", add_help=False)
    add_train_options(parser)
    argv = []
    for key, value in options.items():
        if value is not None:
            text = json.dumps(value) if isinstance(value, dict | list) else str(value)
            argv += [f"--{key.replace('_', '-')}", text]
    args = parser.parse_args(argv)
    return PackedRun(run_spec(args), args.out)


def runs_of_file(path: Path) -> list[dict[str, Any]]:
    try:
        runs = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RunError(f"--runs {path}: cannot read a JSON list of runs: {err}") from err
    if not isinstance(runs, list) or not runs:
        raise RunError(f"--runs {path}: expected a non-empty JSON list of runs, got {type(runs).__name__}")
    return runs


def runs_of_config_pack(config: dict[str, Any], pack: int, size: int) -> list[dict[str, Any]]:
    """The `train` options of pack `pack` (from 0) of a workflow config's GLUE runs, cut in packs of `size`
    in the config's order: the options its train rule passes, so each run lands in the run directory the
    workflow names, and a later `snakemake` finds it done."""
    from robustft.workflow_config import glue_run_dir, run_grid, train_settings

    grid = run_grid(config)
    packs = [grid[start : start + size] for start in range(0, len(grid), size)]
    if not 0 <= pack < len(packs):
        raise RunError(
            f"--pack {pack}: the config's {len(grid)} GLUE runs make {len(packs)} packs of {size} "
            f"(0 to {len(packs) - 1})"
        )
    return [
        {
            "model": model,
            "task": task,
            "method": method,
            "seed": seed,
            "out": glue_run_dir(config, model, task, method, seed),
            "data_dir": config["data_dir"],
            "cache_dir": config["cache_dir"],
            "train_config": train_settings(config, task),
            "method_components": config["methods"][method] or {},
        }
        for model, task, method, seed in packs[pack]
    ]


def cmd_train_many(args: argparse.Namespace) -> int:
    threads = args.threads
    if args.runs is not None:
        if args.pack is not None or args.pack_size is not None:
            raise RunError("--pack and --pack-size go with --configfile, not --runs")
        options = runs_of_file(args.runs)
    else:
        from robustft.workflow_config import load_config

        if args.pack is None:
            raise RunError("--configfile needs --pack: which pack of the config's runs to train")
        config = load_config(args.configfile)
        options = runs_of_config_pack(config, args.pack, args.pack_size or config["pack"]["runs_per_job"])
        threads = threads or config["threads"]
    runs = []
    for number, run_options in enumerate(options):
        try:
            runs.append(packed_run(run_options))
        except RunError as err:
            raise RunError(f"run {number} of the pack: {err}") from err
    set_torch_threads(threads)
    from robustft.train.many import train_runs

    started = time.perf_counter()
    outcomes = train_runs(runs)
    for outcome in outcomes:
        record = {"out": str(outcome.out_dir), "status": outcome.status, "seconds": round(outcome.seconds, 2)}
        print(json.dumps({**record, "error": outcome.error} if outcome.error else record), flush=True)
    failed = [outcome for outcome in outcomes if outcome.failed]
    print(
        f"robustft train-many: {len(outcomes) - len(failed)} of {len(outcomes)} runs finished in "
        f"{time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    for outcome in failed:
        print(
            f"robustft train-many: run {outcome.out_dir} {outcome.status}: {outcome.error}", file=sys.stderr
        )
    return 1 if failed else 0


def add_train_options(parser: argparse.ArgumentParser, *, threads: bool = False) -> None:
    """The options that name and set up one GLUE run (`train`, and each run of `train-many`)."""
    parser.add_argument("--model", required=True, type=model_name, help=MODEL_HELP)
    parser.add_argument("--task", required=True, help="task key, e.g. rte, mrpc, stsb")
    parser.add_argument("--method", required=True, help="method name: finetune, noisytune, or a+b")
    parser.add_argument("--seed", required=True, type=int)
    parser.add_argument("--out", required=True, type=Path, help="run directory to write")
    parser.add_argument("--data-dir", default="resources/data")
    parser.add_argument("--cache-dir", default=None, help=HF_CACHE_HELP)
    parser.add_argument("--max-train-samples", type=positive_int)
    parser.add_argument("--max-eval-samples", type=positive_int)
    parser.add_argument("--epochs", type=float)
    parser.add_argument("--train-config", type=json_value, help="JSON object of train settings")
    parser.add_argument(
        "--method-components", type=json_value, help='JSON, e.g. {"noisytune": {"noise_lambda": 0.1}}'
    )
    if threads:
        parser.add_argument("--threads", type=positive_int, help=THREADS_HELP)


def add_parsers(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="fine-tune one model on one task with one method and seed")
    add_train_options(train, threads=True)
    train.set_defaults(func=cmd_train)

    many = commands.add_parser(
        "train-many",
        help="train several GLUE runs in turn in one process (torch and transformers start once)",
        description="Each run keeps its own run directory; a run finished before with the same settings is "
        "skipped; a failed run does not stop the others, and the exit status is 1 when any failed.",
    )
    source = many.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--runs",
        type=Path,
        help="JSON list of runs, each an object of `train` options: "
        '[{"model": "bert-base", "task": "rte", "method": "finetune", "seed": 1, "out": "DIR"}, ...]',
    )
    source.add_argument(
        "--configfile", type=Path, help="a workflow config: train pack --pack of its GLUE runs (with --pack)"
    )
    many.add_argument("--pack", type=int, help="with --configfile: which pack, from 0")
    many.add_argument(
        "--pack-size", type=positive_int, help="with --configfile: runs per pack (default: pack.runs_per_job)"
    )
    many.add_argument(
        "--threads", type=positive_int, help=THREADS_HELP + " (default with --configfile: its threads)"
    )
    many.set_defaults(func=cmd_train_many)

    aggregate = commands.add_parser("aggregate", help="collect runs into CSV/LaTeX tables with statistics")
    aggregate.add_argument("--runs", default="results/runs")
    aggregate.add_argument("--out", required=True, help=TABLES_DIR_HELP)
    aggregate.add_argument("--baseline", default="finetune")
    aggregate.add_argument(
        "--workflow-config",
        type=json_value,
        help="the resolved workflow config (JSON): read exactly the runs it asks for",
    )
    aggregate.add_argument("metrics", nargs="*", help="metrics.json files to include (default: all found)")
    aggregate.set_defaults(func=cmd_aggregate)

    report = commands.add_parser("report", help="write the PDF report from the tables")
    report.add_argument("--tables", required=True, help=TABLES_DIR_HELP)
    report.add_argument(
        "--spec", type=json_value, required=True, help="JSON report spec (config's report block)"
    )
    report.add_argument("--config-hash", default="unknown")
    report.add_argument("--workflow-config", type=json_value, help=WORKFLOW_CONFIG_HELP)
    report.add_argument("--figures", default="figures")
    report.add_argument("--out", required=True)
    report.add_argument("--artifacts", nargs="*", default=[], help="artifact result directories to append")
    report.set_defaults(func=cmd_report)

    artifact = commands.add_parser("artifact", help="regenerate one paper table or figure from runs.csv")
    artifact.add_argument("--artifact", required=True, help="e.g. noisytune/table2")
    artifact.add_argument("--tables", required=True, help=TABLES_DIR_HELP)
    artifact.add_argument("--paper-model", type=json_value, default={}, help="JSON: our model -> paper model")
    artifact.add_argument(
        "--context",
        type=json_value,
        default={},
        help="JSON: track naming (judge, baseline, paper_dataset, ...)",
    )
    artifact.add_argument(
        "--min-seeds",
        type=positive_int,
        default=None,
        help="fewer paired seeds than this: verdict 'too few seeds' (default 3: stats.MIN_PAIRED_SEEDS)",
    )
    artifact.add_argument(
        "--out", required=True, help="directory for claims.csv/.tex, figure.svg, result.json"
    )
    artifact.set_defaults(func=cmd_artifact)
