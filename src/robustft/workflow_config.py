"""The workflow config: one schema-validated YAML file, checked against the registries before any job runs.

The Snakefile calls `check_config(config)` right after Snakemake's schema validation (which fills in the
defaults); by-hand users can run `robustft check-config FILE`. Imports here must stay light: the Snakefile
is parsed again for every cluster job.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from robustft.data import TASKS
from robustft.methods import MethodConfigError, build_method
from robustft.models import MODELS

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config value is invalid; the message names the key."""


def check_config(config: dict[str, Any]) -> None:
    """Names must exist in the registries, methods must build, seeds must be unique integers."""
    for key, registry in (("models", MODELS), ("tasks", TASKS)):
        unknown = [name for name in config[key] if name not in registry]
        if unknown:
            raise ConfigError(f"config key {key!r}: unknown name(s) {unknown}; known: {sorted(registry)}")
    seeds = config["seeds"]
    if any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise ConfigError(f"config key 'seeds': every seed must be an integer, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"config key 'seeds': seeds must be unique, got {seeds!r}")
    for name, components in config["methods"].items():
        try:
            build_method(name, components or {})
        except (MethodConfigError, TypeError) as err:
            raise ConfigError(f"config key 'methods.{name}': {err}") from err
    baseline = config["report"]["baseline"]
    if baseline not in config["methods"]:
        raise ConfigError(f"config key 'report.baseline': {baseline!r} is not one of the configured methods")


def train_arguments(config: dict[str, Any], method: str) -> str:
    """The `robustft train` options that carry a method's components and the train block, shell-quoted."""
    return " ".join(
        [
            "--method-components",
            shlex.quote(json.dumps(config["methods"][method] or {}, sort_keys=True)),
            "--train-config",
            shlex.quote(json.dumps(config["train"], sort_keys=True)),
        ]
    )


def load_config(path: Path) -> dict[str, Any]:
    """Read a workflow YAML, fill in the schema's defaults and check it the way the Snakefile does."""
    import yaml
    from snakemake.utils import validate

    config = yaml.safe_load(Path(path).read_text()) or {}
    try:
        validate(config, str(SCHEMA_PATH), set_default=True)
    except Exception as err:  # snakemake wraps jsonschema's error; its text names the key
        raise ConfigError(f"{path}: {err}") from err
    check_config(config)
    return config
