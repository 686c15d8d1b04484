"""Argument types and help strings shared by the subcommands.

Every subcommand's parser is built on each start of `robustft`, so this module imports only the standard
library: nothing that would make `robustft --help` wait for torch or pandas.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

WORKFLOW_CONFIG_HELP = (
    "the resolved workflow config (JSON): the report then checks that its tables hold exactly its runs"
)
TABLES_DIR_HELP = "tables directory, e.g. results/tables/<config name>"
HF_CACHE_HELP = "Hugging Face cache (models and Hub datasets)"
THREADS_HELP = "torch CPU threads"
MODEL_HELP = "registry name (e.g. minilm-l6, bert-base), Hugging Face Hub id (org/name) or local model folder"


def json_value(text: str) -> Any:
    """Any JSON value: the command checks its shape, so a wrong one is named in its own error."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from None


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def model_name(text: str) -> str:
    """A --model value as runs record it: a run directory's path-safe level (org--name, as the workflow's
    rules pass it) stands for the Hub id org/name; anything else is taken as given."""
    from robustft.models import canonical_model_name  # light: the registry imports no transformers

    return canonical_model_name(text)
