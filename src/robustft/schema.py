"""The workflow config's JSON schema (workflow/schemas/config.schema.yaml), the one source of truth for
which settings exist and their ranges: the workflow config is validated against all of it, and a run
started by hand checks its train settings against the schema's `train` block. Here, below both, so that
neither imports the other."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def load_schema() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(SCHEMA_PATH.read_text())


# ---------------------------------------------------------------------------------------------------------
# config/README.md: the schema as a reference page

CONFIG_README_PATH = SCHEMA_PATH.parents[2] / "config" / "README.md"

_BOUNDS = (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<"))


def _type_text(schema: dict[str, Any], earlier: list[dict[str, Any]] | None = None) -> str:
    """What a key takes, in words: `earlier` are the alternatives before this one in an anyOf/oneOf (a
    list of one of them reads "a list of them")."""
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if alternatives:
        return " or ".join(_type_text(option, alternatives[:i]) for i, option in enumerate(alternatives))
    if "enum" in schema:
        values = [f"`{value}`" for value in schema["enum"]]
        return values[0] if len(values) == 1 else "one of " + ", ".join(values)
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    if not kinds:
        return "any"
    words = []
    for kind in kinds:
        if kind == "array":
            items = schema.get("items")
            if items is not None and any(items is option for option in earlier or []):
                words.append("a list of them")
            else:
                words.append(f"list of {_type_text(items)}" if items else "list")
        else:
            words.append({"object": "mapping"}.get(kind, kind))
    bounds = [f"{sign} {schema[name]}" for name, sign in _BOUNDS if name in schema]
    return " or ".join(words) + (f" ({', '.join(bounds)})" if bounds else "")


def _cell(text: str) -> str:
    """One Markdown table cell: on one line, its pipes escaped, and outside code spans the `<` that opens
    a placeholder such as <name>, which Markdown would otherwise read as an HTML tag."""
    spans = " ".join(text.split()).replace("|", "\\|").split("`")
    return "`".join(span if i % 2 else re.sub(r"<(?=[A-Za-z])", r"\\<", span) for i, span in enumerate(spans))


def _key_rows(prefix: str, properties: dict[str, Any], undescribed: list[str]) -> list[str]:
    """A table row per key of `properties` and of their own `properties`, depth first; keys without a
    description are appended to `undescribed`. Maps from free names (grids, per-task overrides) are one
    row each: their entries are described in words."""
    rows = []
    for name, schema in properties.items():
        key = f"{prefix}{name}"
        if "description" not in schema:
            undescribed.append(key)
        default = f"`{json.dumps(schema['default'])}`" if "default" in schema else "—"
        cells = (f"`{key}`", _type_text(schema), default, schema.get("description", ""))
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
        rows += _key_rows(f"{key}.", schema.get("properties", {}), undescribed)
    return rows


def config_reference(schema: dict[str, Any] | None = None) -> str:
    """config/README.md: every key of the workflow config with its type, default and description, from
    the schema (`robustft config-docs` writes it; a test fails when the committed file differs from it).

    Raises ValueError naming the keys that have no description in the schema."""
    schema = load_schema() if schema is None else schema
    header = "| key | type | default | description |\n| --- | --- | --- | --- |"
    undescribed: list[str] = []
    # The top-level table has one row per key; a block's own keys get a section of their own below.
    properties = schema["properties"]
    top = {name: {k: v for k, v in sub.items() if k != "properties"} for name, sub in properties.items()}
    parts = [
        "# Workflow configuration",
        "<!-- Generated from workflow/schemas/config.schema.yaml by `robustft config-docs --out "
        "config/README.md`: edit the schema, then regenerate; a test fails when they differ. -->",
        "A workflow config is one YAML file, passed as `snakemake --configfile FILE`; the configs shipped "
        "in this folder, and what each one runs, are described in "
        "[docs/configuration.md](../docs/configuration.md). " + _cell(schema["description"]) + " "
        "`robustft check-config FILE` prints a config with its defaults filled in.",
        "## Top-level keys",
        header + "\n" + "\n".join(_key_rows("", top, undescribed)),
    ]
    for name, sub in properties.items():
        if sub.get("properties"):
            rows = _key_rows(f"{name}.", sub["properties"], undescribed)
            parts += [f"## `{name}`", header + "\n" + "\n".join(rows)]
    if undescribed:
        raise ValueError(f"config keys without a description in {SCHEMA_PATH.name}: {undescribed}")
    return "\n\n".join(parts) + "\n"
