"""Snakemake parses the workflow without the heavy libraries.

On a cluster the Snakefile is parsed again for every job, and a dry run evaluates the rules' input and
parameter functions for every job, so what workflow/rules/common.smk imports costs every job: torch alone
took about 2 s of it when validating the config built the methods. A fresh interpreter runs what the
Snakefile does at parse time (common.smk itself, which is plain Python, with the config it is given) and
the functions the rules call while Snakemake builds the DAG, for shipped configs of every track, then
reports which heavy modules it imported.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from robustft.errors import MethodConfigError
from robustft.methods import COMPONENTS, build_method, check_method
from robustft.methods.base import DECLARED_HOOKS, Component, component_class
from tests.helpers import REPO

CONFIGS = ["config/config.yaml", "config/neftune-cpu.yaml", "config/noisytune-xtreme-cpu.yaml"]
# Snakemake itself imports pandas (and numpy); ours must not, nor the training and plotting stacks.
HEAVY = ("torch", "transformers", "datasets", "accelerate", "peft", "trl", "pandas", "scipy", "matplotlib")

PARSE_TIME = r"""
import json
import sys
from pathlib import Path

sys.path.insert(0, "src")  # as the Snakefile does
from robustft.evals.judges import judge_needs_network
from robustft.workflow_config import expected_run_dirs, load_config, training_jobs


class Wildcards(dict):
    # Snakemake's wildcards: a mapping whose names are also attributes.
    __getattr__ = dict.__getitem__


def run_wildcards(run_dir, **names):
    seed, key = Path(run_dir).name.removeprefix("seed").split("-")
    return Wildcards(names, seed=seed, key=key)


for path in sys.argv[2:]:
    config = load_config(Path(path))
    training_jobs(config)
    expected_run_dirs(config)
    rules = {"config": config}
    common = Path("workflow/rules/common.smk")
    exec(compile(common.read_text(), str(common), "exec"), rules)
    # Called where the rules are defined.
    rules["final_targets"]()
    rules["report_tables"]()
    rules["report_grid_manifests"]()
    rules["xtreme_prefetch_items"]()
    rules["log_locations"]("slurm")
    for table in ("runs", "xtreme", "instruct"):
        rules["artifacts_of"](table)
    for needs_network in (True, False):
        rules["judge_names"](needs_network)
    # Called per job while Snakemake builds the DAG.
    for function in ("workflow_config_json", "report_spec_json", "workflow_config_hash"):
        rules[function](Wildcards())
    for key in config["artifacts"]:
        paper, artifact = key.split("/")
        wildcards = Wildcards(paper=paper, artifact=artifact)
        for function in ("artifact_table", "artifact_context", "artifact_paper_model"):
            rules[function](wildcards)
    for model, task, method, seed in rules["RUN_GRID"][:1]:
        run_dir = rules["glue_run_dir"](config, model, task, method, seed)
        rules["method_arguments"](run_wildcards(run_dir, model=model, task=task, method=method))
    for model, dataset, recipe, method, seed in rules["INSTRUCT_GRID"][:1]:
        run_dir = rules["instruct_run_dir"](model, dataset, recipe, method, seed)
        names = {"model": model, "dataset": dataset, "recipe": recipe, "method": method}
        wildcards = run_wildcards(run_dir, **names)
        rules["sft_method_arguments"](wildcards)
        rules["instruct_report_spec"](wildcards)
        for prompts in rules["PROMPT_SETS"]:
            rules["generation_prompt_arguments"](Wildcards(wildcards, prompts=prompts))
        for variant, folder in rules["VARIANT_FOLDERS"].items():
            vkey = folder.rsplit("-", 1)[1]
            rules["variant_generation_arguments"](Wildcards(wildcards, variant=variant, vkey=vkey))
        rules["instruct_run_outputs"]((model, dataset, recipe, method, seed))
        for judge, settings in config["instruct"]["judges"].items():
            job = "judge_api" if judge_needs_network(settings) else "judge_model"
            for resource in rules["instruct_resources"](job).values():
                resource(Wildcards(wildcards, judge=judge), 1)
        for job in ("sft", "generate", "lm_eval"):
            for resource in rules["instruct_resources"](job).values():
                resource(wildcards, 1)
    for model, task, setting, method, seed in rules["XTREME_GRID"]:
        run_dir = rules["xtreme_run_dir"](config, model, task, setting, method, seed)
        names = {"model": model, "task": task, "setting": setting, "method": method}
        wildcards = run_wildcards(run_dir, **names)
        rules["xtreme_data_dir"](wildcards)
        if task in ("bucc2018", "tatoeba"):
            rules["xtreme_encoder_run"](wildcards)
        else:
            rules["xtreme_method_arguments"](wildcards)

heavy = sys.argv[1].split(",")
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in heavy)))
"""


def test_the_snakefiles_parse_time_code_imports_no_heavy_library() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PARSE_TIME, ",".join(HEAVY), *CONFIGS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert not imported, f"parsing the workflow imported {sorted({m.split('.')[0] for m in imported})}"


def test_the_artifact_index_lists_every_registered_artifact_with_its_table() -> None:
    from robustft.artifacts import ARTIFACTS
    from robustft.artifacts.index import ARTIFACT_TABLES

    assert {key: artifact.table for key, artifact in ARTIFACTS.items()} == ARTIFACT_TABLES


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_each_implementation_overrides_exactly_the_hooks_its_settings_declare(name: str) -> None:
    implementation = component_class(name)  # raises TypeError on a mismatch
    settings = COMPONENTS[name]
    assert implementation is not settings and issubclass(implementation, settings)
    assert dataclasses.fields(implementation) == dataclasses.fields(settings)
    for flag, hook in DECLARED_HOOKS.items():
        overridden = getattr(implementation, hook) is not getattr(Component, hook)
        assert getattr(settings, flag) == overridden, (flag, hook)


@pytest.mark.parametrize(
    ("name", "components"),
    [
        ("m", {"nosuch": {}}),
        ("m", {"noisytune": {"lambda": 0.1}}),
        ("m", {"noisytune": {"noise_lambda": 2}}),
        ("m", {"recadam": {"anneal_unit": "steps", "anneal_width": 0.1}}),
        ("m", {"smart": {"perturbation_norm": "x"}}),
        ("m", {"freelb": {}, "smart": {}}),
        ("m", {"freelb": {}, "r3f": {}}),
        ("smart", {"freelb": {}}),
        ("m", {"noisytune": 3}),
    ],
)
def test_check_method_fails_as_build_method_does(name: str, components: dict) -> None:
    with pytest.raises(MethodConfigError) as built:
        build_method(name, components)
    with pytest.raises(MethodConfigError) as checked:
        check_method(name, components)
    assert str(checked.value) == str(built.value)


def test_check_method_accepts_what_build_method_builds() -> None:
    components = {"noisytune": {"noise_lambda": 0.1}, "recadam": {"anneal_unit": "steps"}}
    check_method("noisytune+recadam", components)
    method = build_method("noisytune+recadam", components)
    assert [type(c).__name__ for c in method.components] == ["NoisyTune", "RecAdam"]
    assert method.optimizer_owner() is method.components[1]
