"""`robustft` command line: every Snakemake rule calls one of these subcommands, and so can a person."""

from __future__ import annotations

import argparse
import logging
import sys

from robustft.cli import costs, glue, instruct, registries, workflow, xtreme
from robustft.errors import (
    ConfigError,
    DataFormatError,
    DataNotFoundError,
    FindingError,
    MethodConfigError,
    ModelNotFoundError,
    RunError,
    TableMismatchError,
    UnsupportedModelError,
)

# One module of subcommands per track, in the order `robustft --help` lists them. Each one's `add_parsers`
# imports nothing heavy: the parser is built on every start, `--help` included.
COMMAND_MODULES = (glue, instruct, xtreme, workflow, costs, registries)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustft", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.add_parsers(commands)
    return parser


# The errors of bad input (a name, a setting, a file) that a command reports as one line, exit 2.
EXPECTED_ERRORS: tuple[type[Exception], ...] = (
    KeyError,
    DataFormatError,
    DataNotFoundError,
    ModelNotFoundError,
    MethodConfigError,
    RunError,
    ConfigError,
    TableMismatchError,
    FindingError,
    UnsupportedModelError,
)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except Exception as err:
        if not isinstance(err, EXPECTED_ERRORS):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"robustft {args.command}: error: {message}", file=sys.stderr)
        return 2
