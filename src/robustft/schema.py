"""The workflow config's JSON schema (workflow/schemas/config.schema.yaml), the one source of truth for
which settings exist and their ranges: the workflow config is validated against all of it, and a run
started by hand checks its train settings against the schema's `train` block. Here, below both, so that
neither imports the other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def load_schema() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(SCHEMA_PATH.read_text())
