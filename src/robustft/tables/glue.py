"""Turn finished run directories into the three tables the report cites: runs, summary, comparisons.

A run counts only once its metrics.json exists (the trainer writes it last, atomically). Scores are in
points (primary metric x 100) as in the papers. Diverged and failed runs are counted, never averaged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from robustft.data.base import TASKS, VARIANT_SEPARATOR
from robustft.io import read_jsonl, write_text_atomic
from robustft.runs import parse_run_dir
from robustft.stats import (
    holm,
    paired_bootstrap_ci,
    paired_differences,
    paired_ttest,
    seeds_needed,
    wilcoxon_p,
)

CELL = ["model", "task", "method"]
STATUSES = ("ok", "diverged", "failed")
REQUIRED_KEYS = ("status", "model", "task", "method", "seed", "primary_metric")

RUN_FRONT = ["model", "task", "method", "seed", "status", "metric", "score"]  # then one m_<name> per metric
# From metrics.json. `degenerate`: one prediction for every dev example at the final evaluation (absent in
# runs written before it was recorded); `diverged_because`: why a diverged run counts as diverged.
RECORD_FIELDS = [
    "n_train",
    "n_eval",
    "epoch",
    "train_runtime_s",
    "train_samples_per_second",
    "degenerate",
    "diverged_because",
]
# From run.json, if present; `finished_at` (UTC, ISO 8601) dates the run, so a grid's span is knowable.
RUN_INFO_FIELDS = ["wall_time_s", "finished_at", "git_commit", "config_hash", "slurm_job_id"]
# run.json's `precision` {requested, used, why}: the precision the run trained in, and why (empty for runs
# written before it was recorded).
PRECISION_FIELDS = ["precision", "precision_why"]
RUN_BACK = [*RECORD_FIELDS, *RUN_INFO_FIELDS, *PRECISION_FIELDS, "run_dir"]
SUMMARY_COLUMNS = [
    *CELL,
    "metric",
    "n",
    "n_diverged",
    "n_failed",
    "n_degenerate",
    "mean",
    "std",
    "average_over",
]
# How the `average_over` column of summary.csv and comparisons.csv joins task names: "cola;mrpc;rte".
AVERAGE_SEPARATOR = ";"
COMPARISON_COLUMNS = [
    *CELL,
    "baseline",
    "metric",
    "n_pairs",
    "mean_method",
    "mean_baseline",
    "delta",
    "sd_diff",
    "ci_low",
    "ci_high",
    "p_ttest",
    "p_wilcoxon",
    "p_holm",
    "min_seeds_for_significance",
    "average_over",
    "n_diverged_method",
    "n_diverged_baseline",
]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(payload).__name__}")
    return payload


def _points(name: str, value: float | None) -> float:
    """Metrics are stored as fractions; tables use points like the papers. Losses are not fractions."""
    if value is None:
        return math.nan
    return float(value) if "loss" in name else 100.0 * float(value)


def _run_row(metrics_path: Path, identity: tuple[str, str, str, int]) -> dict[str, Any]:
    record = _read_json(metrics_path)
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if record.get("status") == "ok" and "metrics" not in record:
        missing.append("metrics")
    if missing:
        raise ValueError(f"{metrics_path}: missing required keys {missing}")
    status, metric, metrics = record["status"], record["primary_metric"], record.get("metrics") or {}
    if status not in STATUSES:
        raise ValueError(f"{metrics_path}: status {status!r} is not one of {STATUSES}")
    if status == "ok" and metric not in metrics:
        raise ValueError(f"{metrics_path}: primary metric {metric!r} is not in metrics {sorted(metrics)}")
    score = _points(metric, metrics[metric]) if status == "ok" else math.nan
    if status == "ok" and not math.isfinite(score):
        # The contract marks a non-finite result as diverged; an "ok" NaN would silently break pairing.
        raise ValueError(f"{metrics_path}: status is 'ok' but {metric} is {metrics[metric]!r}")
    # A file copied into the wrong directory would otherwise be counted under the wrong grid cell.
    recorded = (record["model"], record["task"], record["method"], record["seed"])
    if recorded != identity:
        raise ValueError(f"{metrics_path}: records {recorded} but its directory says {identity}")

    run_path = metrics_path.with_name("run.json")
    run_info = _read_json(run_path) if run_path.exists() else {}
    precision = run_info.get("precision") if isinstance(run_info.get("precision"), dict) else {}
    model, task, method, seed = identity
    return {
        "model": model,
        "task": task,
        "method": method,
        "seed": seed,
        "status": status,
        "metric": metric,
        "score": score,
        **{f"m_{name}": _points(name, value) for name, value in metrics.items()},
        **{key: record.get(key) for key in RECORD_FIELDS},
        **{key: run_info.get(key) for key in RUN_INFO_FIELDS},
        "precision": precision.get("used"),
        "precision_why": precision.get("why"),
        "run_dir": str(metrics_path.parent),
    }


def collect_runs(
    runs_root: Path,
    expected: Iterable[tuple[str, str, str, int]] | None = None,
    metrics_paths: Iterable[str | Path] | None = None,
) -> pd.DataFrame:
    """One row per finished run under runs_root/<model>/<task>/<method>/seed<S>[-<key>]/metrics.json.

    `metrics_paths` (what the workflow passes) reads exactly those runs: a run directory's key names its
    settings, so another config's run of the same (model, task, method, seed) is never picked up.
    Otherwise every run under runs_root is read, restricted to `expected` identities when given. Runs
    that have not finished are simply absent.
    """
    wanted = None if expected is None else {(m, t, me, int(s)) for m, t, me, s in expected}
    if metrics_paths is not None:
        paths = sorted(Path(path) for path in metrics_paths if Path(path).exists())
    else:
        paths = sorted(Path(runs_root).glob("*/*/*/seed*/metrics.json"))
    rows = []
    for metrics_path in paths:
        run = parse_run_dir(metrics_path.parent, track="glue")
        identity = (run.model, run.task, run.method, run.seed)
        if wanted is None or identity in wanted:
            rows.append(_run_row(metrics_path, identity))
    metric_columns = sorted({key for row in rows for key in row if key.startswith("m_")})
    runs = pd.DataFrame(rows, columns=[*RUN_FRONT, *metric_columns, *RUN_BACK])
    return runs.sort_values(["model", "task", "method", "seed"], ignore_index=True)


# curves.csv: one row per logged point of a run's history.jsonl. A training log carries `train_loss` (the
# mean loss over that logging window); an evaluation carries `dev_score` (the run's primary metric on the
# dev set, in points like `score`) and `dev_loss`. The closing record (the mean loss of the whole run)
# is not a point on a curve and is left out. `baseline_score`, on every row of a run, is the dev score of
# predicting the training split's majority class (regression: its mean) for every example, from
# metrics.json's `constant_baseline` (empty for runs written before it was recorded). `dev_examples`, on
# an evaluation's row, is how many dev examples it scored: fewer than the last evaluation's where the
# earlier points score a subset (train.curve_eval_samples); empty for runs that did not log it.
CURVE_COLUMNS = [
    "model",
    "task",
    "method",
    "seed",
    "status",
    "step",
    "epoch",
    "train_loss",
    "metric",
    "dev_score",
    "dev_loss",
    "baseline_score",
    "dev_examples",
]


def _logged_number(value: Any) -> float:
    """A logged number as a float; absent (or null, as a non-finite value may be written) is NaN."""
    return float(value) if isinstance(value, int | float) else math.nan


def _baseline_score(run_dir: Path, metric: str) -> float:
    """The run's constant-prediction dev score of `metric`, in points; NaN when it was not recorded."""
    record = _read_json(run_dir / "metrics.json")
    baseline = record.get("constant_baseline")
    scores = baseline.get("metrics") if isinstance(baseline, dict) else None
    return _points(metric, _logged_number((scores or {}).get(metric)))


