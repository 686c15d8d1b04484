"""A Hugging Face Hub id as a model of the workflow: Snakemake names its runs, logs and command line by the
path-safe name (org--name), and the rules read the {model} wildcard back as the Hub id, so the job gets the
config's settings for that model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import REPO

HUB_ID = "acme/tiny-bert"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _cache_with_config(cache: Path) -> None:
    """A Hugging Face cache holding only HUB_ID's config.json: all a dry run reads of a model."""
    from transformers import BertConfig

    repo = cache / ("models--" + HUB_ID.replace("/", "--"))  # the cache's own naming
    BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37
    ).save_pretrained(repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


def test_dry_run_names_a_hub_models_run_by_its_path_safe_name(tmp_path: Path) -> None:
    from robustft.workflow_config import glue_run_dir, validate_config

    _cache_with_config(tmp_path / "hf")
    config = {
        "models": [HUB_ID],
        "tasks": ["rte"],
        "seeds": [1],
        "methods": {"finetune": {}},
        "cache_dir": str(tmp_path / "hf"),
        "train": {"epochs": 1, "max_train_samples": 16},
        "report": {"name": "hub"},
    }
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    run_dir = glue_run_dir(validate_config(dict(config)), HUB_ID, "rte", "finetune", 1)
    assert run_dir.startswith("results/runs/acme--tiny-bert/rte/finetune/seed1-")

    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    # The target before --configfile, which takes every argument after it.
    command += ["--directory", str(tmp_path), "-n", "-p", f"{run_dir}/metrics.json"]
    command += ["--configfile", str(config_file)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    # The job's command: the wildcard as the model (the command line reads it back as the Hub id), the
    # run directory and log under the path-safe name, and the config's train settings (a wildcard the
    # rules did not map back would have failed the run directory's key check above).
    assert " train --model acme--tiny-bert --task rte" in result.stdout
    assert f"--out $(dirname {run_dir}/metrics.json)" in result.stdout
    assert f"logs/train/acme--tiny-bert/rte/finetune/{Path(run_dir).name}.log" in result.stdout
    assert '"max_train_samples": 16' in result.stdout
