# Config validation and path helpers shared by the workflow files. Keep this cheap: on a cluster the
# Snakefile is parsed again for every job, so nothing here may import torch, transformers or pandas
# (tests/workflow/test_parse_imports.py runs this module's parse-time calls and checks).
import json
from pathlib import Path

from robustft.artifacts.index import ARTIFACT_TABLES, INSTRUCT_TABLES
from robustft.artifacts.index import artifact_table as table_of_artifact
from robustft.errors import ConfigError
from robustft.estimate import train_priorities  # the train rule's job order
from robustft.models import model_from_path_name  # a {model} wildcard is the model's path-safe name
from robustft.provenance import config_hash, grid_manifest_path
from robustft.evals.generation import variant_dir_name  # stdlib only at import
from robustft.workflow_config import (
    artifacts_dir,
    config_name,
    expected_run_dirs,
    generation_variant_arguments,
    glue_run_dir,
    glue_run_dirs,
    instruct_grid,
    instruct_variants,
    pack_group_components,
    recipe_settings,
    run_grid,
    sft_arguments,
    train_arguments,
    validate_config,
    xtreme_arguments,
    xtreme_grid,
    xtreme_run_dir,
)
from robustft.workflow_config import instruct_run_dir as package_instruct_run_dir
from robustft.workflow_config import tables_dir as config_tables_dir

# The schema (defaults filled in), then the registries and libraries: every error at once, before any job.
validate_config(config)

ENV = "../../envs/robustft.yaml"
# A run directory is .../seed<S>-<KEY>, KEY naming the run's settings (workflow_config.settings_key), so
# configs that differ in settings never share a run; each config's tables and artifacts live under its
# name (report.name), so configs never overwrite each other's tables.
RUNS = "results/runs"
# Each compute job's Snakemake benchmark (wall time, peak memory, CPU time) is BENCHMARKS/<rule>/<job>.tsv;
# `robustft resource-usage` reads them against the profile's requests (resource_usage.BENCHMARKS_DIR).
BENCHMARKS = "results/benchmarks"
NAME = config_name(config)
TABLES = config_tables_dir(config)
ARTIFACTS = artifacts_dir(config)
# Per table (runs, xtreme, instruct): a manifest named by the set of run directories the table holds. The
# step that builds the table writes it and the report reads it, so a changed grid rebuilds the table even
# where Snakemake has no metadata for it (provenance.grid_manifest_path).
GRID_MANIFEST = {
    table: str(grid_manifest_path(TABLES, table, run_dirs))
    for table, run_dirs in expected_run_dirs(config).items()
}
# Prefix of compute jobs' commands: compute nodes have no internet, so a cache miss must fail at once
# (with robustft's message naming the prefetch command) instead of retrying the network.
OFFLINE_ENV = "HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 " if config["offline"] else ""


def run_dir_of(run):
    """A (model, task, method, seed)'s run directory: the grid's are named once, at parse time."""
    return RUN_DIRS.get(run) or glue_run_dir(config, *run)


def run_metrics(model, task, method, seed):
    return f"{run_dir_of((model, task, method, seed))}/metrics.json"


def checked_key(wildcards, run_dir, settings):
    """A requested run directory whose key is not the config's (`run_dir`, named by the package) would
    train other settings under this config's name: stop, naming both."""
    expected = Path(run_dir).name
    if f"seed{wildcards.seed}-{wildcards.key}" != expected:
        raise ValueError(
            f"run directory key {wildcards.key!r} does not match this config's settings for "
            f"{dict(wildcards)} (the config names {run_dir}); request the path the config names"
        )
    return settings


RUN_GRID = run_grid(config)
# Every run's directory, named once: a grid of thousands of runs asks for each of them two or three times
# (the aggregate's inputs, the train job's key check), and naming one hashes its settings.
RUN_DIRS = glue_run_dirs(config, RUN_GRID)


def all_run_metrics():
    return [run_metrics(*run) for run in RUN_GRID]


def output_dir(wildcards, output):
    return str(Path(output[0]).parent)


