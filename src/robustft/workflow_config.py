"""The workflow config: one schema-validated YAML file, checked against the registries before any job runs.

The Snakefile calls `validate_config(config)` at parse time: it checks the config against the schema
(filling in the defaults), then against the registries and libraries, and raises one ConfigError that
lists every error; by-hand users run the same check with `robustft check-config FILE`. Snakemake parses the
Snakefile again for every cluster job, so this check stays light: methods are checked with their settings
classes (robustft.methods.settings) and artifact names with robustft.artifacts.index, never importing
torch, transformers or pandas.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import shlex
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from robustft.data import TASKS, split_task_variant, task_variant_name
from robustft.errors import (
    ConfigError,
    MethodConfigError,
    ModelNotFoundError,
    RunError,
    UnsupportedModelError,
)
from robustft.methods import check_method
from robustft.models import (
    get_model_spec,
    is_model_name,
    model_kind_error,
    model_path_name,
    sequence_length_error,
    unknown_model_message,
)
from robustft.runs import parse_run_dir, seed_dir_name
from robustft.schema import SCHEMA_PATH, load_schema  # noqa: F401  (SCHEMA_PATH: still importable here)

# The config `snakemake` runs when no --configfile is given (the CPU demo); a --configfile replaces it.
DEFAULT_CONFIG = "config/config.yaml"
# XTREME tasks that train nothing: they read the encoder of an XNLI run.
RETRIEVAL_TASKS = ("bucc2018", "tatoeba")
RESULTS = "results"


def check_config(config: dict[str, Any]) -> None:
    """Raise one ConfigError listing every semantic error of a schema-valid config (defaults filled in)."""
    errors = config_errors(config)
    if errors:
        raise ConfigError(errors)


def config_errors(config: dict[str, Any], *, malformed: bool = False) -> list[str]:
    """Every semantic error: names must exist in the registries, models must be of the track's kind and
    take the configured input length, methods must build, seeds must suit the libraries.

    `malformed`: the schema already found errors, so a check that trips over a value of the wrong shape
    (or a default the schema could not fill in) is skipped instead of crashing; its cause is reported.
    """
    errors: list[str] = []
    for check in (
        _glue_errors,
        _seed_errors,
        _pack_errors,
        _method_errors,
        _report_errors,
        _instruct_errors,
        _xtreme_errors,
    ):
        try:
            for error in check(config):
                errors.append(error)
        except Exception:
            if not malformed:
                raise
    return list(dict.fromkeys(errors))  # a setting shared by many runs is reported once


def _unknown_names(where: str, kind: str, names: list[str], registry: dict[str, Any]) -> Iterator[str]:
    """Names missing from their registry; models are checked by name instead (any Hub id is one)."""
    if kind == "models":
        for name in names:
            problem = _model_name_error(name)
            if problem:
                yield f"config key {where!r}: {problem}"
        return
    unknown = [name for name in names if name not in registry]
    if unknown:
        yield f"config key {where!r}: unknown {kind} {unknown}; known: {sorted(registry)}"


def _model_name_error(name: str) -> str | None:
    """Why `name` cannot name a model of the workflow, or None: a registry alias, a Hub id or a local
    folder, and a level of a run directory (model_path_name)."""
    if not is_model_name(name):
        return unknown_model_message(name)
    try:
        model_path_name(name)
    except ValueError as err:
        return str(err)
    return None


def _model_kind(model: str, cache_dir: str | None) -> str | None:
    """A configured model's kind; None where its name or its config is at fault (reported elsewhere)."""
    if _model_name_error(model):
        return None
    try:
        return get_model_spec(model, cache_dir).kind
    except (ModelNotFoundError, UnsupportedModelError):
        return None


def _kind_errors(where: str, models: list[str], kind: str, cache_dir: str | None) -> Iterator[str]:
    """Models of another kind than the track's; a Hub model's kind is read from its config.json in the
    config's cache_dir (fetched into it when the Hub is reachable), and a config that cannot be read is
    an error naming the model and the prefetch command."""
    for model in models:
        if _model_name_error(model):
            continue  # reported with the names
        try:
            problem = model_kind_error(model, kind, cache_dir)
        except (ModelNotFoundError, UnsupportedModelError) as err:
            problem = str(err)
        if problem:
            yield f"config key {where!r}: {problem}"


