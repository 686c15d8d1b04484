"""What packing small training runs together saves, measured on tiny runs of the embedded MiniLM-L6.

    python benchmarks/packing.py [--runs 4] [--reps 2] [--train-samples 16] [--threads 1]
        [--slurm] [--out results/benchmarks/packing.json]

A BERT-base run on RTE uses a small part of a GPU, and each one started on its own pays Python, torch,
transformers and model start-up, plus (on a cluster) a SLURM job's queue wait. Measured here, on the CPU:

1. Start-up per run: a fresh process that imports the training code and loads the model and tokenizer,
   timed from outside (what every separately started run pays), against loading the model again inside
   a process that already did (what each further run of `robustft train-many` pays).
2. N runs (--runs) as N `python -m robustft train` processes one after another, against the same N runs
   in one `python -m robustft train-many` process, each in fresh run directories. The two alternate
   their order from repetition to repetition (--reps), so load from other processes falls on both; the
   ratio separate / packed is the result. The runs of both must end with the same metrics (they are the
   same seeded runs), which the script checks.
3. With --slurm (a SLURM cluster must answer, e.g. the one `.ci/slurm-cluster.sh` starts): --slurm-runs
   runs through `snakemake --profile slurm`, one job per run against one pack (config
   `pack.runs_per_job`, `--group-components`), timed from the start of Snakemake to its end, with the
   number of SLURM jobs each submitted. Runs of a pack run side by side, so a pack must fit one node's
   CPUs (1 thread each).

Each run is tiny on purpose (--train-samples examples, one epoch, RTE from resources/data): what is
measured is what packing saves per run, not training. Prints a table and the JSON line that --out gets.
"""

from __future__ import annotations

import argparse
import json
import os
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
MODES = ("separate", "packed")
METHODS = {"finetune": {}, "noisytune": {"noisytune": {"noise_lambda": 0.15}}}
# The cluster of .ci/slurm-cluster.sh has no accounting database: status from squeue, checked early.
SLURM_OPTIONS = [
    "--slurm-no-account",
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "5",
]
# Imports the training code and loads the model `loads` times, printing the seconds of each step.
STARTUP_PROBE = """
import json, sys, time
started = time.perf_counter()
import robustft.train.glue  # torch, transformers, datasets
from robustft.models import load_sequence_classifier_with_info, load_tokenizer
imported = time.perf_counter()
loads = []
for _ in range({loads}):
    begin = time.perf_counter()
    load_tokenizer({model!r}, cache_dir={cache_dir!r})
    load_sequence_classifier_with_info({model!r}, 2, cache_dir={cache_dir!r})
    loads.append(time.perf_counter() - begin)
print(json.dumps({{"import_s": imported - started, "load_s": loads}}))
"""


def child_env(threads: int) -> dict[str, str]:
    """Offline, quiet, `threads` threads, and this checkout's package first."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1"}
    env.update(TRANSFORMERS_VERBOSITY="error", OMP_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return env


def run_checked(command: list[str], env: dict[str, str], cwd: Path = REPO) -> tuple[float, str]:
    """Run `command`; (wall seconds, stdout). A failure stops the benchmark with the command's output."""
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=1800)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(
            f"failed ({result.returncode}): {' '.join(command)}\n{(result.stdout + result.stderr)[-4000:]}"
        )
    return seconds, result.stdout


def time_startup(model: str, cache_dir: str, loads: int, threads: int) -> dict[str, float]:
    """A fresh process's start-up (interpreter, imports, first model load) against a further model load."""
    code = STARTUP_PROBE.format(model=model, cache_dir=cache_dir, loads=loads)
    wall, stdout = run_checked([sys.executable, "-c", code], child_env(threads))
    probe = json.loads(stdout.strip().splitlines()[-1])
    return {
        "process_s": wall,
        "import_s": probe["import_s"],
        "first_load_s": probe["load_s"][0],
        "later_load_s": statistics.median(probe["load_s"][1:]),
    }


