"""Snakemake dry-run time of a >=5,000-job grid, against a tiny grid timed in the same run.

    python benchmarks/dag_scale.py [--target 10] [--reps 3]

The target is about parsing the Snakefile, validating the config and building the DAG, so no data,
model or results need to exist: a dry run only compares paths. Two references are timed in the same
run, interleaved with it: the tiny grid (8 training jobs) separates the fixed cost (interpreter and
Snakemake start-up) from what grows per job, and a bare two-rule Snakefile with as many jobs shows
how much of the total is Snakemake's own per-job cost, which no change to our rules can remove.
Exit status: 0 when the large grid's median is within the target, 1 when over, 2 when Snakemake fails.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
# 5 models x 9 tasks x 23 methods x 5 seeds = 5,175 training jobs (+ aggregate, report, all).
LARGE_GRID: dict[str, Any] = {
    "models": ["minilm-l6", "bert-base", "xlnet-base", "roberta-base", "electra-base"],
    "tasks": ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"],
    "seeds": [1, 2, 3, 4, 5],
    # A lambda sweep is the realistic way a grid gets this wide; every preset is built by check_config.
    "methods": {
        "finetune": {},
        **{f"noisytune_l{k / 100:.2f}": {"noisytune": {"noise_lambda": k / 100}} for k in range(1, 23)},
    },
}
# 1 x 2 x 2 x 2 = 8 training jobs.
SMALL_GRID: dict[str, Any] = {
    "models": ["minilm-l6"],
    "tasks": ["cola", "sst2"],
    "seeds": [1, 2],
    "methods": {"finetune": {}, "noisytune": {"noisytune": {"noise_lambda": 0.15}}},
}


def snakemake_command() -> list[str]:
    # The venv's own entry point when there is one, so the benchmark times the Snakemake the project pins.
    exe = Path(sys.executable).with_name("snakemake")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "snakemake"]


def bare_snakefile(n_train: int) -> str:
    """The same DAG shape (n_train wildcard jobs gathered by one rule) with nothing of ours in it."""
    return f"""
rule all:
    input: expand("results/runs/job{{i}}/metrics.json", i=range({n_train}))

rule train:
    output: "results/runs/job{{i}}/metrics.json"
    shell: "touch {{output}}"
"""


def dry_run(snakefile: Path, configfile: Path | None, workdir: Path) -> tuple[float, str]:
    """One `snakemake -n`; returns wall-clock seconds and the combined output."""
    command = [*snakemake_command(), "-n", "--quiet", "rules", "--snakefile", str(snakefile)]
    if configfile is not None:
        command += ["--configfile", str(configfile)]
    command += ["--directory", str(workdir), "--cores", "1"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    output = done.stdout + done.stderr
    if done.returncode != 0:
        sys.stderr.write(f"snakemake failed (exit {done.returncode}): {' '.join(command)}\n{output[-3000:]}\n")
        sys.exit(2)
    return seconds, output


def job_counts(output: str) -> tuple[int, int]:
    """(training jobs, all jobs) from the dry run's "Job stats" table (printed even with --quiet rules)."""
    train = re.search(r"^train\s+(\d+)\s*$", output, re.MULTILINE)
    total = re.search(r"^total\s+(\d+)\s*$", output, re.MULTILINE)
    if not (train and total):
        sys.stderr.write(f"could not find the job counts in the dry-run output:\n{output[-3000:]}\n")
        sys.exit(2)
    return int(train.group(1)), int(total.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=10.0, help="max median seconds for the large grid")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per grid")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-Snakemake reference")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="robustft-dag-"))
    try:
        setups: dict[str, tuple[Path, Path | None, Path]] = {}
        for name, grid in (("baseline", SMALL_GRID), ("large", LARGE_GRID)):
            configfile = tmp / f"{name}.yaml"
            configfile.write_text(yaml.safe_dump(grid, sort_keys=False))
            setups[name] = (REPO / "Snakefile", configfile, tmp / f"work-{name}")
        if not args.no_bare:
            n_train = 1
            for key in ("models", "tasks", "methods", "seeds"):
                n_train *= len(LARGE_GRID[key])
            snakefile = tmp / "bare" / "Snakefile"
            snakefile.parent.mkdir()
            snakefile.write_text(bare_snakefile(n_train))
            setups["bare"] = (snakefile, None, snakefile.parent)
        # One untimed run each: pays for .pyc compilation and a cold file cache, which a user pays once.
        counts = {name: job_counts(dry_run(*setup)[1]) for name, setup in setups.items()}
        times: dict[str, list[float]] = {name: [] for name in setups}
        for _ in range(args.reps):  # interleaved, so a load spike on the machine hits both grids
            for name, setup in setups.items():
                times[name].append(dry_run(*setup)[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{'grid':<9} {'train jobs':>10} {'all jobs':>9} {'median s':>9} {'min s':>7} {'ms/job':>8}")
    for name in setups:
        train, total = counts[name]
        per_job_ms = 1000 * median[name] / total
        print(
            f"{name:<9} {train:>10} {total:>9} {median[name]:>9.2f} {min(times[name]):>7.2f} {per_job_ms:>8.2f}"
        )
    # Marginal cost: what each extra job adds once the fixed start-up (the baseline) is taken out.
    extra_jobs = counts["large"][1] - counts["baseline"][1]
    marginal_ms = 1000 * (median["large"] - median["baseline"]) / extra_jobs
    ratio = median["large"] / median["baseline"]
    print(
        f"large/baseline: {ratio:.2f}x the time for {counts['large'][1] / counts['baseline'][1]:.0f}x the jobs;"
        f" marginal cost {marginal_ms:.3f} ms per extra job"
    )
    if "bare" in median:
        print(
            f"large/bare: {median['large'] / median['bare']:.2f}x (our rules vs. Snakemake alone;"
            f" {1000 * median['bare'] / counts['bare'][1]:.2f} ms/job is Snakemake's own)"
        )
    passed = median["large"] <= args.target
    result = {
        "jobs": counts["large"][1],
        "train_jobs": counts["large"][0],
        "median_s": round(median["large"], 3),
        "baseline_jobs": counts["baseline"][1],
        "baseline_median_s": round(median["baseline"], 3),
        "ratio": round(ratio, 3),
        "marginal_ms_per_job": round(marginal_ms, 4),
        "bare_median_s": round(median["bare"], 3) if "bare" in median else None,
        "target_s": args.target,
        "pass": passed,
    }
    print(json.dumps(result))
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
