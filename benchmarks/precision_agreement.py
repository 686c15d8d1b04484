"""Do bf16 autocast and fp32 training give the same dev scores? A paired comparison over seeds on the demo.

    python benchmarks/precision_agreement.py [--config config/config.yaml] [--seeds 1 2 3] [--jobs 2]
        [--threads 1] [--tasks sst2 mrpc] [--method finetune] [--out results/benchmarks/precision_agreement]

For every (model, task) the config trains `--method` on (the demo's by default), and every seed, the run is
trained twice with robustft's `train_run`: once with `train.precision: fp32` and once with `bf16` (on a
CPU: the forward under torch.autocast(bfloat16) on fp32 weights, fp32 optimizer). Everything else is the
config's own train settings for that task (`train` with `train_by_task` laid over it, as the workflow
gives them), so the comparison follows whatever the demo trains. The seed fixes the head's initialisation
and the data order, so the two runs of a seed differ only in precision: the unit of analysis is the
per-seed difference bf16 - fp32 of the primary dev metric (points, x 100).

Per task it reports each seed's pair, the mean paired difference with its 95% percentile-bootstrap CI and
the paired t-test's p (robustft.stats, as the reports use them), the seed-to-seed standard deviation of
the fp32 scores, and a verdict:

- "same within seed noise": at least 3 pairs, the CI includes 0 and |mean difference| < the fp32 seed std;
- "differs": the CI excludes 0;
- "not shown": the CI includes 0 but |mean difference| >= the fp32 seed std (more seeds needed);
- "too few seeds": fewer than 3 pairs (failed or diverged runs drop their pair).

It also reports the training time per precision (the Trainer's training loop without the dev evaluations)
and the speed-up fp32 / bf16. With `--jobs 2` two runs go in parallel, each in a fresh process with
`--threads` threads (default: the config's `threads`), as the workflow runs its jobs; runs are queued
seed by seed with the two precisions of a (task, seed) next to each other and their order alternating, so
load falls on both alike.

Outputs in `--out`: runs/<model>/<task>/<precision>/seed<S>-<settings key>/ (the run contract; a run whose
metrics.json exists is not trained again, so an interrupted benchmark resumes, and changed settings get a
new key), precision_agreement.json and precision_agreement.md (a table to paste into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Before transformers is imported, when run as a script (also in its worker processes, which import this
# module as __mp_main__); never on a plain import (a test's), which would silence every later subprocess.
if __name__ in ("__main__", "__mp_main__"):
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "bf16")
DEFAULT_OUT = REPO / "results" / "benchmarks" / "precision_agreement"
SAME = "same within seed noise"
DIFFERS = "differs"
NOT_SHOWN = "not shown"
TOO_FEW = "too few seeds"


@dataclass(frozen=True)
class Job:
    """One training run: a (model, task, seed) at one precision, with the config's settings for it."""

    model: str
    task: str
    seed: int
    precision: str
    method: str
    components: dict[str, Any]
    train: dict[str, Any]
    data_dir: str
    cache_dir: str
    threads: int
    run_dir: str


def resolve(path: str) -> str:
    """A config path as the workflow reads it: relative to the repository root, where snakemake runs."""
    return str(path if Path(path).is_absolute() else REPO / path)


def plan_jobs(
    config: dict[str, Any],
    method: str,
    seeds: list[int],
    tasks: list[str] | None,
    threads: int,
    out: Path,
) -> list[Job]:
    """Every run of the comparison, in the order to run them: seed by seed, task by task, the two
    precisions of a pair next to each other, fp32 first on even seed positions and bf16 first on odd."""
    from robustft.workflow_config import run_grid, seed_dir_name, settings_key, train_settings

    if method not in config["methods"]:
        raise SystemExit(
            f"--method: {method!r} is not a method of the config; known: {sorted(config['methods'])}"
        )
    cells = list(dict.fromkeys((model, task) for model, task, name, _ in run_grid(config) if name == method))
    if tasks is not None:
        unknown = sorted(set(tasks) - {task for _, task in cells})
        if unknown:
            known = sorted({task for _, task in cells})
            raise SystemExit(
                f"--tasks: {unknown} are not trained with {method!r} by the config; known: {known}"
            )
        cells = [(model, task) for model, task in cells if task in tasks]
    components = config["methods"][method] or {}
    jobs = []
    for position, seed in enumerate(seeds):
        for model, task in cells:
            for precision in PRECISIONS if position % 2 == 0 else PRECISIONS[::-1]:
                # Precision is set here whatever the config says (a default or `auto` included).
                train = {**train_settings(config, task), "precision": precision}
                key = settings_key(components, train)
                run_dir = out / "runs" / model / task / precision / seed_dir_name(seed, key)
                jobs.append(
                    Job(
                        model=model,
                        task=task,
                        seed=seed,
                        precision=precision,
                        method=method,
                        components=components,
                        train=train,
                        data_dir=resolve(config["data_dir"]),
                        cache_dir=resolve(config["cache_dir"]),
                        threads=threads,
                        run_dir=str(run_dir),
                    )
                )
    return jobs


