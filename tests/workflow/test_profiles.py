"""The Snakemake profiles: the cluster profile (slurm/) and the workflow profile (profiles/default/), read
with Snakemake's own parsers, and a dry run showing what the train and prefetch jobs get."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.cli import parse_set_resources
from snakemake.profiles import ProfileConfigFileParser
from snakemake.resources import Resources

from robustft.workflow_config import instruct_grid
from tests.helpers import FIXTURES, LOAD_WORKFLOW_SCRIPT, REPO

CLUSTER_PROFILE = REPO / "slurm" / "config.yaml"
WORKFLOW_PROFILE = REPO / "profiles" / "default" / "config.yaml"
SLURM_CONFIG = FIXTURES / "workflow-slurm.yaml"
NEFTUNE_CONFIG = REPO / "config" / "neftune.yaml"


def read_profile(path: Path) -> dict:
    with path.open() as handle:
        return ProfileConfigFileParser().parse(handle)


def evaluate(resources: Resources, attempt: int) -> dict:
    return {
        name: resource.evaluate(
            wildcards=None, input=None, attempt=attempt, threads=1, rulename="train", async_run=None
        ).value
        for name, resource in resources.items()
    }


def test_train_memory_and_time_grow_with_each_attempt() -> None:
    train = parse_set_resources(read_profile(WORKFLOW_PROFILE)["set-resources"])["train"]
    first, second, third = (evaluate(train, attempt) for attempt in (1, 2, 3))
    assert (first["mem_mb"], second["mem_mb"], third["mem_mb"]) == (8000, 16000, 24000)
    assert (first["runtime"], second["runtime"], third["runtime"]) == (240, 480, 720)
    assert first["cpus_per_gpu"] == 8
    assert first["slurm_extra"] == "--signal=TERM@120"  # time to checkpoint before the time limit
    assert "gpu" not in first  # from the config's gpus_per_run, so a CPU config never asks SLURM for GPUs


def test_default_resources_only_in_the_cluster_profile() -> None:
    """A default-resources block in the workflow profile would replace the cluster profile's whole block."""
    assert "default-resources" not in read_profile(WORKFLOW_PROFILE)
    cluster = read_profile(CLUSTER_PROFILE)
    assert cluster["executor"] == "slurm" and int(cluster["retries"]) >= 1
    assert cluster["rerun-incomplete"] == "True"
    names = {item.split("=", 1)[0] for item in cluster["default-resources"]}
    assert {"slurm_account", "slurm_partition", "mem_mb", "runtime"} <= names