def tables_dir_of_input(wildcards, input):
    return str(Path(input[0]).parent)


# Built once at parse time: a dry run of thousands of jobs then only looks them up.
TRAIN_ARGUMENTS = {
    (method, task): train_arguments(config, method, task)
    for method, task in {(method, task) for _, task, method, _ in RUN_GRID}
}


# Longest runs first (robustft.estimate.train_priorities): a machine running a few jobs at a time then ends
# on short runs, not on one long run training alone while the other cores idle.
TRAIN_PRIORITY = train_priorities(config)


def train_priority(wildcards):
    return TRAIN_PRIORITY[wildcards.task, wildcards.method]


def method_arguments(wildcards):
    w = wildcards
    run_dir = run_dir_of((model_from_path_name(w.model), w.task, w.method, int(w.seed)))
    return checked_key(wildcards, run_dir, TRAIN_ARGUMENTS[w.method, w.task])


# ---- several runs per cluster job (config `pack`; docs/cluster.md, "Many small runs in one job")
# The train rules join a Snakemake group each; Snakemake takes how many runs make one job from the command
# line only (--group-components), so check_pack_components checks it there when the run starts.
PACK_COMPONENTS = pack_group_components(config)  # {group: runs per job}; {} when runs are not packed


def pack_group(group):
    """A train rule's Snakemake group: `group` when runs are packed, else none (one job per run)."""
    return group if group in PACK_COMPONENTS else None


def run_gpu_resources(gpus_per_run, group):
    """A train rule's GPU request. Snakemake adds up the resources of the jobs of a group that run side by
    side, so packed runs each ask for no `gpu` and for the text resource `gres` (gpu:1), which is the same
    for every run of the pack and so taken once: a pack's job gets one GPU, its runs share it."""
    if pack_group(group) is None or gpus_per_run == 0:
        return {"gpu": gpus_per_run}
    return {"gpu": 0, "gres": f"gpu:{gpus_per_run}"}


def check_pack_components(workflow):
    """Stop before submitting anything when runs are packed for a cluster but the command line does not
    give the groups' sizes: Snakemake would submit one job per run. Locally, groups do nothing."""
    if not PACK_COMPONENTS or workflow.local_exec:
        return
    given = dict(workflow.group_settings.group_components)
    if any(given.get(group) != runs for group, runs in PACK_COMPONENTS.items()):
        flag = " ".join(f"{group}={runs}" for group, runs in PACK_COMPONENTS.items())
        raise ConfigError(
            f"config key 'pack.runs_per_job' is {config['pack']['runs_per_job']}: run Snakemake with "
            f"`--group-components {flag}` (Snakemake reads group sizes from its command line only); "
            f"given: {given or 'none'}"
        )


def report_pdf():
    return f"results/reports/{config['report']['name']}.pdf"


def artifacts_of(table):
    """The config's artifacts that are functions of `table` (runs: GLUE track; instruct)."""
    return [key for key in config["artifacts"] if ARTIFACT_TABLES[key] == table]


def artifact_table(wildcards):
    return f"{TABLES}/{table_of_artifact(f'{wildcards.paper}/{wildcards.artifact}')}.csv"


def workflow_config_json(wildcards):
    """The resolved config, for the commands that collect or check exactly its runs (they name the run
    directories with the package's functions). Not key-sorted: method components act in their order."""
    return json.dumps(config)


def final_targets():
    targets = []
    if "glue" in config["tracks"] or "xtreme" in config["tracks"]:
        targets.append(report_pdf())  # the paper's PDF: GLUE artifacts and/or NoisyTune Table 3
    if "instruct" in config["tracks"]:
        targets.append(instruct_report_pdf())
    return targets


def report_spec_json(wildcards):
    spec = {key: value for key, value in config["report"].items() if key != "name"}
    return json.dumps(spec, sort_keys=True)


def workflow_config_hash(wildcards):
    return config_hash(config)