def _last_setting(layers: list[tuple[str, dict[str, Any] | None]], setting: str) -> str:
    """The config key that sets `setting` in a stack of settings laid over each other (the last wins)."""
    where = [key for key, layer in layers if setting in (layer or {})]
    return f"{where[-1]}.{setting}" if where else f"{layers[0][0]}.{setting}"


def _glue_errors(config: dict[str, Any]) -> Iterator[str]:
    """The GLUE track: top-level models, tasks, grids and train settings."""
    cache_dir = config["cache_dir"]
    found = list(_unknown_names("models", "models", config["models"], {}))
    found += _unknown_names("tasks", "tasks", config["tasks"], TASKS)
    unknown_tasks = sorted(set(config["train_by_task"]) - set(config["tasks"]))
    if unknown_tasks:
        found.append(f"config key 'train_by_task': task(s) {unknown_tasks} are not in 'tasks'")
    for name, grid in config["grids"].items():
        where = f"grids.{name}"
        for key, registry in (("models", {}), ("tasks", TASKS), ("methods", config["methods"])):
            found += _unknown_names(f"{where}.{key}", key, grid.get(key, []), registry)
    yield from found
    yield from _kind_errors("models", config["models"], "encoder", cache_dir)
    for name, grid in config["grids"].items():
        yield from _kind_errors(f"grids.{name}.models", grid.get("models", []), "encoder", cache_dir)
    for model, task in dict.fromkeys((model, task) for model, task, _, _ in run_grid(config)):
        if _model_kind(model, cache_dir) != "encoder" or split_task_variant(task)[0] not in TASKS:
            continue  # reported above
        base = split_task_variant(task)[0]
        layers = [("train", config["train"]), (f"train_by_task.{base}", config["train_by_task"].get(base))]
        problem = sequence_length_error(model, train_settings(config, task)["max_seq_length"], cache_dir)
        if problem:
            yield f"config key {_last_setting(layers, 'max_seq_length')!r}: {problem}"


def _seed_errors(config: dict[str, Any]) -> Iterator[str]:
    """Every seed list: integers numpy can take (transformers.set_seed seeds it), each once."""
    from robustft.train.config import seed_error

    lists = [("seeds", config["seeds"])]
    lists += [(f"grids.{n}.seeds", g["seeds"]) for n, g in config["grids"].items() if "seeds" in g]
    for block in ("xtreme", "instruct"):
        if block in config["tracks"]:
            lists.append((f"{block}.seeds", config[block]["seeds"]))
            lists += [
                (f"{block}.grids.{n}.seeds", g["seeds"])
                for n, g in config[block]["grids"].items()
                if "seeds" in g
            ]
    for where, seeds in lists:
        problems = [problem for problem in map(seed_error, seeds) if problem]
        if problems:
            yield f"config key {where!r}: {'; '.join(problems)}"
        elif len(set(seeds)) != len(seeds):
            yield f"config key {where!r}: seeds must be unique, got {seeds!r}"


# The Snakemake group of each track's train rule when runs are packed (config `pack`); the run is given
# `--group-components <group>=<runs_per_job>` for each (workflow/rules/common.smk checks it).
PACK_GROUPS = {"glue": "train", "xtreme": "xtreme_train"}


def _pack_errors(config: dict[str, Any]) -> Iterator[str]:
    """Packed runs share one GPU: a run that needs several GPUs cannot be packed."""
    if config["pack"]["runs_per_job"] == 1:
        return
    blocks = [("gpus_per_run", config["gpus_per_run"], "glue")]
    blocks.append(("xtreme.gpus_per_run", config["xtreme"]["gpus_per_run"], "xtreme"))
    for where, gpus, track in blocks:
        if track in config["tracks"] and gpus > 1:
            yield (
                f"config key 'pack.runs_per_job': packed runs share one GPU, but {where!r} is {gpus}; "
                "pack runs of at most one GPU, or set pack.runs_per_job to 1"
            )


def pack_group_components(config: dict[str, Any]) -> dict[str, int]:
    """The `--group-components` a run of `config` needs: {group: runs per job} for each track that trains
    runs, or {} when runs are not packed."""
    runs_per_job = config["pack"]["runs_per_job"]
    if runs_per_job == 1:
        return {}
    return {group: runs_per_job for track, group in PACK_GROUPS.items() if track in config["tracks"]}


