# Config validation and the path helpers every rule file uses. Keep this cheap: on a cluster the
# Snakefile is parsed again for every job.
import json
import os
import sys
from pathlib import Path

from snakemake.utils import validate

# Run the package from this checkout, so the commit recorded in run.json is the code that ran.
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))

from robustft.provenance import config_hash
from robustft.workflow_config import check_config, train_arguments

validate(config, "../schemas/config.schema.yaml", set_default=True)
check_config(config)

ENV = "../../envs/robustft.yaml"
RUNS = "results/runs"
TABLES = "results/tables"


wildcard_constraints:
    model=r"[A-Za-z0-9_.-]+",
    task=r"[A-Za-z0-9_.-]+",
    method=r"[A-Za-z0-9_.+-]+",
    seed=r"\d+",


def run_metrics(model, task, method, seed):
    return f"{RUNS}/{model}/{task}/{method}/seed{seed}/metrics.json"


def all_run_metrics():
    return [
        run_metrics(model, task, method, seed)
        for model in config["models"]
        for task in config["tasks"]
        for method in config["methods"]
        for seed in config["seeds"]
    ]


def run_dir(wildcards, output):
    return str(Path(output.metrics).parent)


def method_arguments(wildcards):
    return train_arguments(config, wildcards.method)


def report_pdf():
    return f"results/reports/{config['report']['name']}.pdf"


def report_spec_json(wildcards):
    spec = {key: value for key, value in config["report"].items() if key != "name"}
    return json.dumps(spec, sort_keys=True)


def workflow_config_hash(wildcards):
    return config_hash(config)