def log_locations(executor):
    """Where each job's output goes, printed once when a run starts."""
    logs = Path("logs").resolve()
    lines = [
        f"Job logs: {logs}/<rule>/..., one per job; training progress in "
        f"{logs}/train/<model>/<task>/<method>/seed<S>-<key>.log",
    ]
    if executor == "slurm":
        slurm_logs = Path(".snakemake/slurm_logs").resolve()
        lines.append(
            f"SLURM logs: {slurm_logs}/rule_<rule>/<wildcards>/<job id>.log (deleted when the "
            "job succeeds, unless --slurm-keep-successful-logs)"
        )
    return "\n".join(lines)


def instruct_artifact(wildcards):
    """Whether the artifact is one of the instruction-tuning track's (instruct.csv or its embedding tables)."""
    return table_of_artifact(f"{wildcards.paper}/{wildcards.artifact}") in INSTRUCT_TABLES


def artifact_paper_model(wildcards):
    """Our model -> the paper's, from the report block of the artifact's track."""
    if instruct_artifact(wildcards):
        return json.dumps(config["instruct"]["report"]["paper_model"])
    if artifact_table(wildcards).endswith("xtreme.csv"):
        return json.dumps(config["xtreme"]["report"]["paper_model"])
    return json.dumps(config["report"]["paper_model"])


def artifact_context(wildcards):
    """Track naming an instruct artifact needs: judge, baseline, paper dataset names, recipes' epochs."""
    if artifact_table(wildcards).endswith("xtreme.csv"):
        # Not named `report`: at the start of a line that is a Snakemake keyword.
        naming = config["xtreme"]["report"]
        keys = ("baseline", "method", "mechanics_check", "choices")
        return json.dumps({key: naming[key] for key in keys}, sort_keys=True)
    if not instruct_artifact(wildcards):
        return "{}"
    block = config["instruct"]
    epochs = {name: recipe_settings(config, name).get("epochs", 3) for name in block["recipes"]}
    context = {
        "judge": next(iter(block["judges"]), None),
        "judge_for": block["report"]["judge_for"],
        "baseline": block["report"]["baseline"],
        "paper_dataset": block["report"]["paper_dataset"],
        "recipe_epochs": epochs,
    }
    return json.dumps(context, sort_keys=True)


# ---- the instruction-tuning track (rules in instruct.smk)
INSTRUCT = "results/instruct"
INSTRUCT_RUN = f"{INSTRUCT}/{{model}}/{{dataset}}/{{recipe}}/{{method}}/seed{{seed}}-{{key}}"
INSTRUCT_GRID = instruct_grid(config) if "instruct" in config["tracks"] else []
INSTRUCT_BLOCK = config["instruct"]
# The generate rules' settings, the variants left out: Snakemake reruns a job whose params changed, and
# adding a variant must not rerun every plain generation (nor the other variants).
GENERATION_SETTINGS = {key: value for key, value in INSTRUCT_BLOCK["generation"].items() if key != "variants"}
# The AlpacaEval generations feed the judges and Table 4; the training-prompt ones Figure 5.
PROMPT_SETS = ["alpaca_eval"] + (["train_prompts"] if INSTRUCT_BLOCK["generation"]["train_prompts"] else [])


def instruct_run_dir(model, dataset, recipe, method, seed):
    return package_instruct_run_dir(config, model, dataset, recipe, method, seed)


# NEFTune Tables 5 and 10: generation variants of a run (instruct.generation.variants, named by a grid's
# `variants`), generated and judged beside its plain generation in <run>/variants/<name>-<key>/, the key
# naming the variant's settings (generate_variant, judge_variant in instruct.smk).
INSTRUCT_VARIANTS = instruct_variants(config) if "instruct" in config["tracks"] else {}
VARIANT_FOLDERS = {
    name: variant_dir_name(name, settings) for name, settings in INSTRUCT_BLOCK["generation"]["variants"].items()
}
# The folders of the variants some run gets: collect_instruct reads these (and no folder of other settings).
USED_VARIANT_FOLDERS = [VARIANT_FOLDERS[name] for name in dict.fromkeys(sum(INSTRUCT_VARIANTS.values(), []))]
VARIANT_WILDCARDS = {"variant": r"[A-Za-z0-9_.]+", "vkey": r"[0-9a-f]{8}"}  # the schema's variant names


