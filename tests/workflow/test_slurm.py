"""The workflow on a real SLURM cluster, as docs/cluster.md tells users to run it: prefetch on the login node,
then `snakemake --profile slurm`, which submits every training run with sbatch and runs the light rules
locally.

Needs a running cluster (`.ci/slurm-cluster.sh` starts a one-node one as root). Without one the test is
skipped, except under CI=true, where it fails: CI must not pass by skipping it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, REPO

pytestmark = [pytest.mark.slurm, pytest.mark.integration]

SHARED_DATA = Path(os.environ.get("ROBUSTFT_TEST_DATA", REPO.parent / "shared" / "data"))
CONFIG = FIXTURES / "workflow-slurm.yaml"
RUNS = [("minilm-l6", "rte", "finetune", 1), ("minilm-l6", "rte", "noisytune", 1)]
# This cluster has no accounting database, so no sacct; status checks from 5 s instead of 40 s.
CLUSTER_OPTIONS = [
    "--slurm-no-account",
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "5",
]


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; under CI=true this test must run (.ci/run starts .ci/slurm-cluster.sh)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    if shutil.which("sbatch") is None:
        unavailable("no SLURM cluster: sbatch is not on PATH")
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        unavailable(f"no SLURM cluster: sinfo failed ({err})")
    if states.returncode != 0:
        unavailable(f"no SLURM cluster: sinfo failed ({states.stderr.strip()})")
    if not {"idle", "mix", "alloc"} & set(states.stdout.split()):
        unavailable(f"no SLURM node is up (sinfo states: {states.stdout.split()})")
    if not (SHARED_DATA / "glue" / "RTE" / "train.tsv").exists():
        unavailable(f"real GLUE files not found at {SHARED_DATA}")


def snakemake(
    workdir: Path,
    *targets: str,
    timeout: int = 540,
    configfile: Path = CONFIG,
    options: tuple[str, ...] = (),
    succeeds: bool = True,
) -> str:
    """Run the workflow from the repository root, so `--profile slurm` is this repository's slurm/;
    `options`: further Snakemake options."""
    command = [sys.executable, "-m", "snakemake", *targets, "--profile", "slurm", *CLUSTER_OPTIONS, *options]
    command += ["--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    command += ["--configfile", str(configfile), "--config", f"data_dir={SHARED_DATA}"]
    # Jobs inherit this environment (sbatch --export=ALL): `python -m robustft` must be this interpreter.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    for name in ("SBATCH_ACCOUNT", "SBATCH_PARTITION", "SNAKEMAKE_PROFILE"):  # this cluster has neither
        env.pop(name, None)
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A shell that started us in the background ignores SIGINT, and Python keeps it ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Ctrl-C makes Snakemake scancel its jobs (SIGTERM would wait for them to finish).
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
        pytest.fail(f"snakemake ran over {timeout} s:\n{output[-6000:]}")
    assert (process.returncode == 0) == succeeds, output[-6000:]
    return output


def test_workflow_through_sbatch(slurm_cluster: None, tmp_path: Path) -> None:
    # The login-node step: a local rule, never a SLURM job.
    output = snakemake(tmp_path, "prefetch")
    assert "localrule prefetch:" in output and "submitted with SLURM jobid" not in output
    assert json.loads((tmp_path / "resources/prefetch.json").read_text())["local"]

    output = snakemake(tmp_path)
    assert "SLURM logs: " in output and "Job logs: " in output  # the onstart message
    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: .*/rule_(\w+)/", output))
    assert sorted(submitted.values()) == ["train", "train"]  # the two runs, and nothing else
    for rule in ("aggregate", "report"):
        assert f"localrule {rule}:" in output

    from robustft.workflow_config import glue_run_dir, load_config

    config = load_config(CONFIG)
    recorded = set()
    for run in RUNS:
        run_path = Path(glue_run_dir(config, *run))  # results/runs/<model>/<task>/<method>/seed<S>-<key>
        run_dir = tmp_path / run_path
        assert json.loads((run_dir / "metrics.json").read_text())["status"] == "ok"
        recorded.add(json.loads((run_dir / "run.json").read_text())["slurm_job_id"])
        log = (tmp_path / "logs/train" / Path(*run_path.parts[2:])).with_suffix(".log").read_text()
        # Trainer's progress bars reach the job's log (tqdm shows s/it below one step a second)
        assert "100%|" in log and ("it/s]" in log or "s/it]" in log), log[-2000:]
    assert recorded == set(submitted)  # each run recorded the id of the SLURM job that ran it
    assert (tmp_path / "results/reports/slurm.pdf").read_bytes().startswith(b"%PDF")


def test_a_packed_grid_runs_in_fewer_slurm_jobs_than_runs(slurm_cluster: None, tmp_path: Path) -> None:
    """Config `pack`: the two runs join one Snakemake group and go to SLURM as one job, side by side."""
    from robustft.workflow_config import glue_run_dir, load_config

    packed = tmp_path / "packed.yaml"  # --config would pass the nested number as text
    packed.write_text(CONFIG.read_text() + "pack: {runs_per_job: 2}\n")
    config = load_config(packed)
    run_dirs = [Path(glue_run_dir(config, *run)) for run in RUNS]
    targets = [str(run_dir / "metrics.json") for run_dir in run_dirs]
    # Without the group sizes on the command line Snakemake would submit one job per run: it stops first.
    output = snakemake(tmp_path, *targets, configfile=packed, succeeds=False)
    assert "--group-components train=2" in output and "submitted with SLURM jobid" not in output

    output = snakemake(tmp_path, *targets, configfile=packed, options=("--group-components", "train=2"))
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: .*/group_train_train/", output)
    assert len(submitted) == 1, output[-6000:]  # two runs, one job
    for run_dir in run_dirs:
        assert json.loads((tmp_path / run_dir / "metrics.json").read_text())["status"] == "ok"
        assert json.loads((tmp_path / run_dir / "run.json").read_text())["slurm_job_id"] == submitted[0]