def _method_errors(config: dict[str, Any]) -> Iterator[str]:
    for name, components in config["methods"].items():
        try:
            check_method(name, components or {})
        except (MethodConfigError, TypeError) as err:
            yield f"config key 'methods.{name}': {err}"


def _report_errors(config: dict[str, Any]) -> Iterator[str]:
    if config["artifacts"]:
        from robustft.artifacts.index import ARTIFACT_TABLES

        unknown = [key for key in config["artifacts"] if key not in ARTIFACT_TABLES]
        if unknown:
            yield f"config key 'artifacts': unknown {unknown}; known: {sorted(ARTIFACT_TABLES)}"
    baseline = config["report"]["baseline"]
    if baseline not in config["methods"]:
        yield f"config key 'report.baseline': {baseline!r} is not one of the configured methods"
    unknown = [name for name in config["report"].get("methods") or [] if name not in config["methods"]]
    if unknown:
        known = sorted(config["methods"])
        yield f"config key 'report.methods': {unknown} are not configured methods; known: {known}"


def _instruct_errors(config: dict[str, Any]) -> Iterator[str]:
    """The instruction-tuning block: names exist in their registries, models are causal LMs that take the
    configured length, settings build."""
    if "instruct" not in config["tracks"]:
        return
    from robustft.data.instruct import INSTRUCT_DATASETS
    from robustft.evals.judges import JUDGES
    from robustft.evals.leaderboard import LEADERBOARD_TASKS
    from robustft.train.sft import SFTSettings

    block, cache_dir = config["instruct"], config["cache_dir"]
    registries = {
        "models": {},
        "datasets": INSTRUCT_DATASETS,
        "methods": config["methods"],
        "recipes": block["recipes"],
    }
    grids = [("instruct", block)] + [(f"instruct.grids.{n}", g) for n, g in block["grids"].items()]
    found = []
    for where, grid in grids:
        for key, registry in registries.items():
            found += _unknown_names(f"{where}.{key}", key, grid.get(key, []), registry)
        yield from _kind_errors(f"{where}.models", grid.get("models", []), "causal-lm", cache_dir)
    yield from found
    if not found and not instruct_grid(config):
        yield "config key 'instruct': the track is enabled but its grid has no runs"
    settings: dict[str, Any] = {}
    for name, overrides in block["recipes"].items():
        try:
            settings[name] = SFTSettings(**{**block["sft"], **(overrides or {})})
        except (TypeError, ValueError) as err:
            yield f"config key 'instruct.recipes.{name}' (over 'instruct.sft'): {err}"
    if not found:
        for model, recipe in dict.fromkeys((run[0], run[2]) for run in instruct_grid(config)):
            if recipe not in settings or _model_kind(model, cache_dir) != "causal-lm":
                continue  # reported above
            problem = sequence_length_error(model, settings[recipe].max_seq_length, cache_dir)
            if problem:
                layers = [
                    ("instruct.sft", block["sft"]),
                    (f"instruct.recipes.{recipe}", block["recipes"][recipe]),
                ]
                yield f"config key {_last_setting(layers, 'max_seq_length')!r}: {problem}"
    for name, judge in block["judges"].items():
        if judge["kind"] not in JUDGES:
            known = sorted(JUDGES)
            yield f"config key 'instruct.judges.{name}.kind': unknown {judge['kind']!r}; known: {known}"
    for metric, judge in block["report"]["judge_for"].items():
        if judge not in block["judges"]:
            yield (
                f"config key 'instruct.report.judge_for.{metric}': {judge!r} is not a configured judge "
                f"({sorted(block['judges'])})"
            )
    unknown = [task for task in block["leaderboard"]["tasks"] if task not in LEADERBOARD_TASKS]
    if unknown:
        known = sorted(LEADERBOARD_TASKS)
        yield f"config key 'instruct.leaderboard.tasks': unknown {unknown}; known: {known}"
    yield from _variant_errors(block)
    if block["report"]["baseline"] not in config["methods"]:
        yield (
            f"config key 'instruct.report.baseline': {block['report']['baseline']!r} "
            "is not one of the configured methods"
        )
    if "glue" in config["tracks"] and block["report"]["name"] == config["report"]["name"]:
        yield (
            "config keys 'report.name' and 'instruct.report.name' must differ: both tracks write "
            f"results/reports/{config['report']['name']}.pdf"
        )