def collect_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """The learning curves of the runs in `runs` (collect_runs' table, so exactly the runs the tables
    count): every training and dev evaluation log in each run's history.jsonl, in the order logged.

    A run without history.jsonl (copied without it, or from before it was written) has no rows. A
    fragment left by a writer killed mid-line is skipped, as io.read_jsonl skips it.
    """
    rows = []
    for run in runs.itertuples(index=False):
        history = Path(run.run_dir) / "history.jsonl"
        if not history.exists():
            continue
        dev_key = f"eval_dev_{run.metric}"
        baseline = _baseline_score(Path(run.run_dir), run.metric)
        for record in read_jsonl(history, skip_malformed=True):
            if not any(key in record for key in ("loss", dev_key, "eval_dev_loss")):
                continue
            rows.append(
                {
                    "model": run.model,
                    "task": run.task,
                    "method": run.method,
                    "seed": run.seed,
                    "status": run.status,
                    "step": record.get("step"),
                    "epoch": record.get("epoch"),
                    "train_loss": _logged_number(record.get("loss")),
                    "metric": run.metric,
                    "dev_score": _points(run.metric, _logged_number(record.get(dev_key))),
                    "dev_loss": _logged_number(record.get("eval_dev_loss")),
                    "baseline_score": baseline,
                    "dev_examples": _logged_number(record.get("eval_dev_examples")),
                }
            )
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def write_curves(curves: pd.DataFrame, out_dir: Path) -> None:
    """curves.csv beside the other tables, atomically, at full float precision."""
    write_text_atomic(Path(out_dir) / "curves.csv", curves.to_csv(index=False))


