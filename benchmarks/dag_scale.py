"""Snakemake dry-run time of a >=5,000-job grid, against references timed in the same run.

    python benchmarks/dag_scale.py [--target 10] [--bare-target 1.2] [--reps 3] [--no-bare] [--twin]
        [--ablate DIRECTIVE ... | all]

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
--ablate times the twin once more per named directive, without it (and without its fields in the
shell command): what each directive costs Snakemake over the grid, so the twin/bare gap has an owner.
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
WILDCARD = {"models": "model", "tasks": "task", "methods": "method", "seeds": "seed"}

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


# The train rule's directives as the twin writes them (constants and lambdas in place of our functions),
# in the rule's order; --ablate drops one at a time. A dropped directive's fields leave the shell too.
TWIN_DIRECTIVES: dict[str, str] = {
    "log": '"logs/train/{model}/{task}/{method}/seed{seed}-{key}.log",',
    "benchmark": '"results/benchmarks/train/{model}/{task}/{method}/seed{seed}-{key}.tsv"',
    "params": (
        "method_args=lambda wildcards: \"--method-components '{}' --train-config '{}'\",\n"
        '        data_dir="resources/data",\n        cache_dir="resources/hf",\n'
        '        offline_env="HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 ",'
    ),
    "group": "None",
    "priority": "lambda wildcards: 1",
    "threads": "1",
    "resources": "gpu=0,",
    "conda": '"env.yaml"',
}
# The train rule's shell command in pieces, each with the directive whose fields it reads (None: none).
TWIN_SHELL: tuple[tuple[str | None, str], ...] = (
    ("params", "{params.offline_env}"),
    (None, "exec python -m robustft launch"),
    ("resources", " --gpus {resources.gpu}"),
    (None, " -- train --model {wildcards.model} --task {wildcards.task}"),
    (None, " --method {wildcards.method} --seed {wildcards.seed} --out $(dirname {output.metrics})"),
    ("params", " --data-dir {params.data_dir} --cache-dir {params.cache_dir}"),
    ("threads", " --threads {threads}"),
    ("params", " {params.method_args}"),
    ("log", " > {log} 2>&1"),
)


# The names --ablate takes: each train-rule directive, the wildcard constraints and the workflow profile.
ABLATIONS = (*TWIN_DIRECTIVES, "wildcard_constraints", "profile")


def twin_snakefile(grid: dict[str, Any], without: str | None = None) -> str:
    """The train rule's directives and shell command, the workflow's wildcard constraints, a workflow
    profile beside it (twin_setup): everything the large grid's train jobs make Snakemake do, with
    constants and lambdas in place of our functions, and no other rule or parse-time code. `without`
    names one of ABLATIONS to leave out: a directive of TWIN_DIRECTIVES (with its fields in the shell),
    "wildcard_constraints", or "profile" (twin_setup leaves the workflow profile out)."""
    if without is not None and without not in ABLATIONS:
        raise ValueError(f"unknown directive {without!r}: one of {', '.join(ABLATIONS)}")
    lists = {key: list(grid[key]) for key in GRID_KEYS}
    constraints = (
        ""
        if without == "wildcard_constraints"
        else (
            "wildcard_constraints:\n"
            '    model=r"[A-Za-z0-9_.-]+",\n'
            '    task=r"[A-Za-z0-9_.@-]+",\n'
            '    method=r"[A-Za-z0-9_.+-]+",\n'
            '    seed=r"\\d+",\n'
            '    key=r"[0-9a-f]{8}",\n'
        )
    )
    directives = "".join(
        f"    {name}:\n        {body}\n" for name, body in TWIN_DIRECTIVES.items() if name != without
    )
    kept = [piece for owner, piece in TWIN_SHELL if owner is None or owner != without]
    shell = "".join(f"        {piece!r}\n" for piece in kept)
    targets = "results/runs/{model}/{task}/{method}/seed{seed}-0123abcd/metrics.json"
    return (
        f"{constraints}\n"
        "rule all:\n    input:\n"
        f"        expand(\n            {targets!r},\n"
        + "".join(f"            {WILDCARD[key]}={lists[key]!r},\n" for key in GRID_KEYS)
        + "        ),\n\n"
        "rule train:\n    output:\n"
        '        metrics="results/runs/{model}/{task}/{method}/seed{seed}-{key}/metrics.json",\n'
        f"{directives}"
        f"    shell:\n{shell}"
    )


def twin_setup(tmp: Path, without: str | None = None) -> Setup:
    """The twin Snakefile in its own folder, with the project's workflow profile beside it (Snakemake finds
    profiles/default next to the Snakefile, as it does for ours) and a conda file for its directive."""
    folder = tmp / (f"twin-no-{without}" if without else "twin")
    folder.mkdir(parents=True)
    if without != "profile":
        shutil.copytree(REPO / "profiles" / "default", folder / "profiles" / "default")
    (folder / "env.yaml").write_text("dependencies: [python]\n")
    snakefile = folder / "Snakefile"
    snakefile.write_text(twin_snakefile(LARGE_GRID, without))
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


def make_setups(tmp: Path, bare: bool, twin: bool = False, ablate: tuple[str, ...] = ()) -> dict[str, Setup]:
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
    if twin or ablate:
        setups["twin"] = twin_setup(tmp)
    for directive in ablate:
        setups[f"twin-no-{directive}"] = twin_setup(tmp, without=directive)
    return setups


def ablation_shares(median: dict[str, float], ablate: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Per directive left out: the twin's ratio to the bare file without it, and the seconds it saves
    against the whole twin (what that directive costs Snakemake over the grid's jobs)."""
    if "bare" not in median:
        return {}
    return {
        directive: {
            "ratio": round(median[f"twin-no-{directive}"] / median["bare"], 3),
            "saved_s": round(median["twin"] - median[f"twin-no-{directive}"], 3),
        }
        for directive in ablate
    }


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
    parser.add_argument(
        "--ablate",
        nargs="+",
        choices=[*ABLATIONS, "all"],
        default=[],
        help="also time the twin without each named directive (implies --twin): its share of twin/bare",
    )
    args = parser.parse_args()
    ablate = tuple(ABLATIONS if "all" in args.ablate else dict.fromkeys(args.ablate))
    if ablate and args.no_bare:
        parser.error("--ablate measures each directive against the bare file: drop --no-bare")

    tmp = Path(tempfile.mkdtemp(prefix="robustft-dag-"))
    try:
        setups = make_setups(tmp, bare=not args.no_bare, twin=args.twin, ablate=ablate)
        # One untimed run each: pays for .pyc compilation and a cold file cache, which a user pays once.
        counts = {name: job_counts(dry_run(*setup)[1]) for name, setup in setups.items()}
        times: dict[str, list[float]] = {name: [] for name in setups}
        for _ in range(args.reps):  # interleaved, so a load spike on a shared machine hits every grid
            for name, setup in setups.items():
                times[name].append(dry_run(*setup)[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    median = {name: statistics.median(values) for name, values in times.items()}
    width = max(9, *(len(name) for name in setups))
    print(f"{'grid':<{width}} {'train jobs':>10} {'all jobs':>9} {'median s':>9} {'min s':>7} {'ms/job':>8}")
    for name in setups:
        train, total = counts[name]
        row = f"{name:<{width}} {train:>10} {total:>9} {median[name]:>9.2f} {min(times[name]):>7.2f}"
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
    ablation = ablation_shares(median, ablate)
    for directive, share in ablation.items():
        saved = share["saved_s"]
        print(f"without {directive}: twin/bare {share['ratio']:.2f}x, {saved:+.2f} s against the twin")
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
        "ablation": ablation or None,
        "target_s": args.target,
        "pass": passed,
    }
    print(json.dumps(result))
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