def _variant_errors(block: dict[str, Any]) -> Iterator[str]:
    """The generation variants: each one's settings make sense, and the grids name configured ones."""
    from robustft.evals.generation import variant_error

    generation = block["generation"]
    for name, settings in generation["variants"].items():
        problem = variant_error(settings, generation["max_new_tokens"])
        if problem:
            yield f"config key 'instruct.generation.variants.{name}': {problem}"
    for grid_name, grid in block["grids"].items():
        unknown = [name for name in grid.get("variants", []) if name not in generation["variants"]]
        if unknown:
            known = sorted(generation["variants"])
            yield (
                f"config key 'instruct.grids.{grid_name}.variants': {unknown} are not in "
                f"'instruct.generation.variants' ({known})"
            )


def _xtreme_errors(config: dict[str, Any]) -> Iterator[str]:
    """The XTREME block: names exist, models are encoders that take the configured length, per-task
    blocks name configured tasks, settings build."""
    if "xtreme" not in config["tracks"]:
        return
    from robustft.data.xtreme import SETTINGS, XTREME_TASKS
    from robustft.train.config import TrainConfig, validate_train_settings
    from robustft.train.xtreme import XtremeSettings

    block, cache_dir = config["xtreme"], config["cache_dir"]
    registries = {"models": {}, "tasks": XTREME_TASKS, "methods": config["methods"]}
    found = []
    for where, grid in [("xtreme", block)] + [(f"xtreme.grids.{n}", g) for n, g in block["grids"].items()]:
        for key, registry in registries.items():
            found += _unknown_names(f"{where}.{key}", key, grid.get(key, []), registry)
        yield from _kind_errors(f"{where}.models", grid.get("models", []), "encoder", cache_dir)
    unknown = sorted(model for model in block["data_dir_by_model"] if _model_name_error(model))
    if unknown:
        found.append(f"config key 'xtreme.data_dir_by_model': unknown model(s) {unknown}")
    # train_by_task also takes "<task>/<setting>" keys (e.g. xnli/translate-train-all: {epochs: 1}).
    known = {"train_by_task": set(XTREME_TASKS) | {f"{t}/{s}" for t in XTREME_TASKS for s in SETTINGS}}
    for key in ("train_by_task", "run_by_task"):
        unknown = sorted(set(block[key]) - known.get(key, set(XTREME_TASKS)))
        if unknown:
            found.append(f"config key 'xtreme.{key}': unknown task(s) {unknown}")
    unknown = sorted(model for model in block["train_by_model"] if _model_name_error(model))
    if unknown:
        found.append(f"config key 'xtreme.train_by_model': unknown model(s) {unknown}")
    train_keys = set(TrainConfig.__dataclass_fields__)
    layers = [("xtreme.train", block["train"])]
    layers += [(f"xtreme.train_by_task.{t}", s) for t, s in block["train_by_task"].items()]
    layers += [(f"xtreme.train_by_model.{m}", s) for m, s in block["train_by_model"].items()]
    for where, layer in layers:
        unknown = sorted(set(layer or {}) - train_keys)
        if unknown:
            found.append(f"config key {where!r}: unknown key(s) {unknown}; known: {sorted(train_keys)}")
    yield from found
    if found:
        return  # the run grid below needs known names and settings
    if not xtreme_grid(config):
        yield "config key 'xtreme': the track is enabled but its grid has no runs"
    for model, task, setting in dict.fromkeys(run[:3] for run in xtreme_grid(config)):
        train = xtreme_train_settings(config, model, task, setting)
        try:
            validate_train_settings({**vars(TrainConfig()), **train})
            XtremeSettings(**xtreme_run_settings(config, task)).validate()
        except (TypeError, RunError) as err:
            yield f"config key 'xtreme' ({task}): {err}"
        if _model_kind(model, cache_dir) == "encoder":
            length = train.get("max_seq_length", TrainConfig().max_seq_length)
            problem = sequence_length_error(model, length, cache_dir)
            if problem:
                stack = [
                    ("train", config["train"]),
                    ("xtreme.train", block["train"]),
                    (f"xtreme.train_by_task.{task}", block["train_by_task"].get(task)),
                    (
                        f"xtreme.train_by_task.{task}/{setting}",
                        block["train_by_task"].get(f"{task}/{setting}"),
                    ),
                    (f"xtreme.train_by_model.{model}", block["train_by_model"].get(model)),
                ]
                yield f"config key {_last_setting(stack, 'max_seq_length')!r}: {problem}"
    for role in ("baseline", "method"):
        name = block["report"][role]
        if name not in config["methods"]:
            yield f"config key 'xtreme.report.{role}': {name!r} is not one of the configured methods"