@pytest.mark.parametrize(
    ("environment", "account", "partition"),
    [({}, "", ""), ({"SBATCH_ACCOUNT": "proj-1", "SBATCH_PARTITION": "all"}, "proj-1", "all")],
)
def test_account_and_partition_come_from_sbatch_variables(
    monkeypatch: pytest.MonkeyPatch, environment: dict, account: str, partition: str
) -> None:
    monkeypatch.delenv("SBATCH_ACCOUNT", raising=False)
    monkeypatch.delenv("SBATCH_PARTITION", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    defaults = Resources.parse(read_profile(CLUSTER_PROFILE)["default-resources"], allow_expressions=True)
    values = evaluate(defaults, attempt=1)
    # "all" stays a string (a bare `all` expression would be Python's built-in function).
    assert values["slurm_account"] == account and values["slurm_partition"] == partition


def dry_run(workdir: Path, *config: str) -> str:
    """`snakemake -n -p` of the whole workflow plus prefetch: the jobs' resources and shell commands."""
    command = [sys.executable, "-m", "snakemake", "all", "prefetch", "-n", "-p"]
    command += ["--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    command += ["--configfile", str(SLURM_CONFIG), "--config", *config]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def job_blocks(output: str, rule: str) -> list[str]:
    """The dry run's description of each job of `rule`, up to and including its shell command."""
    blocks = output.split("\nrule ")
    return [block for block in blocks if block.startswith(f"{rule}:")]


def test_dry_run_train_offline_on_cpu_by_default(tmp_path: Path) -> None:
    output = dry_run(tmp_path, "data_dir=resources/data")
    # Found next to the Snakefile even though Snakemake runs in another directory.
    assert f"workflow specific profile {REPO / 'profiles' / 'default'}" in output
    trains = job_blocks(output, "train")
    assert len(trains) == 2
    for block in trains:
        assert "gpu=0" in block and "mem_mb=8000" in block and "runtime=240" in block
        offline = "HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 "
        assert offline + "exec python -m robustft launch --gpus 0 -- train" in block
    (prefetch,) = job_blocks(output, "prefetch")
    assert "HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 python -m robustft prefetch" in prefetch


def test_dry_run_gpus_and_online_from_the_config(tmp_path: Path) -> None:
    output = dry_run(tmp_path, "data_dir=resources/data", "gpus_per_run=4", "offline=False")
    for block in job_blocks(output, "train"):
        assert "gpu=4" in block
        assert "\nShell command: exec python -m robustft launch --gpus 4 -- train" in block


# ---- the instruction-tuning jobs under `--profile slurm` (sizes from robustft.job_resources)

SEVEN_B = {"llama-2-7b", "llama-2-7b-chat", "llama-1-7b", "opt-6.7b"}

# Lists each job kind's rules, and whether Snakemake runs them locally, as it decides under an executor
# such as SLURM (a dry run never prints that decision).
LOCAL_RULES_SCRIPT = (
    LOAD_WORKFLOW_SCRIPT
    + """\
    print("LOCAL=" + json.dumps(sorted(workflow._localrules)))
"""
)


def neftune_with_a_local_judge(directory: Path) -> Path:
    """config/neftune.yaml (API judges) plus a judge that runs a model (kind local_hf)."""
    config = yaml.safe_load(NEFTUNE_CONFIG.read_text())
    config["instruct"]["judges"]["local"] = {"kind": "local_hf", "model": "smollm2-135m"}
    path = directory / "neftune-local-judge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def neftune_slurm_dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """`snakemake -n --profile slurm` of the NEFTune config (+ a local judge): (workdir, config, output)."""
    workdir = tmp_path_factory.mktemp("neftune")
    configfile = neftune_with_a_local_judge(workdir)
    command = [sys.executable, "-m", "snakemake", "all", "-n", "--profile", str(REPO / "slurm")]
    command += [
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("ROBUSTFT_MAX_JOB_MINUTES", None)
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, configfile, result.stdout + result.stderr


def job_resources(block: str) -> tuple[dict[str, str], dict[str, str]]:
    """(wildcards, resources) of one job in a dry run's output."""
    fields = {}
    for line in block.splitlines():
        name, _, value = line.strip().partition(": ")
        if name in ("wildcards", "resources"):
            fields[name] = dict(item.split("=", 1) for item in value.split(", "))
    return fields["wildcards"], fields["resources"]


def test_every_7b_sft_job_asks_for_enough_memory_time_and_a_sigterm(neftune_slurm_dry_run) -> None:
    _, _, output = neftune_slurm_dry_run
    jobs = [job_resources(block) for block in job_blocks(output, "sft")]
    config = yaml.safe_load(NEFTUNE_CONFIG.read_text())
    runs = instruct_grid(config)
    assert sorted(
        (w["model"], w["dataset"], w["recipe"], w["method"], int(w["seed"])) for w, _ in jobs
    ) == sorted(runs)
    seven_b = [(w, r) for w, r in jobs if w["model"] in SEVEN_B]
    assert len(seven_b) == sum(run[0] in SEVEN_B for run in runs) > 0
    for wildcards, resources in seven_b:
        # Full fine-tuning loads fp32 weights (~27 GB for 7B) on the host. docs/instruction-tuning.md
        # estimates ~4 GPU-hours for 3 epochs on an H100: ask for 1.5x that at least, up to the 24-hour cap.
        assert int(resources["mem_mb"]) >= 40_000, wildcards
        epochs = (config["instruct"]["recipes"][wildcards["recipe"]] or {}).get("epochs", 3)
        assert int(resources["runtime"]) >= min(1.5 * 80 * epochs, 24 * 60), wildcards
        assert resources["gpu"] == "1" and resources["cpus_per_gpu"] == "8"
        # SIGTERM early enough to write a 7B checkpoint (fp32 weights and Adam moments, ~80 GB) and stop.
        lead = int(resources["slurm_extra"].removeprefix("--signal=TERM@"))
        assert lead >= (120 if wildcards["recipe"] == "qlora" else 300), wildcards
    # More epochs, more time; a bigger model, more memory.
    runtime = {(w["model"], w["recipe"]): int(r["runtime"]) for w, r in jobs}
    assert (
        runtime["llama-2-7b", "epochs1"] < runtime["llama-2-7b", "default"] < runtime["llama-2-7b", "epochs5"]
    )
    memory = {w["model"]: int(r["mem_mb"]) for w, r in jobs}
    assert memory["llama-2-13b"] > memory["llama-2-7b"]
    # FreeLB's ascent steps are extra forward and backward passes: its run asks for more time than
    # fine-tuning's of the same model, data and recipe (Table 12).
    by_method = {(w["model"], w["dataset"], w["recipe"], w["method"]): int(r["runtime"]) for w, r in jobs}
    freelb = [key[:3] for key in by_method if key[3] == "freelb"]
    assert freelb
    for run in freelb:
        assert by_method[(*run, "freelb")] > by_method[(*run, "finetune")], run


def test_generation_evaluation_and_judge_jobs_are_sized_too(neftune_slurm_dry_run) -> None:
    _, _, output = neftune_slurm_dry_run
    for rule in ("generate", "lm_eval", "judge"):
        blocks = job_blocks(output, rule)
        assert blocks, rule
        for wildcards, resources in map(job_resources, blocks):
            assert resources["gpu"] == "1", (rule, wildcards)
            assert resources["slurm_extra"].startswith("--signal=TERM@")
            if wildcards["model"] in SEVEN_B and rule != "judge":
                memory, minutes = int(resources["mem_mb"]), int(resources["runtime"])
                assert memory >= 30_000 and minutes >= 90, (rule, wildcards)
    # The local judge is sized by its own model (SmolLM2-135M), not by the run's.
    judge_memory = {int(job_resources(block)[1]["mem_mb"]) for block in job_blocks(output, "judge")}
    assert judge_memory == {17_000}


def test_api_judges_run_where_snakemake_runs(neftune_slurm_dry_run) -> None:
    """Compute nodes have no network: an API judge (kind openai) is a local rule, a model judge is not."""
    workdir, configfile, output = neftune_slurm_dry_run
    api_judged = {job_resources(block)[0]["judge"] for block in job_blocks(output, "judge_api")}
    model_judged = {job_resources(block)[0]["judge"] for block in job_blocks(output, "judge")}
    assert api_judged == {"gpt4", "chatgpt"} and model_judged == {"local"}
    for block in job_blocks(output, "judge_api"):
        assert job_resources(block)[1]["gpu"] == "0"
        assert "\nShell command: python -m robustft judge" in block  # online: no HF_HUB_OFFLINE=1
    for block in job_blocks(output, "judge"):
        assert "\nShell command: HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python -m robustft judge" in block
    command = [sys.executable, "-c", LOCAL_RULES_SCRIPT, str(REPO / "Snakefile"), str(configfile)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("LOCAL=")]
    local_rules = set(json.loads(line.removeprefix("LOCAL=")))
    assert "judge_api" in local_rules
    assert not local_rules & {"judge", "sft", "generate", "lm_eval"}


def test_every_compute_rule_writes_a_benchmark_file() -> None:
    """Each compute rule (one that declares its threads) records its wall time and peak memory (Snakemake
    `benchmark:`) under BENCHMARKS/<rule>/, so `robustft resource-usage` can set the profile's requests
    against them. `use rule judge as judge_api` inherits judge's."""
    rules: dict[str, str] = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule )", path.read_text())[1:]:
            rules[block.split()[1].rstrip(":")] = block
    compute = {name for name, block in rules.items() if "\n    threads:" in block}
    assert {"train", "xtreme_train", "xtreme_retrieve", "sft", "generate", "judge", "lm_eval"} <= compute
    missing = sorted(name for name in compute if f"{{BENCHMARKS}}/{name}/" not in rules[name])
    assert not missing, f"compute rules without a benchmark file under BENCHMARKS/<rule>/: {missing}"
