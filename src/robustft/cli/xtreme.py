"""The XTREME track's subcommands: fine-tune on one task and score every language, score the retrieval
tasks with an XNLI run's encoder, and collect the runs into xtreme.csv."""

from __future__ import annotations

import argparse
from pathlib import Path

from robustft.cli.arguments import MODEL_HELP, json_value, model_name, positive_int


def cmd_train_xtreme(args: argparse.Namespace) -> int:
    from robustft.train.xtreme import cmd_train_xtreme as run_train_xtreme  # imports torch

    return run_train_xtreme(args)


def cmd_collect_xtreme(args: argparse.Namespace) -> int:
    from robustft.provenance import write_grid_manifest
    from robustft.tables.xtreme import (  # imports pandas
        collect_xtreme,
        collect_xtreme_curves,
        write_xtreme_curves,
        write_xtreme_table,
    )

    frame = collect_xtreme([Path(p) for p in args.run_dirs])
    write_xtreme_table(frame, Path(args.out).parent)
    write_xtreme_curves(collect_xtreme_curves(frame), Path(args.out).parent)  # the report's learning curves
    write_grid_manifest(Path(args.out).parent, "xtreme", list(args.run_dirs))
    runs = frame[["model", "task", "setting", "method", "seed"]].drop_duplicates()
    print(f"{len(runs)} runs -> {args.out} (+ xtreme_curves.csv)")
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:
    for name, help_text in (
        ("train-xtreme", "fine-tune on one XTREME task in one setting and score every language"),
        ("retrieve-xtreme", "score BUCC or Tatoeba with the encoder of an XNLI run"),
    ):
        parser = commands.add_parser(name, help=help_text)
        parser.add_argument("--model", required=True, type=model_name, help=MODEL_HELP)
        parser.add_argument(
            "--task", required=True, help="xnli, pawsx, udpos, panx, xquad, mlqa, tydiqa, ..."
        )
        parser.add_argument("--setting", required=True, help="zero-shot or translate-train-all")
        parser.add_argument("--method", required=True)
        parser.add_argument("--seed", required=True, type=int)
        parser.add_argument("--out", required=True, type=Path)
        parser.add_argument("--data-dir", default="resources/data")
        parser.add_argument("--cache-dir", default=None)
        parser.add_argument("--train-config", type=json_value, help="JSON object of train settings")
        parser.add_argument("--xtreme-config", type=json_value, help="JSON object of XtremeSettings")
        parser.add_argument("--method-components", type=json_value)
        parser.add_argument("--threads", type=positive_int)
        if name == "retrieve-xtreme":
            parser.add_argument("--encoder-dir", required=True, help="the XNLI run's encoder/ directory")
        parser.set_defaults(func=cmd_train_xtreme)

    collect = commands.add_parser("collect-xtreme", help="XTREME runs -> results/tables/<name>/xtreme.csv")
    collect.add_argument("--out", required=True, type=Path)
    collect.add_argument("run_dirs", nargs="+")
    collect.set_defaults(func=cmd_collect_xtreme)
