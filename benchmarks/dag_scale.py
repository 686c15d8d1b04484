"""Snakemake dry-run time of a >=5,000-job grid, against references timed in the same run.

    python benchmarks/dag_scale.py [--target 10] [--bare-target 1.2] [--reps 3] [--no-bare] [--twin]

The target is about parsing the Snakefile, validating the config and building the DAG, so no data,
model or results need to exist: a dry run only compares paths. Two references are timed in the same
run, interleaved with it: the tiny grid (8 training jobs) separates the fixed cost (interpreter and
Snakemake start-up) from what grows per job, and a bare two-rule Snakefile with as many jobs shows how
much of the total is Snakemake's own per-job cost, which no change to our rules can remove. The ratio of
the two (large/bare, `bare_ratio` in the JSON line) is what our rules and parse-time code add; unlike the
seconds it hardly depends on the machine, so it has a target of its own (--bare-target, reported only).
The bare file is the same jobs, not the same rule: it has none of the train rule's directives (five
wildcards, log, benchmark, params, priority, threads, resources, conda, the workflow profile's per-job
resource expressions, a long shell command), whose per-job cost Snakemake pays in the bare ratio too.
--twin adds a third reference that has all of them, with constant values and no code of ours, to split
the ratio into Snakemake's cost of those directives (twin/bare) and our Python's (large/twin).
Exit status: 0 when the large grid's median is within the target, 1 when over, 2 when Snakemake fails.
"""

from __future__ import annotations

import argparse
import json
import math
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
    # A lambda sweep is the realistic way a grid gets this wide; check_config builds every preset.
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
GRID_KEYS = ("models", "tasks", "methods", "seeds")

# One dry run: (Snakefile, config file or None, working directory).
Setup = tuple[Path, Path | None, Path]


def bare_snakefile(n_train: int) -> str:
    """The same DAG shape (n_train wildcard jobs gathered by one rule) with nothing of ours in it."""
    return f"""
rule all:
    input: expand("results/runs/job{{i}}/metrics.json", i=range({n_train}))

rule train:
    output: "results/runs/job{{i}}/metrics.json"
    shell: "touch {{output}}"
"""


def twin_snakefile(grid: dict[str, Any]) -> str:
    """The train rule's directives and shell command, the workflow's wildcard constraints, a workflow
    profile beside it (twin_setup): everything the large grid's train jobs make Snakemake do, with
    constants and lambdas in place of our functions, and no other rule or parse-time code."""
    lists = {key: list(grid[key]) for key in GRID_KEYS}
    return f"""
wildcard_constraints:
    model=r"[A-Za-z0-9_.-]+",
    task=r"[A-Za-z0-9_.@-]+",
    method=r"[A-Za-z0-9_.+-]+",
    seed=r"\\d+",
    key=r"[0-9a-f]{{8}}",

rule all:
    input:
        expand(
            "results/runs/{{model}}/{{task}}/{{method}}/seed{{seed}}-0123abcd/metrics.json",
            model={lists["models"]!r},
            task={lists["tasks"]!r},
            method={lists["methods"]!r},
            seed={lists["seeds"]!r},
        ),

rule train:
    output:
        metrics="results/runs/{{model}}/{{task}}/{{method}}/seed{{seed}}-{{key}}/metrics.json",
    log:
        "logs/train/{{model}}/{{task}}/{{method}}/seed{{seed}}-{{key}}.log",
    benchmark:
        "results/benchmarks/train/{{model}}/{{task}}/{{method}}/seed{{seed}}-{{key}}.tsv"
    params:
        method_args=lambda wildcards: "--method-components '{{}}' --train-config '{{}}'",
        data_dir="resources/data",
        cache_dir="resources/hf",
        offline_env="HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 ",
    group:
        None
    priority:
        lambda wildcards: 1
    threads: 1
    resources:
        gpu=0,
    conda:
        "env.yaml"
    shell:
        "{{params.offline_env}}exec python -m robustft launch --gpus {{resources.gpu}} --"
        " train --model {{wildcards.model}} --task {{wildcards.task}}"
        " --method {{wildcards.method}} --seed {{wildcards.seed}} --out $(dirname {{output.metrics}})"
        " --data-dir {{params.data_dir}} --cache-dir {{params.cache_dir}} --threads {{threads}}"
        " {{params.method_args}} > {{log}} 2>&1"
"""


def twin_setup(tmp: Path) -> Setup:
    """The twin Snakefile in its own folder, with the project's workflow profile beside it (Snakemake finds
    profiles/default next to the Snakefile, as it does for ours) and a conda file for its directive."""
    folder = tmp / "twin"
    (folder / "profiles").mkdir(parents=True)
    shutil.copytree(REPO / "profiles" / "default", folder / "profiles" / "default")
    (folder / "env.yaml").write_text("dependencies: [python]\n")
    snakefile = folder / "Snakefile"
    snakefile.write_text(twin_snakefile(LARGE_GRID))
    return snakefile, None, folder