def run_job(job: Job) -> str:
    """Train one run (in a worker process); its Trainer output goes to train.log in the run directory."""
    import torch

    from robustft.train.config import RunSpec, TrainConfig
    from robustft.train.glue import train_run

    torch.set_num_threads(job.threads)
    spec = RunSpec(
        model=job.model,
        task=job.task,
        method=job.method,
        seed=job.seed,
        train=TrainConfig(**job.train),
        components=job.components,
        data_dir=job.data_dir,
        cache_dir=job.cache_dir,
    )
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with (
        open(run_dir / "train.log", "w") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        return str(train_run(spec, run_dir)["status"])


def train_seconds(run_dir: Path, metrics: dict[str, Any]) -> float | None:
    """Seconds in the Trainer's training loop without the dev evaluations it ran (history.jsonl)."""
    runtime = metrics.get("train_runtime_s")
    history = run_dir / "history.jsonl"
    if runtime is None or not history.exists():
        return None
    eval_seconds = 0.0
    for line in history.read_text().splitlines():
        record = json.loads(line)
        eval_seconds += sum(v for k, v in record.items() if k.startswith("eval_") and k.endswith("_runtime"))
    return float(runtime) - eval_seconds


def read_result(job: Job) -> dict[str, Any]:
    """The outcome of a finished run: status, primary dev score in points, training seconds."""
    run_dir = Path(job.run_dir)
    path = run_dir / "metrics.json"
    if not path.exists():
        run = run_dir / "run.json"
        status = json.loads(run.read_text()).get("status", "failed") if run.exists() else "not run"
        return {"seed": job.seed, "precision": job.precision, "status": status, "score": None}
    metrics = json.loads(path.read_text())
    value = metrics["metrics"].get(metrics["primary_metric"])
    ok = metrics["status"] == "ok" and value is not None and math.isfinite(value)
    return {
        "seed": job.seed,
        "precision": job.precision,
        "status": metrics["status"],
        "metric": metrics["primary_metric"],
        "score": 100.0 * value if ok else None,  # points, as the reports print them
        "degenerate": metrics.get("degenerate"),
        "train_s": train_seconds(run_dir, metrics),
        "run_dir": str(run_dir.relative_to(REPO) if run_dir.is_relative_to(REPO) else run_dir),
    }


def agreement_verdict(n_pairs: int, ci: tuple[float, float], mean_diff: float, seed_std: float) -> str:
    """The verdict on "bf16 and fp32 give the same dev score" (see the module docstring)."""
    from robustft.stats import MIN_PAIRED_SEEDS

    if n_pairs < MIN_PAIRED_SEEDS or not all(math.isfinite(v) for v in ci):
        return TOO_FEW
    if not ci[0] <= 0 <= ci[1]:
        return DIFFERS
    if math.isfinite(seed_std) and abs(mean_diff) < seed_std:
        return SAME
    return NOT_SHOWN


def summarize_cell(model: str, task: str, results: list[dict[str, Any]], n_boot: int) -> dict[str, Any]:
    """One task's paired comparison from its runs' results (both precisions, all seeds)."""
    from robustft.stats import paired_bootstrap_ci, paired_ttest

    by_seed: dict[int, dict[str, dict[str, Any]]] = {}
    for result in results:
        by_seed.setdefault(result["seed"], {})[result["precision"]] = result
    pairs = []
    for seed, runs in sorted(by_seed.items()):
        fp32, bf16 = (runs.get(p, {}).get("score") for p in PRECISIONS)
        pair = {"seed": seed, "fp32": fp32, "bf16": bf16}
        pair["status"] = {p: runs.get(p, {}).get("status", "not run") for p in PRECISIONS}
        pair["degenerate"] = {p: runs.get(p, {}).get("degenerate") for p in PRECISIONS}
        pair["diff"] = None if fp32 is None or bf16 is None else bf16 - fp32
        pairs.append(pair)
    paired = [pair for pair in pairs if pair["diff"] is not None]
    fp32_scores = [pair["fp32"] for pair in paired]
    bf16_scores = [pair["bf16"] for pair in paired]
    mean_diff = statistics.fmean(pair["diff"] for pair in paired) if paired else math.nan
    ci = paired_bootstrap_ci(bf16_scores, fp32_scores, n_boot=n_boot) if paired else (math.nan, math.nan)
    p_value = paired_ttest(bf16_scores, fp32_scores) if paired else math.nan
    seed_std = statistics.stdev(fp32_scores) if len(fp32_scores) >= 2 else math.nan
    seconds = {
        precision: [r["train_s"] for r in results if r["precision"] == precision and r.get("train_s")]
        for precision in PRECISIONS
    }
    mean_seconds = {p: statistics.fmean(s) if s else math.nan for p, s in seconds.items()}
    metric = next((r["metric"] for r in results if r.get("metric")), None)
    return {
        "model": model,
        "task": task,
        "metric": metric,
        "pairs": pairs,
        "n_pairs": len(paired),
        "mean_diff": mean_diff,
        "ci_low": ci[0],
        "ci_high": ci[1],
        "p_paired_t": p_value,
        "fp32_mean": statistics.fmean(fp32_scores) if fp32_scores else math.nan,
        "bf16_mean": statistics.fmean(bf16_scores) if bf16_scores else math.nan,
        "fp32_seed_std": seed_std,
        "verdict": agreement_verdict(len(paired), ci, mean_diff, seed_std),
        "train_s": mean_seconds,
        "bf16_speedup": mean_seconds["fp32"] / mean_seconds["bf16"] if seconds["bf16"] else math.nan,
        "runs": results,
    }


def _number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _score(pair: dict[str, Any], precision: str) -> str:
    if pair[precision] is None:
        return pair["status"][precision]
    # A dagger marks a run that predicted one class (one value) for every dev example: it learned nothing.
    return _number(pair[precision]) + ("†" if pair["degenerate"][precision] else "")


def markdown(report: dict[str, Any]) -> str:
    """The docs/benchmarks.md table: one row per task."""
    lines = [
        f"Config `{report['config']}`, method `{report['method']}`, seeds {report['seeds']}, "
        f"{report['jobs']} job(s) x {report['threads']} thread(s); "
        f"commit {report['commit']}, {report['date']}; CPU {report['cpu']['capability']}, fast bf16 kernels: "
        f"{'yes' if report['cpu']['mkldnn_bf16'] else 'no'}.",
        "",
        "| task | metric | fp32 by seed | bf16 by seed | Δ bf16 − fp32 [95% CI] | p (paired t) "
        "| fp32 seed std | verdict | train s fp32 | train s bf16 | bf16 speed-up |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    several_models = len({cell["model"] for cell in report["tasks"]}) > 1
    for cell in report["tasks"]:
        task = f"{cell['model']} {cell['task']}" if several_models else cell["task"]
        fp32 = ", ".join(_score(pair, "fp32") for pair in cell["pairs"])
        bf16 = ", ".join(_score(pair, "bf16") for pair in cell["pairs"])
        delta = (
            f"{_number(cell['mean_diff'], 2)} [{_number(cell['ci_low'], 2)}, {_number(cell['ci_high'], 2)}]"
        )
        lines.append(
            f"| {task} | {cell['metric'] or '–'} | {fp32} | {bf16} | {delta} | "
            f"{_number(cell['p_paired_t'], 2)} | {_number(cell['fp32_seed_std'], 2)} | {cell['verdict']} | "
            f"{_number(cell['train_s']['fp32'])} | {_number(cell['train_s']['bf16'])} | "
            f"{_number(cell['bf16_speedup'], 2)}× |"
        )
    total = report["train_s_total"]
    lines += [
        "",
        f"All runs: {_number(total['fp32'], 0)} s of training in fp32, {_number(total['bf16'], 0)} s in bf16 "
        f"(bf16 speed-up {_number(report['bf16_speedup'], 2)}×). Scores are dev points (× 100); seeds in "
        "the order listed; † a run that predicted one class for every dev example.",
    ]
    return "\n".join(lines) + "\n"


def run_all(jobs: list[Job], workers: int) -> None:
    """Train every job whose metrics.json is missing, `workers` at a time, each in a fresh process."""
    todo = [job for job in jobs if not (Path(job.run_dir) / "metrics.json").exists()]
    print(f"{len(jobs) - len(todo)} of {len(jobs)} runs already done; training {len(todo)}", file=sys.stderr)
    if not todo:
        return
    # spawn and one run per process: every run pays the same start-up (as a workflow job does), and no
    # run inherits another's threads, allocator or oneDNN kernel cache.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, max_tasks_per_child=1) as pool:
        started = {pool.submit(run_job, job): (job, time.time()) for job in todo}
        for future in as_completed(started):
            job, start = started[future]
            name = f"{job.model}/{job.task} seed {job.seed} {job.precision}"
            try:
                status = future.result()
            except Exception as err:  # a failed run leaves run.json with its error; keep the others going
                status = f"failed ({type(err).__name__}: {err})"
            print(f"{name}: {status} after {time.time() - start:.0f} s", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"), help="workflow config")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--tasks", nargs="+", help="only these of the config's tasks (default: all)")
    parser.add_argument("--method", default="finetune", help="the config's method to train")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, one process each")
    parser.add_argument("--threads", type=int, help="torch threads per run (default: the config's threads)")
    parser.add_argument("--n-boot", type=int, default=10000, help="bootstrap resamples of the CI")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="run directories and the result tables")
    args = parser.parse_args()

    from robustft import provenance
    from robustft.train.config import seed_error
    from robustft.workflow_config import ConfigError, load_config

    problems = [problem for problem in map(seed_error, args.seeds) if problem]
    if problems or len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds: {'; '.join(problems) or f'seeds must be unique, got {args.seeds}'}")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    try:
        config = load_config(Path(args.config))
    except ConfigError as err:
        parser.error(str(err))
    threads = args.threads or int(config["threads"])
    out = Path(args.out).resolve()
    jobs = plan_jobs(config, args.method, args.seeds, args.tasks, threads, out)

    started = time.time()
    run_all(jobs, args.jobs)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for job in jobs:
        results.setdefault((job.model, job.task), []).append(read_result(job))
    cells = [summarize_cell(model, task, runs, args.n_boot) for (model, task), runs in results.items()]
    total = {
        precision: sum(
            r["train_s"]
            for runs in results.values()
            for r in runs
            if r["precision"] == precision and r.get("train_s")
        )
        for precision in PRECISIONS
    }
    config_path = Path(args.config).resolve()
    hardware = provenance.hardware()
    report = {
        "config": str(config_path.relative_to(REPO) if config_path.is_relative_to(REPO) else config_path),
        "method": args.method,
        "seeds": args.seeds,
        "jobs": args.jobs,
        "threads": threads,
        "commit": provenance.git_commit(REPO),
        "date": time.strftime("%Y-%m-%d"),
        "hardware": hardware,
        # Without oneDNN's bf16 kernels (AVX512-BF16 or AMX) bf16 runs are slower than fp32 ones.
        "cpu": {"capability": hardware["cpu_capability"], "mkldnn_bf16": hardware["cpu_fast_bf16"]},
        "wall_s_this_invocation": round(time.time() - started, 1),
        "train_settings": {
            job.task: {k: v for k, v in job.train.items() if k != "precision"} for job in jobs
        },
        "train_s_total": total,
        "bf16_speedup": total["fp32"] / total["bf16"] if total["bf16"] else math.nan,
        "tasks": cells,
    }
    out.mkdir(parents=True, exist_ok=True)
    from robustft.io import write_json_atomic

    write_json_atomic(out / "precision_agreement.json", report)  # NaN as null, so any reader parses it
    table = markdown(report)
    (out / "precision_agreement.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