def run_options(n_runs: int, args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    """`robustft train` options of N tiny runs: the methods alternate, the seeds count up."""
    methods = list(METHODS)
    runs = []
    for i in range(n_runs):
        method = methods[i % len(methods)]
        runs.append(
            {
                "model": args.model,
                "task": args.task,
                "method": method,
                "seed": i + 1,
                "out": str(root / f"run{i}"),
                "data_dir": args.data_dir,
                "cache_dir": args.cache_dir,
                "max_train_samples": args.train_samples,
                "max_eval_samples": args.train_samples,
                "epochs": 1,
                "train_config": {"batch_size": 16, "max_seq_length": 64, "logging_steps": 1},
                "method_components": METHODS[method],
            }
        )
    return runs


def train_arguments(options: dict[str, Any]) -> list[str]:
    """One run's options as `robustft train` arguments."""
    argv = []
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", json.dumps(value) if isinstance(value, dict) else str(value)]
    return argv


def time_mode(mode: str, runs: list[dict[str, Any]], threads: int, runs_file: Path) -> float:
    """Wall seconds of the N runs: one `train` process each, or one `train-many` process for all."""
    robustft = [sys.executable, "-m", "robustft"]
    env = child_env(threads)
    if mode == "separate":
        return sum(
            run_checked([*robustft, "train", *train_arguments(run), "--threads", str(threads)], env)[0]
            for run in runs
        )
    runs_file.write_text(json.dumps(runs))
    return run_checked([*robustft, "train-many", "--runs", str(runs_file), "--threads", str(threads)], env)[0]


def run_metrics(runs: list[dict[str, Any]]) -> list[dict[str, float]]:
    return [json.loads((Path(run["out"]) / "metrics.json").read_text())["metrics"] for run in runs]


def interleaved(names: tuple[str, ...], rep: int) -> list[str]:
    """Repetition `rep` of the modes: in order on even repetitions, reversed on odd ones."""
    return list(names) if rep % 2 == 0 else list(reversed(names))


def summarize(n_runs: int, times: dict[str, list[float]], startup: dict[str, float]) -> dict[str, Any]:
    """Medians per mode, the ratio separate / packed, and the seconds packing saves per run."""
    separate, packed = statistics.median(times["separate"]), statistics.median(times["packed"])
    return {
        "runs": n_runs,
        "separate_s": separate,
        "packed_s": packed,
        "ratio": separate / packed,
        "saved_per_run_s": (separate - packed) / n_runs,
        "startup_separate_s": startup["process_s"],
        "startup_packed_s": startup["later_load_s"],
        "startup_saved_s": startup["process_s"] - startup["later_load_s"],
    }


def slurm_config(n_runs: int, args: argparse.Namespace, runs_per_job: int) -> dict[str, Any]:
    """A workflow config of N tiny runs (seeds x the two methods), packed `runs_per_job` per job."""
    seeds = list(range(1, (n_runs + 1) // 2 + 1))
    return {
        "models": [args.model],
        "tasks": [args.task],
        "seeds": seeds,
        "methods": METHODS,
        "threads": 1,
        "data_dir": str(Path(args.data_dir).resolve()),
        "cache_dir": str(Path(args.cache_dir).resolve()),
        "pack": {"runs_per_job": runs_per_job},
        "train": {"epochs": 1, "batch_size": 16, "max_seq_length": 64},
        "train_by_task": {args.task: {"max_train_samples": args.train_samples, "max_eval_samples": 16}},
        "report": {"name": f"packing{runs_per_job}"},
    }


def time_slurm(n_runs: int, args: argparse.Namespace, packed: bool) -> dict[str, Any]:
    """N runs through `snakemake --profile slurm` (their metrics.json as targets) in a fresh directory:
    wall seconds and the number of SLURM jobs submitted."""
    from robustft.workflow_config import glue_run_dir, run_grid, validate_config

    runs_per_job = n_runs if packed else 1
    config = slurm_config(n_runs, args, runs_per_job)
    workdir = Path(tempfile.mkdtemp(prefix="packing-slurm-"))
    try:
        config_file = workdir / "config.yaml"
        config_file.write_text(yaml.safe_dump(config))
        resolved = validate_config(json.loads(json.dumps(config)))
        targets = [f"{glue_run_dir(resolved, *run)}/metrics.json" for run in run_grid(resolved)][:n_runs]
        command = [sys.executable, "-m", "snakemake", *targets, "--profile", "slurm", *SLURM_OPTIONS]
        command += ["--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
        command += ["--configfile", str(config_file)]
        if packed:
            command += ["--group-components", f"train={runs_per_job}"]
        env = child_env(1)
        for name in ("SBATCH_ACCOUNT", "SBATCH_PARTITION", "SNAKEMAKE_PROFILE"):
            env.pop(name, None)
        seconds, output = run_checked(command, env)
        output += "".join(p.read_text() for p in (workdir / ".snakemake" / "log").glob("*.log"))
        jobs = set(re.findall(r"submitted with SLURM jobid (\d+)", output))
        return {"runs": len(targets), "seconds": seconds, "slurm_jobs": len(jobs)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def print_table(result: dict[str, Any]) -> None:
    startup = result["startup"]
    print(
        f"start-up per run: separate process {startup['process_s']:.1f} s "
        f"(imports {startup['import_s']:.1f} s, first model load {startup['first_load_s']:.2f} s); "
        f"a further run in the same process {startup['later_load_s']:.2f} s"
    )
    print(f"{'rep':>3}  {'mode':<9} {'seconds':>8}")
    for rep, rounds in enumerate(result["rounds"]):
        for mode, seconds in rounds.items():
            print(f"{rep:>3}  {mode:<9} {seconds:>8.1f}")
    summary = result["summary"]
    print(
        f"{summary['runs']} runs: separate {summary['separate_s']:.1f} s, packed {summary['packed_s']:.1f} s "
        f"(median): {summary['ratio']:.2f}x, {summary['saved_per_run_s']:.1f} s saved per run; "
        f"same metrics: {result['same_metrics']}"
    )
    for mode, slurm in result.get("slurm", {}).items():
        print(
            f"snakemake --profile slurm, {mode}: {slurm['runs']} runs in {slurm['slurm_jobs']} SLURM "
            f"job(s), {slurm['seconds']:.1f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--task", default="rte")
    parser.add_argument("--data-dir", default=str(REPO / "resources" / "data"))
    parser.add_argument("--cache-dir", default=str(REPO / "resources" / "hf"))
    parser.add_argument("--runs", type=int, default=4, help="runs per mode and repetition")
    parser.add_argument("--reps", type=int, default=2, help="repetitions of both modes, order alternating")
    parser.add_argument("--train-samples", type=int, default=16, help="training (and dev) examples per run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every process")
    parser.add_argument("--loads", type=int, default=3, help="model loads in the start-up probe (>= 2)")
    parser.add_argument(
        "--slurm", action="store_true", help="also time the runs through snakemake --profile slurm"
    )
    parser.add_argument(
        "--slurm-runs", type=int, default=2, help="runs of the SLURM comparison (fit one node)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks" / "packing.json")
    args = parser.parse_args()
    if args.runs < 2 or args.loads < 2 or args.reps < 1:
        parser.error("--runs and --loads must be >= 2, --reps >= 1")

    startup = time_startup(args.model, args.cache_dir, args.loads, args.threads)
    rounds: list[dict[str, float]] = []
    same_metrics = True
    with tempfile.TemporaryDirectory(prefix="packing-") as scratch:
        for rep in range(args.reps):
            rounds.append({})
            metrics = {}
            for mode in interleaved(MODES, rep):
                runs = run_options(args.runs, args, Path(scratch) / f"rep{rep}" / mode)
                rounds[-1][mode] = time_mode(mode, runs, args.threads, Path(scratch) / f"runs{rep}.json")
                metrics[mode] = run_metrics(runs)
            same_metrics &= metrics["separate"] == metrics["packed"]
    times = {mode: [rounds_of_rep[mode] for rounds_of_rep in rounds] for mode in MODES}
    result: dict[str, Any] = {
        "startup": startup,
        "rounds": rounds,
        "same_metrics": same_metrics,
        "summary": summarize(args.runs, times, startup),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if args.slurm:
        result["slurm"] = {
            mode: time_slurm(args.slurm_runs, args, packed=mode == "packed") for mode in interleaved(MODES, 0)
        }
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result["summary"]))
    sys.exit(0 if same_metrics else 1)


if __name__ == "__main__":
    main()