def snakemake_command() -> list[str]:
    # The venv's own entry point when there is one, so we time the Snakemake the project pins.
    exe = Path(sys.executable).with_name("snakemake")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "snakemake"]


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
        sys.stderr.write(f"snakemake failed (exit {done.returncode}): {' '.join(command)}\n")
        sys.stderr.write(output[-3000:] + "\n")
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


def make_setups(tmp: Path, bare: bool, twin: bool = False) -> dict[str, Setup]:
    setups: dict[str, Setup] = {}
    for name, grid in (("baseline", SMALL_GRID), ("large", LARGE_GRID)):
        configfile = tmp / f"{name}.yaml"
        configfile.write_text(yaml.safe_dump(grid, sort_keys=False))
        setups[name] = (REPO / "Snakefile", configfile, tmp / f"work-{name}")
    if bare:
        snakefile = tmp / "bare" / "Snakefile"
        snakefile.parent.mkdir()
        snakefile.write_text(bare_snakefile(math.prod(len(LARGE_GRID[key]) for key in GRID_KEYS)))
        setups["bare"] = (snakefile, None, snakefile.parent)
    if twin:
        setups["twin"] = twin_setup(tmp)
    return setups


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", type=float, default=10.0, help="max median seconds, large grid")
    parser.add_argument(
        "--bare-target", type=float, default=1.2, help="max ratio of the large grid's median to the bare's"
    )
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per grid")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-Snakemake reference")
    parser.add_argument(
        "--twin", action="store_true", help="also time the bare jobs with the train rule's directives"
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="robustft-dag-"))
    try:
        setups = make_setups(tmp, bare=not args.no_bare, twin=args.twin)
        # One untimed run each: pays for .pyc compilation and a cold file cache, which a user pays once.
        counts = {name: job_counts(dry_run(*setup)[1]) for name, setup in setups.items()}
        times: dict[str, list[float]] = {name: [] for name in setups}
        for _ in range(args.reps):  # interleaved, so a load spike on a shared machine hits every grid
            for name, setup in setups.items():
                times[name].append(dry_run(*setup)[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{'grid':<9} {'train jobs':>10} {'all jobs':>9} {'median s':>9} {'min s':>7} {'ms/job':>8}")
    for name in setups:
        train, total = counts[name]
        row = f"{name:<9} {train:>10} {total:>9} {median[name]:>9.2f} {min(times[name]):>7.2f}"
        print(f"{row} {1000 * median[name] / total:>8.2f}")
    # Marginal cost: what each extra job adds once the fixed start-up (the baseline) is taken out.
    jobs, base_jobs = counts["large"][1], counts["baseline"][1]
    marginal_ms = 1000 * (median["large"] - median["baseline"]) / (jobs - base_jobs)
    ratio = median["large"] / median["baseline"]
    print(f"large/baseline: {ratio:.2f}x the time for {jobs / base_jobs:.0f}x the jobs;", end=" ")
    print(f"marginal cost {marginal_ms:.3f} ms per extra job")
    bare_ratio = median["large"] / median["bare"] if "bare" in median else None
    if bare_ratio is not None:
        bare_ms = 1000 * median["bare"] / counts["bare"][1]
        verdict = "met" if bare_ratio <= args.bare_target else "not met"
        print(
            f"large/bare: {bare_ratio:.2f}x (Snakemake alone: {bare_ms:.2f} ms/job); "
            f"target <= {args.bare_target:.2f}x: {verdict}"
        )
    twin_ratio = median["large"] / median["twin"] if "twin" in median else None
    if twin_ratio is not None and "bare" in median:
        print(
            f"large/twin: {twin_ratio:.2f}x (our code); twin/bare: {median['twin'] / median['bare']:.2f}x "
            "(Snakemake's cost of the train rule's directives and profile)"
        )
    passed = median["large"] <= args.target
    result = {
        "jobs": jobs,
        "train_jobs": counts["large"][0],
        "median_s": round(median["large"], 3),
        "per_job_ms": round(1000 * median["large"] / jobs, 3),
        "baseline_jobs": base_jobs,
        "baseline_median_s": round(median["baseline"], 3),
        "ratio": round(ratio, 3),
        "marginal_ms_per_job": round(marginal_ms, 3),
        "bare_median_s": round(median["bare"], 3) if "bare" in median else None,
        "bare_ratio": round(bare_ratio, 3) if bare_ratio is not None else None,
        "bare_target": args.bare_target,
        "bare_pass": bare_ratio <= args.bare_target if bare_ratio is not None else None,
        "twin_median_s": round(median["twin"], 3) if "twin" in median else None,
        "twin_ratio": round(twin_ratio, 3) if twin_ratio is not None else None,
        "target_s": args.target,
        "pass": passed,
    }
    print(json.dumps(result))
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
