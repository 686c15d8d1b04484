"""The workflow config: one schema-validated YAML file, checked against the registries before any job runs.

The Snakefile calls `check_config(config)` right after Snakemake's schema validation (which fills in the
defaults); by-hand users can run `robustft check-config FILE`. Building the methods to check their
settings imports torch (about 2 s), once per Snakefile parse.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from robustft.data import TASKS, split_task_variant, task_variant_name
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
    unknown_tasks = sorted(set(config["train_by_task"]) - set(config["tasks"]))
    if unknown_tasks:
        raise ConfigError(f"config key 'train_by_task': task(s) {unknown_tasks} are not in 'tasks'")
    for name, grid in config["grids"].items():
        where = f"config key 'grids.{name}'"
        for key, registry in (("models", MODELS), ("tasks", TASKS), ("methods", config["methods"])):
            unknown = [value for value in grid.get(key, []) if value not in registry]
            if unknown:
                raise ConfigError(f"{where}: unknown {key} {unknown}; known: {sorted(registry)}")
    if config["artifacts"]:
        from robustft.artifacts import ARTIFACTS

        unknown = [key for key in config["artifacts"] if key not in ARTIFACTS]
        if unknown:
            raise ConfigError(f"config key 'artifacts': unknown {unknown}; known: {sorted(ARTIFACTS)}")
    baseline = config["report"]["baseline"]
    if baseline not in config["methods"]:
        raise ConfigError(f"config key 'report.baseline': {baseline!r} is not one of the configured methods")
    if "instruct" in config["tracks"]:
        check_instruct_config(config)
    if "xtreme" in config["tracks"]:
        check_xtreme_config(config)


def check_instruct_config(config: dict[str, Any]) -> None:
    """The instruction-tuning block: names exist in their registries, settings build."""
    from robustft.data.instruct import INSTRUCT_DATASETS
    from robustft.evals.judges import JUDGES
    from robustft.evals.leaderboard import LEADERBOARD_TASKS
    from robustft.train.sft import SFTSettings

    block = config["instruct"]
    registries = {
        "models": MODELS,
        "datasets": INSTRUCT_DATASETS,
        "methods": config["methods"],
        "recipes": block["recipes"],
    }
    for where, grid in [("instruct", block)] + [
        (f"instruct.grids.{n}", g) for n, g in block["grids"].items()
    ]:
        for key, registry in registries.items():
            unknown = [value for value in grid.get(key, []) if value not in registry]
            if unknown:
                raise ConfigError(f"config key '{where}.{key}': unknown {unknown}; known: {sorted(registry)}")
    if not instruct_grid(config):
        raise ConfigError("config key 'instruct': the track is enabled but its grid has no runs")
    for name, overrides in block["recipes"].items():
        try:
            SFTSettings(**{**block["sft"], **(overrides or {})})
        except (TypeError, ValueError) as err:
            raise ConfigError(f"config key 'instruct.recipes.{name}' (over 'instruct.sft'): {err}") from err
    for name, judge in block["judges"].items():
        if judge["kind"] not in JUDGES:
            raise ConfigError(
                f"config key 'instruct.judges.{name}.kind': unknown {judge['kind']!r}; "
                f"known: {sorted(JUDGES)}"
            )
    for metric, judge in block["report"]["judge_for"].items():
        if judge not in block["judges"]:
            raise ConfigError(
                f"config key 'instruct.report.judge_for.{metric}': {judge!r} is not a configured judge "
                f"({sorted(block['judges'])})"
            )
    unknown = [task for task in block["leaderboard"]["tasks"] if task not in LEADERBOARD_TASKS]
    if unknown:
        raise ConfigError(
            f"config key 'instruct.leaderboard.tasks': unknown {unknown}; known: {sorted(LEADERBOARD_TASKS)}"
        )
    if block["report"]["baseline"] not in config["methods"]:
        raise ConfigError(
            f"config key 'instruct.report.baseline': {block['report']['baseline']!r} "
            "is not one of the configured methods"
        )
    if "glue" in config["tracks"] and block["report"]["name"] == config["report"]["name"]:
        raise ConfigError(
            "config keys 'report.name' and 'instruct.report.name' must differ: both tracks write "
            f"results/reports/{config['report']['name']}.pdf"
        )


def check_xtreme_config(config: dict[str, Any]) -> None:
    """The XTREME block: names exist, per-task blocks name configured tasks, settings build."""
    from robustft.data.xtreme import XTREME_TASKS
    from robustft.train.config import RunError, TrainConfig, validate_train_settings
    from robustft.train.xtreme import XtremeSettings

    block = config["xtreme"]
    registries = {"models": MODELS, "tasks": XTREME_TASKS, "methods": config["methods"]}
    for where, grid in [("xtreme", block)] + [(f"xtreme.grids.{n}", g) for n, g in block["grids"].items()]:
        for key, registry in registries.items():
            unknown = [value for value in grid.get(key, []) if value not in registry]
            if unknown:
                raise ConfigError(f"config key '{where}.{key}': unknown {unknown}; known: {sorted(registry)}")
    if not xtreme_grid(config):
        raise ConfigError("config key 'xtreme': the track is enabled but its grid has no runs")
    unknown = sorted(set(block["data_dir_by_model"]) - set(MODELS))
    if unknown:
        raise ConfigError(f"config key 'xtreme.data_dir_by_model': unknown model(s) {unknown}")
    from robustft.data.xtreme import SETTINGS

    # train_by_task also takes "<task>/<setting>" keys (e.g. xnli/translate-train-all: {epochs: 1}).
    known = {"train_by_task": set(XTREME_TASKS) | {f"{t}/{s}" for t in XTREME_TASKS for s in SETTINGS}}
    for key in ("train_by_task", "run_by_task"):
        unknown = sorted(set(block[key]) - known.get(key, set(XTREME_TASKS)))
        if unknown:
            raise ConfigError(f"config key 'xtreme.{key}': unknown task(s) {unknown}")
    unknown = sorted(set(block["train_by_model"]) - set(MODELS))
    if unknown:
        raise ConfigError(f"config key 'xtreme.train_by_model': unknown model(s) {unknown}")
    for model, task, setting in {run[:3] for run in xtreme_grid(config)}:
        train = xtreme_train_settings(config, model, task, setting)
        unknown = sorted(set(train) - set(TrainConfig.__dataclass_fields__))
        if unknown:
            raise ConfigError(
                f"config key 'xtreme.train' ({model}, {task}, {setting}): unknown key(s) {unknown}"
            )
        try:
            validate_train_settings({**vars(TrainConfig()), **train})
            XtremeSettings(**xtreme_run_settings(config, task)).validate()
        except (TypeError, RunError) as err:
            raise ConfigError(f"config key 'xtreme' ({task}): {err}") from err
    for role in ("baseline", "method"):
        name = block["report"][role]
        if name not in config["methods"]:
            raise ConfigError(
                f"config key 'xtreme.report.{role}': {name!r} is not one of the configured methods"
            )


def xtreme_grid(config: dict[str, Any]) -> list[tuple[str, str, str, str, int]]:
    """Every (model, task, setting, method, seed) of the XTREME track, each once, in config order."""
    block = config["xtreme"]
    grids = block["grids"].values() if block["grids"] else [{}]
    runs: dict[tuple[str, str, str, str, int], None] = {}
    for grid in grids:
        for model in grid.get("models", block["models"]):
            for task in grid.get("tasks", block["tasks"]):
                for setting in grid.get("settings", block["settings"]):
                    for method in grid.get("methods", block["methods"]):
                        for seed in grid.get("seeds", block["seeds"]):
                            runs[model, task, setting, method, seed] = None
    return list(runs)


def xtreme_train_settings(config: dict[str, Any], model: str, task: str, setting: str) -> dict[str, Any]:
    """The top-level `train` block, then `xtreme.train`, `xtreme.train_by_task` at `task` and at
    `task/setting`, and `xtreme.train_by_model[model]`, each laid over the last (a model's settings, such
    as XLM-R large's smaller learning rate, win over a task's)."""
    block = config["xtreme"]
    by_task = block["train_by_task"]
    return {
        **config["train"],
        **block["train"],
        **(by_task.get(task) or {}),
        **(by_task.get(f"{task}/{setting}") or {}),
        **(block["train_by_model"].get(model) or {}),
    }


def xtreme_run_settings(config: dict[str, Any], task: str) -> dict[str, Any]:
    block = config["xtreme"]
    settings = {**block["run"], **(block["run_by_task"].get(task) or {})}
    if task == "xnli" and any(t in ("bucc2018", "tatoeba") for _, t, *_ in xtreme_grid(config)):
        settings["save_encoder"] = True  # the retrieval runs read this run's fine-tuned encoder
    return settings


def xtreme_arguments(config: dict[str, Any], model: str, task: str, setting: str, method: str) -> str:
    """The `robustft train-xtreme` options for a model, task, setting and method, shell-quoted."""
    components = json.dumps(config["methods"][method] or {})
    train = json.dumps(xtreme_train_settings(config, model, task, setting), sort_keys=True)
    settings = json.dumps(xtreme_run_settings(config, task), sort_keys=True)
    return (
        f"--method-components {shlex.quote(components)} --train-config {shlex.quote(train)} "
        f"--xtreme-config {shlex.quote(settings)}"
    )


def instruct_grid(config: dict[str, Any]) -> list[tuple[str, str, str, str, int]]:
    """Every (model, dataset, recipe, method, seed) of the instruction-tuning track, each once, in order."""
    block = config["instruct"]
    grids = block["grids"].values() if block["grids"] else [{}]
    runs: dict[tuple[str, str, str, str, int], None] = {}
    for grid in grids:
        for model in grid.get("models", block["models"]):
            for dataset in grid.get("datasets", block["datasets"]):
                for recipe in grid.get("recipes", list(block["recipes"])):
                    for method in grid.get("methods", block["methods"]):
                        for seed in grid.get("seeds", block["seeds"]):
                            runs[model, dataset, recipe, method, seed] = None
    return list(runs)


def sft_arguments(config: dict[str, Any], recipe: str, method: str) -> str:
    """The `robustft sft` options that carry a method's components and the recipe's settings, quoted."""
    block = config["instruct"]
    components = json.dumps(config["methods"][method] or {})
    settings = json.dumps({**block["sft"], **(block["recipes"][recipe] or {})}, sort_keys=True)
    return f"--method-components {shlex.quote(components)} --sft-config {shlex.quote(settings)}"


def run_grid(config: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    """Every (model, task, method, seed) the workflow trains, each once, in config order.

    Without `grids`: models x tasks x methods x seeds. With them: the union of the grids, whose missing
    keys default to the top-level ones; a train fraction f < 1 turns task t into the variant t@f.
    """
    grids = config["grids"].values() if config["grids"] else [{"methods": list(config["methods"])}]
    runs: dict[tuple[str, str, str, int], None] = {}
    for grid in grids:
        fractions = grid.get("train_fractions", [1.0])
        for model in grid.get("models", config["models"]):
            for task in grid.get("tasks", config["tasks"]):
                for fraction in fractions:
                    for method in grid["methods"]:
                        for seed in grid.get("seeds", config["seeds"]):
                            runs[model, task_variant_name(task, fraction), method, seed] = None
    return list(runs)


def train_settings(config: dict[str, Any], task: str) -> dict[str, Any]:
    """The `train` block with the task's entry of `train_by_task` laid over it (mrpc@0.2 takes mrpc's)."""
    by_task = config["train_by_task"]
    return {**config["train"], **(by_task.get(task) or by_task.get(split_task_variant(task)[0]) or {})}


def train_arguments(config: dict[str, Any], method: str, task: str) -> str:
    """The `robustft train` options that carry a method's components and the train settings, shell-quoted."""
    # Not sorted: components act in the order the config lists them (noisytune+smart != smart+noisytune).
    components = json.dumps(config["methods"][method] or {})
    settings = json.dumps(train_settings(config, task), sort_keys=True)
    return f"--method-components {shlex.quote(components)} --train-config {shlex.quote(settings)}"


def load_schema() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(SCHEMA_PATH.read_text())


def load_config(path: Path) -> dict[str, Any]:
    """Read a workflow YAML, fill in the schema's defaults and check it the way the Snakefile does."""
    import yaml
    from snakemake.utils import validate

    try:
        config = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the config: {err}") from err
    if not isinstance(config, dict):
        raise ConfigError(
            f"{path}: a config must be a mapping of keys to values, got {type(config).__name__}"
        )
    try:
        validate(config, str(SCHEMA_PATH), set_default=True)
    except Exception as err:  # snakemake wraps jsonschema's error; its text names the key
        raise ConfigError(f"{path}: {err}") from err
    check_config(config)
    return config