def _track_grid(block: dict[str, Any], axes: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Every combination of `axes` in a track's block (xtreme, instruct), each once, in config order.

    Without `grids`: the product of the block's axes. With them: the union of the grids' products, a
    grid's missing axis defaulting to the block's (a mapping's keys: instruct's `recipes` is one).
    """
    grids = block["grids"].values() if block["grids"] else [{}]
    # A dict, not a set: it drops a run two grids share and keeps the order of first appearance.
    runs: dict[tuple[Any, ...], None] = {}
    for grid in grids:
        runs.update(dict.fromkeys(itertools.product(*(grid.get(axis, list(block[axis])) for axis in axes))))
    return list(runs)


def xtreme_grid(config: dict[str, Any]) -> list[tuple[str, str, str, str, int]]:
    """Every (model, task, setting, method, seed) of the XTREME track, each once, in config order."""
    return _track_grid(config["xtreme"], ("models", "tasks", "settings", "methods", "seeds"))


def xtreme_train_settings(config: dict[str, Any], model: str, task: str, setting: str) -> dict[str, Any]:
    """The top-level `train` block, then `xtreme.train`, `xtreme.train_by_task` at `task` and at
    `task/setting`, and `xtreme.train_by_model[model]`, each laid over the last (a model's settings, such
    as XLM-R large's smaller learning rate, win over a task's); less the output-only settings at their
    default."""
    block = config["xtreme"]
    by_task = block["train_by_task"]
    return _job_train_settings(
        {
            **config["train"],
            **block["train"],
            **(by_task.get(task) or {}),
            **(by_task.get(f"{task}/{setting}") or {}),
            **(block["train_by_model"].get(model) or {}),
        }
    )


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
    return _track_grid(config["instruct"], ("models", "datasets", "recipes", "methods", "seeds"))


def sft_arguments(config: dict[str, Any], recipe: str, method: str) -> str:
    """The `robustft sft` options that carry a method's components and the recipe's settings, quoted."""
    components = json.dumps(config["methods"][method] or {})
    settings = json.dumps(recipe_settings(config, recipe), sort_keys=True)
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


# Train settings that leave what a run trains and reports unchanged (report_to: TensorBoard event files
# beside the results; curve_eval_samples: a subset for the evaluations before the last one), with their
# default values. At its default such a setting is left out of a job's settings, and so out of its run
# directory's key: the runs named before the setting existed keep their directories. Set to anything
# else, it enters both like any other setting (a new key: the run is trained anew, with its files).
OUTPUT_ONLY_DEFAULTS: dict[str, Any] = {"report_to": "none", "curve_eval_samples": None}


def _job_train_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` less the output-only ones at their default (the run takes the same default)."""
    return {
        key: value
        for key, value in settings.items()
        if key not in OUTPUT_ONLY_DEFAULTS or value != OUTPUT_ONLY_DEFAULTS[key]
    }


def train_settings(config: dict[str, Any], task: str) -> dict[str, Any]:
    """The `train` block with the task's entry of `train_by_task` laid over it (mrpc@0.2 takes mrpc's),
    less the output-only settings at their default."""
    by_task = config["train_by_task"]
    return _job_train_settings(
        {**config["train"], **(by_task.get(task) or by_task.get(split_task_variant(task)[0]) or {})}
    )


def train_arguments(config: dict[str, Any], method: str, task: str) -> str:
    """The `robustft train` options that carry a method's components and the train settings, shell-quoted."""
    # Not sorted: components act in the order the config lists them (noisytune+smart != smart+noisytune).
    components = json.dumps(config["methods"][method] or {})
    settings = json.dumps(train_settings(config, task), sort_keys=True)
    return f"--method-components {shlex.quote(components)} --train-config {shlex.quote(settings)}"


def settings_key(components: dict[str, Any] | None, *settings: Any) -> str:
    """Eight hex digits naming the settings a run was given: its method components and its train (or
    SFT, run, evaluation) settings.

    A run directory is named by its identity (model, task, method, seed) *and* this key, so two configs
    that train the same name with different settings (the demo's MRPC on 300 examples, a replication's on
    700) never share, overwrite or pick up each other's runs, and configs with equal settings share them.
    The key is canonical: components keep their order (it is their order of action), every mapping inside
    is sorted, so a config that went through any JSON or YAML round trip names the same directories.
    """
    ordered = [[name, settings_of or {}] for name, settings_of in (components or {}).items()]
    canonical = json.dumps([ordered, *settings], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def config_name(config: dict[str, Any]) -> str:
    """The name of a config's outputs: its report's name (`report.name`, or `instruct.report.name` for a
    config that only runs the instruction-tuning track). Tables and artifacts live under it."""
    tracks = config["tracks"]
    if "glue" in tracks or "xtreme" in tracks:
        return str(config["report"]["name"])
    return str(config["instruct"]["report"]["name"])


def tables_dir(config: dict[str, Any]) -> str:
    """results/tables/<config name>: each config's runs.csv, xtreme.csv, instruct.csv and summaries."""
    return f"{RESULTS}/tables/{config_name(config)}"


def artifacts_dir(config: dict[str, Any]) -> str:
    """results/artifacts/<config name>: the paper artifacts built from that config's tables."""
    return f"{RESULTS}/artifacts/{config_name(config)}"


def glue_run_dir(config: dict[str, Any], model: str, task: str, method: str, seed: int) -> str:
    """results/runs/<model>/<task>/<method>/seed<S>-<settings key>; <model> is the model's path-safe name
    (model_path_name: microsoft/deberta-v3-base -> microsoft--deberta-v3-base), in every track."""
    key = settings_key(config["methods"][method], train_settings(config, task))
    return _glue_run_dir(model, task, method, seed, key)


def _glue_run_dir(model: str, task: str, method: str, seed: int, key: str) -> str:
    return f"{RESULTS}/runs/{model_path_name(model)}/{task}/{method}/{seed_dir_name(seed, key)}"


def glue_run_dirs(
    config: dict[str, Any], runs: Iterable[tuple[str, str, str, int]]
) -> dict[tuple[str, str, str, int], str]:
    """glue_run_dir of each (model, task, method, seed) in `runs`, in order. The settings key depends on
    the method and task only, so it is hashed once per pair: a grid of thousands of runs has a few
    hundred pairs, and the Snakefile names every run's directory at parse time."""
    keys: dict[tuple[str, str], str] = {}
    run_dirs: dict[tuple[str, str, str, int], str] = {}
    for model, task, method, seed in runs:
        if (method, task) not in keys:
            keys[method, task] = settings_key(config["methods"][method], train_settings(config, task))
        run_dirs[model, task, method, seed] = _glue_run_dir(model, task, method, seed, keys[method, task])
    return run_dirs


def xtreme_run_dir(
    config: dict[str, Any], model: str, task: str, setting: str, method: str, seed: int
) -> str:
    """results/xtreme/<model>/<task>/<setting>/<method>/seed<S>-<settings key>. A retrieval run (BUCC,
    Tatoeba) reads the encoder of the XNLI run of the same model, setting, method and seed, so its key
    includes that run's: two configs whose XNLI runs differ never share a retrieval directory."""
    components = config["methods"][method]
    settings = [xtreme_train_settings(config, model, task, setting), xtreme_run_settings(config, task)]
    if task in RETRIEVAL_TASKS:
        settings.append(
            parse_run_dir(xtreme_run_dir(config, model, "xnli", setting, method, seed), "xtreme").key
        )
    key = settings_key(components, *settings)
    return f"{RESULTS}/xtreme/{model_path_name(model)}/{task}/{setting}/{method}/{seed_dir_name(seed, key)}"


def recipe_settings(config: dict[str, Any], recipe: str) -> dict[str, Any]:
    """A recipe's SFT settings: `instruct.sft` with the recipe's entry laid over it."""
    block = config["instruct"]
    return {**block["sft"], **(block["recipes"][recipe] or {})}


def instruct_run_dir(
    config: dict[str, Any], model: str, dataset: str, recipe: str, method: str, seed: int
) -> str:
    """results/instruct/<model>/<dataset>/<recipe>/<method>/seed<S>-<settings key>."""
    # The generation, judge and leaderboard settings are part of the key: their outputs live inside the
    # run directory, so two configs that differ only in them must not share (and overwrite) it. The
    # generation variants are not: each has its own keyed folder (instruct_variant_dir), and adding one
    # must not move (and retrain) the run.
    block = config["instruct"]
    evaluation = {name: block[name] for name in ("generation", "judges", "leaderboard")}
    evaluation["generation"] = {k: v for k, v in block["generation"].items() if k != "variants"}
    key = settings_key(config["methods"][method], recipe_settings(config, recipe), evaluation)
    model_level = model_path_name(model)
    return f"{RESULTS}/instruct/{model_level}/{dataset}/{recipe}/{method}/{seed_dir_name(seed, key)}"


def instruct_variants(config: dict[str, Any]) -> dict[tuple[str, str, str, str, int], list[str]]:
    """Run -> the generation variants it gets: those of every grid it belongs to, in config order. Runs
    without variants are left out."""
    block, axes = config["instruct"], ("models", "datasets", "recipes", "methods", "seeds")
    variants: dict[tuple[str, str, str, str, int], dict[str, None]] = {}
    for grid in block["grids"].values():
        if not grid.get("variants"):
            continue
        for run in itertools.product(*(grid.get(axis, list(block[axis])) for axis in axes)):
            variants.setdefault(run, {}).update(dict.fromkeys(grid["variants"]))
    return {run: list(names) for run, names in variants.items()}


def instruct_variant_dir(
    config: dict[str, Any], model: str, dataset: str, recipe: str, method: str, seed: int, variant: str
) -> str:
    """<run dir>/variants/<name>-<key>: a variant's generations/ and judge/, laid out as the run's own."""
    from robustft.evals.generation import variant_dir_name

    settings = config["instruct"]["generation"]["variants"][variant]
    return f"{instruct_run_dir(config, model, dataset, recipe, method, seed)}/variants/" + variant_dir_name(
        variant, settings
    )


def generation_variant_arguments(config: dict[str, Any], variant: str) -> str:
    """The `robustft generate` options of a generation variant on the AlpacaEval prompts, quoted
    (sampling takes --seed, which the rule passes: the run's seed)."""
    generation = config["instruct"]["generation"]
    settings = generation["variants"][variant]
    options = {
        "system_prompt": "--system-prompt",
        "min_new_tokens": "--min-new-tokens",
        "top_p": "--top-p",
        "temperature": "--temperature",
    }
    arguments = ["--prompts alpaca_eval"]
    max_prompts = settings.get("max_prompts") or generation["max_prompts"]
    arguments += [f"--max-prompts {max_prompts}"] if max_prompts else []
    arguments += [
        f"{flag} {shlex.quote(str(settings[key]))}" for key, flag in options.items() if key in settings
    ]
    return " ".join(arguments + (["--do-sample"] if settings.get("do_sample") else []))


def training_jobs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every training job the workflow runs for `config`, with the settings it receives: its run
    directory, rule, method components and train (or SFT) settings. `robustft check-config FILE --jobs`
    prints these, and a test checks them against the jobs `snakemake -n` schedules."""
    tracks = config["tracks"]
    jobs: list[dict[str, Any]] = []
    if "glue" in tracks:
        for model, task, method, seed in run_grid(config):
            jobs.append(
                {
                    "rule": "train",
                    "run_dir": glue_run_dir(config, model, task, method, seed),
                    "method_components": config["methods"][method] or {},
                    "train": train_settings(config, task),
                }
            )
    if "xtreme" in tracks:
        for model, task, setting, method, seed in xtreme_grid(config):
            if task in RETRIEVAL_TASKS:
                continue  # retrieval: no training of its own (it reads the XNLI run's encoder)
            jobs.append(
                {
                    "rule": "xtreme_train",
                    "run_dir": xtreme_run_dir(config, model, task, setting, method, seed),
                    "method_components": config["methods"][method] or {},
                    "train": xtreme_train_settings(config, model, task, setting),
                    "xtreme": xtreme_run_settings(config, task),
                }
            )
    if "instruct" in tracks:
        for model, dataset, recipe, method, seed in instruct_grid(config):
            jobs.append(
                {
                    "rule": "sft",
                    "run_dir": instruct_run_dir(config, model, dataset, recipe, method, seed),
                    "method_components": config["methods"][method] or {},
                    "sft": recipe_settings(config, recipe),
                }
            )
    return jobs


def expected_run_dirs(config: dict[str, Any]) -> dict[str, list[str]]:
    """Per table (runs, xtreme, instruct): the run directories the config asks for. The report checks its
    tables against these, so it is built only from its own config's runs."""
    tracks = config["tracks"]
    return {
        "runs": list(glue_run_dirs(config, run_grid(config)).values()) if "glue" in tracks else [],
        "xtreme": [xtreme_run_dir(config, *run) for run in xtreme_grid(config)] if "xtreme" in tracks else [],
        "instruct": (
            [instruct_run_dir(config, *run) for run in instruct_grid(config)] if "instruct" in tracks else []
        ),
    }


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check a workflow config and fill in the schema's defaults, in place; the Snakefile calls this at
    parse time, before any job. Raises one ConfigError listing every schema and semantic error."""
    if not isinstance(config, dict):
        raise ConfigError(
            f"config: a config must be a mapping of keys to values, got {type(config).__name__}"
        )
    errors = schema_errors(config)
    errors += config_errors(config, malformed=bool(errors))
    if errors:
        raise ConfigError(errors)
    return config


def schema_errors(config: dict[str, Any]) -> list[str]:
    """Every error of `config` against workflow/schemas/config.schema.yaml, one line each naming its key;
    fills in the defaults as it goes, exactly as snakemake.utils.validate(set_default=True) does."""
    from jsonschema import Draft202012Validator, validators

    validate_properties = Draft202012Validator.VALIDATORS["properties"]

    def fill_defaults(validator, properties, instance, schema):
        # A missing key takes its default before the properties are checked, so the defaults of a
        # defaulted object fill in too (report: {} -> report.name, ...). Snakemake's validate does the
        # same but stops at the first error; collecting them all, a value of the wrong type can reach
        # here, and it has no keys to fill.
        if validator.is_type(instance, "object"):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    validator = validators.extend(Draft202012Validator, {"properties": fill_defaults})(load_schema())
    errors: list[str] = []
    for error in validator.iter_errors(config):
        errors += _describe_schema_error(error)
    return errors


def _config_key(path: Iterable[str | int]) -> str:
    """A config key as users write it: train_by_task.rte.epochs, seeds[1]."""
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else f"{'.' if key else ''}{part}"
    return key or "(top level)"


def _describe_schema_error(error: Any) -> list[str]:
    """One line per bad key; never the schema itself (jsonschema's str(error) prints it)."""
    if error.validator == "additionalProperties" and error.validator_value is False:
        allowed = sorted(error.schema.get("properties", {}))
        lines = []
        for name in error.instance:
            if name not in allowed:
                close = difflib.get_close_matches(str(name), allowed, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                key = _config_key([*error.absolute_path, name])
                lines.append(f"config key {key!r}: unknown key; {hint}allowed here: {allowed}")
        return lines
    message = error.message if len(error.message) <= 300 else error.message[:300] + "..."
    return [f"config key {_config_key(error.absolute_path)!r}: {message}"]


def load_config(path: Path) -> dict[str, Any]:
    """Read a workflow YAML, fill in the schema's defaults and check it the way the Snakefile does."""
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the config: {err}") from err
    if not isinstance(config, dict):
        raise ConfigError(
            f"{path}: a config must be a mapping of keys to values, got {type(config).__name__}"
        )
    try:
        return validate_config(config)
    except ConfigError as err:
        raise ConfigError(err.errors, source=path) from None