def instruct_run_outputs(run):
    run_dir = instruct_run_dir(*run)
    outputs = [f"{run_dir}/sft/metrics.json", f"{run_dir}/text_stats.json"]
    outputs += [f"{run_dir}/generations/{prompts}.summary.json" for prompts in PROMPT_SETS]
    outputs += [f"{run_dir}/judge/{judge}.json" for judge in INSTRUCT_BLOCK["judges"]]
    outputs += [f"{run_dir}/leaderboard/{task}.json" for task in INSTRUCT_BLOCK["leaderboard"]["tasks"]]
    if "train_prompts" in PROMPT_SETS:
        outputs.append(f"{run_dir}/overlap.json")
    for variant in INSTRUCT_VARIANTS.get(tuple(run), []):
        folder = f"{run_dir}/variants/{VARIANT_FOLDERS[variant]}"
        outputs.append(f"{folder}/generations/alpaca_eval.summary.json")
        outputs += [f"{folder}/judge/{judge}.json" for judge in INSTRUCT_BLOCK["judges"]]
    return outputs


def variant_generation_arguments(wildcards):
    """A variant's `robustft generate` options; its folder must be the one the config names for it."""
    expected = VARIANT_FOLDERS.get(wildcards.variant)
    if f"{wildcards.variant}-{wildcards.vkey}" != expected:
        raise ValueError(
            f"generation variant folder {wildcards.variant}-{wildcards.vkey} is not this config's "
            f"(instruct.generation.variants names {expected or f'no variant {wildcards.variant!r}'})"
        )
    return generation_variant_arguments(config, wildcards.variant)


def sft_method_arguments(wildcards):
    w = wildcards
    run_dir = instruct_run_dir(model_from_path_name(w.model), w.dataset, w.recipe, w.method, int(w.seed))
    return checked_key(wildcards, run_dir, sft_arguments(config, w.recipe, w.method))


def instruct_report_pdf():
    return f"results/reports/{INSTRUCT_BLOCK['report']['name']}.pdf"


def instruct_report_spec(wildcards):
    settings = {
        "methods": {m: config["methods"][m] for m in dict.fromkeys(run[3] for run in INSTRUCT_GRID)},
        "recipes": INSTRUCT_BLOCK["recipes"],
        "sft": INSTRUCT_BLOCK["sft"],
        "generation": INSTRUCT_BLOCK["generation"],
        # Judge settings name the API key's environment variable, never the key.
        "judges": INSTRUCT_BLOCK["judges"],
        "leaderboard": INSTRUCT_BLOCK["leaderboard"],
    }
    return json.dumps({**INSTRUCT_BLOCK["report"], "settings": settings}, sort_keys=True)


def generation_prompt_arguments(wildcards):
    """AlpacaEval: the first max_prompts (all 805 by default); training prompts: a seeded sample."""
    settings = INSTRUCT_BLOCK["generation"]
    if wildcards.prompts == "train_prompts":
        return f"--prompts train --max-prompts {settings['train_prompts']}"
    return "--prompts alpaca_eval" + (f" --max-prompts {settings['max_prompts']}" if settings["max_prompts"] else "")


# What each instruction-tuning job asks a cluster for, from the model's parameter count and the attempt
# (robustft.job_resources). In the rules, so the workflow profile's set-resources can still override them.
def instruct_job_size(job, wildcards):
    """(model, GPUs, SFT settings) that size a `job` of run `wildcards`."""
    sft = recipe_settings(config, wildcards.recipe)
    gpus = INSTRUCT_BLOCK["gpus_per_run"] if job == "sft" else min(INSTRUCT_BLOCK["gpus_per_run"], 1)
    if job == "judge_model":  # sized by the judge's own model (its settings' default when unnamed)
        from robustft.evals.judges import build_judge

        return build_judge(INSTRUCT_BLOCK["judges"][wildcards.judge]).model, gpus, sft
    return model_from_path_name(wildcards.model), gpus, sft