def _metric_of(cell: pd.DataFrame) -> str:
    """The primary metric shared by all runs of a cell; a mix would make the mean meaningless."""
    metrics = cell["metric"].unique()
    if len(metrics) != 1:
        model, task = cell["model"].iloc[0], cell["task"].iloc[0]
        raise ValueError(f"{model}/{task}: runs disagree on the primary metric: {sorted(metrics)}")
    return str(metrics[0])


def _ok_scores(cell: pd.DataFrame) -> pd.Series:
    """Scores of the successful runs, indexed by seed (the pairing key)."""
    return cell.loc[cell["status"] == "ok"].set_index("seed")["score"]


def _seed_average(runs: pd.DataFrame, tasks: list[str]) -> pd.Series:
    """Per-seed mean score over `tasks`, for the seeds with a successful run on every one of them.

    Averaging a seed with a missing task would mix task difficulty into the average, so it is dropped.
    """
    ok = runs.loc[runs["status"] == "ok"]
    per_task = ok.pivot(index="seed", columns="task", values="score").reindex(columns=tasks)
    return per_task.dropna().mean(axis=1)


def is_averaged(task: str) -> bool:
    """Whether a task enters the GLUE average: not a variant trained on a fraction of the data
    (mrpc@0.2), and not a task of another registered family (SNLI, SciTail, ANLI, XTREME). Names outside
    the registry are averaged, so a table of any tasks still gets its average."""
    if VARIANT_SEPARATOR in task:
        return False
    spec = TASKS.get(task)
    return spec is None or spec.family == "glue"


def full_data_tasks(tasks: Iterable[str]) -> list[str]:
    """The tasks that enter the average (see is_averaged), sorted."""
    return sorted({task for task in tasks if is_averaged(task)})


