"""`robustft list`: the names a config or a subcommand accepts, read from the registries themselves."""

from __future__ import annotations

import argparse
import os
import sys

REGISTRY_KINDS = ("models", "tasks", "methods", "artifacts")


def registry_entries(kind: str) -> list[tuple[str, str]]:
    """(name, one-line description) of every entry of a registry, in registration order; the registry's
    module is imported here (the methods' imports torch)."""
    if kind == "models":
        from robustft.models import MODELS

        return [(name, spec.description) for name, spec in MODELS.items()]
    if kind == "tasks":
        from robustft.data import TASKS

        return [
            (key, f"{spec.paper_name} ({spec.family}, {spec.primary_metric})") for key, spec in TASKS.items()
        ]
    if kind == "methods":
        from robustft.methods import COMPONENTS

        return [(name, component.paper) for name, component in COMPONENTS.items()]
    if kind == "artifacts":
        from robustft.artifacts import ARTIFACTS

        return [(key, artifact.title) for key, artifact in ARTIFACTS.items()]
    raise KeyError(f"unknown registry {kind!r}; known: {list(REGISTRY_KINDS)}")


def cmd_list(args: argparse.Namespace) -> int:
    entries = registry_entries(args.kind)
    width = max((len(name) for name, _ in entries), default=0)
    lines = [f"{name:<{width}}  {description}".rstrip() for name, description in entries]
    try:
        print("\n".join(lines), flush=True)
    except BrokenPipeError:
        # The reader stopped early (`robustft list tasks | head -3`): not an error. Point stdout at devnull
        # so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:
    listing = commands.add_parser(
        "list",
        help="print the registered models, tasks, methods or artifacts, one name per line",
        description="Prints each registered name with its one-line description. Methods are the method "
        "components: a run's --method is 'finetune' (none), one component, or several joined by '+'.",
    )
    listing.add_argument("kind", choices=REGISTRY_KINDS)
    listing.set_defaults(func=cmd_list)