def instruct_resources(job):
    """A rule's mem_mb, runtime, slurm_extra (SIGTERM before the time limit) and cpus_per_gpu, evaluated per
    job and attempt. The rules set `gpu` themselves."""
    from robustft.job_resources import instruct_job_resources
    from robustft.methods.settings import method_passes

    def evaluate(wildcards, attempt):
        model, gpus, sft = instruct_job_size(job, wildcards)
        passes, _ = method_passes(config["methods"][wildcards.method], sft.get("precision", "fp32"))
        resources = instruct_job_resources(
            job, model, attempt, gpus=gpus, epochs=sft.get("epochs", 3), adapter=sft.get("adapter", "full"),
            passes=passes, cache_dir=config["cache_dir"],
        )
        return resources.snakemake_resources()

    names = ["mem_mb", "runtime", "slurm_extra"] + (["cpus_per_gpu"] if job == "sft" else [])
    return {name: (lambda wildcards, attempt, name=name: evaluate(wildcards, attempt)[name]) for name in names}


def judge_names(needs_network):
    """A wildcard pattern matching the configured judges whose kind needs the network (they run where
    Snakemake runs: compute nodes are offline), or those that do not (they run on a compute node)."""
    import re

    from robustft.evals.judges import judge_needs_network

    names = [n for n, settings in INSTRUCT_BLOCK["judges"].items() if judge_needs_network(settings) == needs_network]
    return "|".join(re.escape(name) for name in names) or "(?!)"  # (?!): matches nothing


# ---- the XTREME track (rules in xtreme.smk)
XTREME = "results/xtreme"
XTREME_RUN = f"{XTREME}/{{model}}/{{task}}/{{setting}}/{{method}}/seed{{seed}}-{{key}}"
XTREME_GRID = xtreme_grid(config) if "xtreme" in config["tracks"] else []
XTREME_BLOCK = config["xtreme"]
# Built once at parse time, like TRAIN_ARGUMENTS.
XTREME_ARGUMENTS = {
    (model, task, setting, method): xtreme_arguments(config, model, task, setting, method)
    for model, task, setting, method in {run[:4] for run in XTREME_GRID}
    | {(run[0], "xnli", *run[2:4]) for run in XTREME_GRID if run[1] in ("bucc2018", "tatoeba")}
}


def xtreme_run_metrics(model, task, setting, method, seed):
    return f"{xtreme_run_dir(config, model, task, setting, method, seed)}/metrics.json"


def xtreme_method_arguments(wildcards):
    w, model = wildcards, model_from_path_name(wildcards.model)
    arguments = XTREME_ARGUMENTS[model, w.task, w.setting, w.method]
    run_dir = xtreme_run_dir(config, model, w.task, w.setting, w.method, int(w.seed))
    return checked_key(wildcards, run_dir, arguments)


def xtreme_encoder_run(wildcards):
    """The XNLI run (same model, setting, method and seed) whose encoder a retrieval run reads."""
    w = wildcards
    return xtreme_run_metrics(model_from_path_name(w.model), "xnli", w.setting, w.method, int(w.seed))


def xtreme_data_dir(wildcards):
    return XTREME_BLOCK["data_dir_by_model"].get(model_from_path_name(wildcards.model), config["data_dir"])


def report_tables():
    """The tables the paper's report reads: runs.csv (GLUE track) and/or xtreme.csv."""
    tables = []
    if "glue" in config["tracks"]:
        tables.append(f"{TABLES}/runs.csv")
    if "xtreme" in config["tracks"]:
        tables.append(f"{TABLES}/xtreme.csv")
    return tables


def report_grid_manifests():
    """The grid manifests of report_tables(): a changed grid names new ones, so the tables are rebuilt."""
    tracks = config["tracks"]
    return [GRID_MANIFEST[table] for table, track in (("runs", "glue"), ("xtreme", "xtreme")) if track in tracks]