def average_tasks(runs: pd.DataFrame, methods: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Per model, the task set of one table's average rows: the averaged tasks (see is_averaged) that
    every one of `methods` (default: every method in `runs`) ran for that model, sorted. A run of any
    status counts; a listed method with no run of a model has no average there and does not enter it.

    Pass the methods the table shows: its average rows then all average the same tasks (a method that
    ran 3 tasks is never printed beside one averaged over 8), and a method shown only in another table
    (an ablation run on 5 of 8 tasks) never shrinks this one's set.
    """
    if methods is not None:
        runs = runs.loc[runs["method"].isin(list(methods))]
    common = {}
    for model, model_runs in runs.groupby("model"):
        per_method = [set(full_data_tasks(group["task"])) for _, group in model_runs.groupby("method")]
        common[str(model)] = sorted(set.intersection(*per_method))
    return common


def _is_degenerate(runs: pd.DataFrame) -> pd.Series:
    """Per run: ok and degenerate (a runs.csv from before the column existed counts none)."""
    if "degenerate" not in runs:
        return pd.Series(False, index=runs.index)
    flags = runs["degenerate"].map(lambda value: value is True or value in ("True", "true", 1))
    return flags & (runs["status"] == "ok")


def _n_degenerate_seeds(runs: pd.DataFrame, tasks: list[str]) -> int:
    """Seeds of an average with a degenerate run on at least one of its tasks (over its ok seeds)."""
    ok = runs.loc[runs["status"] == "ok"]
    complete = set(_seed_average(runs, tasks).index)
    flagged = ok.loc[_is_degenerate(ok) & ok["task"].isin(tasks), "seed"]
    return len(set(flagged) & complete)


def _describe(scores: pd.Series) -> dict[str, Any]:
    return {"n": len(scores), "mean": scores.mean(), "std": scores.std(ddof=1)}


def summarize(
    runs: pd.DataFrame, avg_name: str = "GLUE-avg", average_over: Mapping[str, list[str]] | None = None
) -> pd.DataFrame:
    """Mean and std (ddof=1) of the score per (model, task, method), plus a per-seed task average.

    The average row (task=avg_name, metric="average") of a model x method covers, by default, the
    averaged tasks that method ran for that model (in summary.csv each row stands alone); a table that
    prints several methods' averages side by side passes its own set, `average_over` (model -> tasks,
    from average_tasks over the methods it shows). The set is named in the `average_over` column; the
    row exists when it has at least two tasks. Its n counts seeds that succeeded on every one of those
    tasks, and its n_diverged / n_failed count runs over them. n_degenerate counts ok runs that predicted
    one class (one value) for every dev example; on an average row, the seeds with such a run on any task.
    """
    rows = []
    for (model, task, method), cell in runs.groupby(CELL):
        rows.append(
            {
                "model": model,
                "task": task,
                "method": method,
                "metric": _metric_of(cell),
                **_describe(_ok_scores(cell)),
                "n_diverged": int((cell["status"] == "diverged").sum()),
                "n_failed": int((cell["status"] == "failed").sum()),
                "n_degenerate": int(_is_degenerate(cell).sum()),
            }
        )
    for (model, method), group in runs.groupby(["model", "method"]):
        if average_over is None:
            tasks = full_data_tasks(group["task"])
        else:
            tasks = sorted(average_over.get(str(model), []))
        if len(tasks) < 2:
            continue
        group = group.loc[group["task"].isin(tasks)]
        rows.append(
            {
                "model": model,
                "task": avg_name,
                "method": method,
                "metric": "average",
                **_describe(_seed_average(group, tasks)),
                "n_diverged": int((group["status"] == "diverged").sum()),
                "n_failed": int((group["status"] == "failed").sum()),
                "n_degenerate": _n_degenerate_seeds(group, tasks),
                "average_over": AVERAGE_SEPARATOR.join(tasks),
            }
        )
    # Stable sort on model keeps each model's task rows first and its average rows last.
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS).sort_values("model", kind="stable", ignore_index=True)


def _paired_comparison(method_scores: pd.Series, base_scores: pd.Series, n_boot: int, seed: int) -> dict:
    """Statistics of method - baseline over the seeds where both succeeded."""
    seeds = method_scores.index.intersection(base_scores.index).sort_values()
    a, b = method_scores.loc[seeds].to_numpy(), base_scores.loc[seeds].to_numpy()
    d = paired_differences(a, b)
    delta = float(d.mean()) if d.size else math.nan
    sd_diff = float(d.std(ddof=1)) if d.size >= 2 else math.nan
    ci_low, ci_high = paired_bootstrap_ci(a, b, n_boot=n_boot, seed=seed)
    return {
        "n_pairs": len(seeds),
        "mean_method": float(a.mean()) if a.size else math.nan,
        "mean_baseline": float(b.mean()) if b.size else math.nan,
        "delta": delta,
        "sd_diff": sd_diff,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "p_ttest": paired_ttest(a, b),
        "p_wilcoxon": wilcoxon_p(a, b),
        "p_holm": math.nan,
        "min_seeds_for_significance": seeds_needed(delta, sd_diff),
    }


def _diverged_counts(method_runs: pd.DataFrame, baseline_runs: pd.DataFrame) -> dict[str, int]:
    """Diverged runs on each side of a comparison: they have no score, so they drop out of the pairing,
    and these counts keep that visible beside the Δ."""
    return {
        "n_diverged_method": int((method_runs["status"] == "diverged").sum()),
        "n_diverged_baseline": int((baseline_runs["status"] == "diverged").sum()),
    }


def compare(
    runs: pd.DataFrame,
    baseline: str = "finetune",
    avg_name: str = "GLUE-avg",
    n_boot: int = 10000,
    seed: int = 0,
    average_over: Mapping[str, list[str]] | None = None,
) -> pd.DataFrame:
    """Paired comparison of every method against `baseline` on each task both were run on.

    Seeds are paired only where both runs succeeded, and mean_method / mean_baseline are over those
    paired seeds, so delta = mean_method - mean_baseline exactly (they can differ from the summary
    means when a seed is missing on one side). p_wilcoxon is NaN with fewer than 2 pairs or when every
    difference is zero. p_holm adjusts p_ttest over the tasks of one (model, method), the family of
    claims "method beats baseline on task X"; the average row is a separate claim and keeps NaN there.
    The average row of a method covers, by default, the averaged tasks both it and the baseline ran (in
    comparisons.csv each row stands alone, and its two sides always average the same tasks); a table
    that prints several methods' averages passes its own set, `average_over` (model -> tasks, from
    average_tasks over the methods it shows). The set is named in the `average_over` column; an average
    needs at least two tasks. Task variants trained on a fraction of the data (mrpc@0.2) and tasks of
    other families are compared like tasks but never averaged, and their Holm family is separate from
    that of the averaged tasks.
    n_diverged_method / n_diverged_baseline count each side's diverged runs (over the averaged tasks on
    the average row): they are not paired.
    """
    rows = []
    for model, model_runs in runs.groupby("model"):
        base = model_runs.loc[model_runs["method"] == baseline]
        others = model_runs.loc[model_runs["method"] != baseline]
        for method, method_runs in others.groupby("method"):
            tasks = sorted(set(method_runs["task"]) & set(base["task"]))
            if average_over is None:
                averaged = full_data_tasks(tasks)
            else:
                averaged = sorted(average_over.get(str(model), []))
            family = _task_comparisons(method_runs, base, tasks, n_boot, seed)
            if len(averaged) >= 2:
                family.append(_average_comparison(method_runs, base, averaged, avg_name, n_boot, seed))
            rows += [{"model": model, "method": method, "baseline": baseline, **row} for row in family]
    comparisons = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    return comparisons.astype(
        {
            "n_pairs": "int64",
            "min_seeds_for_significance": "Int64",
            "n_diverged_method": "Int64",
            "n_diverged_baseline": "Int64",
        }
    )


def _task_comparisons(
    method_runs: pd.DataFrame, base: pd.DataFrame, tasks: list[str], n_boot: int, seed: int
) -> list[dict[str, Any]]:
    """One paired comparison per task, with p_holm over each family of claims."""
    family = []
    for task in tasks:
        mine, theirs = method_runs.loc[method_runs["task"] == task], base.loc[base["task"] == task]
        paired = _paired_comparison(_ok_scores(mine), _ok_scores(theirs), n_boot, seed)
        family.append(
            {
                "task": task,
                "metric": _metric_of(pd.concat([mine, theirs])),
                **paired,
                **_diverged_counts(mine, theirs),
            }
        )
    # Two families of claims: the tasks of the average, and everything else (data-fraction
    # variants, other benchmarks), so a claim's p does not depend on unrelated extra runs.
    for members in (
        [r for r in family if is_averaged(r["task"])],
        [r for r in family if not is_averaged(r["task"])],
    ):
        for row, p_holm in zip(members, holm([row["p_ttest"] for row in members]), strict=True):
            row["p_holm"] = p_holm
    return family


def _average_comparison(
    method_runs: pd.DataFrame, base: pd.DataFrame, averaged: list[str], avg_name: str, n_boot: int, seed: int
) -> dict[str, Any]:
    """The paired comparison of the per-seed averages over the `averaged` tasks (no p_holm)."""
    paired = _paired_comparison(
        _seed_average(method_runs, averaged), _seed_average(base, averaged), n_boot, seed
    )
    return {
        "task": avg_name,
        "metric": "average",
        **paired,
        "average_over": AVERAGE_SEPARATOR.join(averaged),
        **_diverged_counts(
            method_runs.loc[method_runs["task"].isin(averaged)],
            base.loc[base["task"].isin(averaged)],
        ),
    }


def _latex(table: pd.DataFrame, points: list[str], pvalues: list[str]) -> str:
    """Booktabs table: 2 decimals for points, 3 significant digits for p-values, '--' for missing."""
    styler = table.style.hide(axis="index")
    styler.format(escape="latex", na_rep="--")
    styler.format("{:.2f}", subset=points, na_rep="--")
    styler.format("{:.3g}", subset=pvalues, na_rep="--")
    styler.format_index(escape="latex", axis="columns")
    align = "".join("r" if pd.api.types.is_numeric_dtype(table[col]) else "l" for col in table.columns)
    return styler.to_latex(hrules=True, column_format=align)


def write_tables(runs: pd.DataFrame, summary: pd.DataFrame, comparisons: pd.DataFrame, out_dir: Path) -> None:
    """Write CSVs at full float precision (the citable data) and formatted LaTeX, each atomically."""
    out_dir = Path(out_dir)
    for name, table in {"runs": runs, "summary": summary, "comparisons": comparisons}.items():
        write_text_atomic(out_dir / f"{name}.csv", table.to_csv(index=False))
    write_text_atomic(out_dir / "summary.tex", _latex(summary, points=["mean", "std"], pvalues=[]))
    tex_columns = [*CELL, "n_pairs", "delta", "ci_low", "ci_high", "p_ttest", "p_wilcoxon", "p_holm"]
    write_text_atomic(
        out_dir / "comparisons.tex",
        _latex(
            comparisons[[*tex_columns, "min_seeds_for_significance"]],
            points=["delta", "ci_low", "ci_high"],
            pvalues=["p_ttest", "p_wilcoxon", "p_holm"],
        ),
    )