def xtreme_prefetch_items():
    """TASK:SETTING:EVAL_SPLIT:TRAIN_SPLIT for `robustft prefetch --xtreme`, once each, for the runs that
    read `data_dir` (a model with its own `data_dir_by_model` reads local files only)."""
    from robustft.workflow_config import xtreme_run_settings

    items = {}
    for model, task, setting, method, seed in XTREME_GRID:
        if model in XTREME_BLOCK["data_dir_by_model"]:
            continue
        settings = {"eval_split": "test", "train_split": "train", **xtreme_run_settings(config, task)}
        items[f"{task}:{setting}:{settings['eval_split']}:{settings['train_split']}"] = None
    return list(items)


# NEFTune Figures 6-8 (workflow/rules/instruct.smk): the analysed models' settings, the SFT runs Figure 7
# reads, and the jobs' resources.
from robustft.evals.embedding_analysis import embedding_settings, spectrum_runs  # no torch at import

EMBEDDINGS = embedding_settings(INSTRUCT_BLOCK)
SPECTRUM_RUNS = [
    {**run, "run_dir": instruct_run_dir(run["model"], run["dataset"], run["recipe"], run["method"], run["seed"])}
    for run in spectrum_runs(INSTRUCT_GRID, EMBEDDINGS)
]


def embedding_resources():
    """Sized as a generation job of the largest analysed model: the job holds one model at a time."""

    def evaluate(attempt):
        from robustft.job_resources import instruct_job_resources, model_parameters

        model = max(EMBEDDINGS["models"], key=lambda name: model_parameters(name, config["cache_dir"]))
        gpus = min(INSTRUCT_BLOCK["gpus_per_run"], 1)
        return instruct_job_resources(
            "generate", model, attempt, gpus=gpus, cache_dir=config["cache_dir"]
        ).snakemake_resources()

    names = ("mem_mb", "runtime", "slurm_extra")
    return {name: (lambda wildcards, attempt, name=name: evaluate(attempt)[name]) for name in names}


# ---- `snakemake --report report.zip`: how Snakemake's HTML report files each table and figure (the
# report() flags of the rules; captions in workflow/report/). Called only when the report is built, after
# every job has run, so an artifact's result.json is there to name its paper and title.
def table_report(path, caption, track):
    """A table flagged for the report: category Tables, one subcategory per track, its file name as label.
    `caption` is a file of workflow/report/ (the path is relative to the rule files)."""
    return report(
        path,
        caption=f"../report/{caption}",
        category="Tables",
        subcategory=track,
        labels={"table": Path(path).name, "config": NAME},
    )


def artifact_record(output):
    return json.loads(Path(output.result).read_text(encoding="utf-8"))


def artifact_paper(wildcards, output):
    """An artifact's category: its paper as the artifact names it (NoisyTune, SMART, NEFTune, robustft)."""
    return artifact_record(output)["paper"]


def artifact_name(wildcards, output):
    """An artifact's subcategory: the paper's name for it (Table 2, Figure 3, ...)."""
    return artifact_record(output)["artifact"]


def artifact_labels(wildcards, output):
    """The file first: Snakemake never turns the first label into a toggle, so each file keeps its row."""
    record = artifact_record(output)
    # A file of the artifact's folder has the `file` wildcard of the folder's report patterns.
    file = getattr(wildcards, "file", Path(output.claims).name)
    return {"file": file, "title": record["title"], "status": record["status"]}


def curve_track(wildcards):
    """A learning curve's subcategory: the XTREME track's file names have a setting, GLUE's do not."""
    return "Learning curves: XTREME" if getattr(wildcards, "setting", None) else "Learning curves: GLUE"


def curve_labels(wildcards):
    """One label, so no column becomes a toggle that hides half the rows."""
    parts = [wildcards.model, getattr(wildcards, "setting", None), wildcards.task]
    return {"figure": " · ".join(part for part in parts if part)}
