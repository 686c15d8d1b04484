"""SMART (Jiang et al., ACL 2020; arXiv 1911.03437, numbering of the v5 PDF) as functions of the runs table.

Tables 1, 3, 5 and 6 and Figure 2 are regenerated from runs of the presets of config/smart.yaml
(`finetune`, `smart`, `smart_no_rs`, `smart_no_breg`); Table 4 needs an MT-DNN checkpoint and is never run.

The paper reports the BEST of 3 seeds, baselines included (maintainer reply, namisan/mt-dnn issue #126).
A best-of-3 has no valid paired test, so every claim's verdict rests on the mean over seeds (paired over
seeds, base.comparison_claims); our best-of-seeds value stands beside the paper's in extra columns at the
end of claims.csv (`best_method`, `best_baseline`, ...) and in the Table 1 figure.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from robustft.artifacts.base import (
    CLAIM_COLUMNS,
    ArtifactContext,
    ArtifactResult,
    PaperKey,
    comparison_claims,
    effects_figure,
    get_artifact,
    not_run,
    register_artifact,
    seed_notes,
)
from robustft.data import get_task, load_mnli_annotations, split_task_variant
from robustft.errors import DataNotFoundError
from robustft.reference import GLUE_AVG, load_paper_results
from robustft.stats import verdict
from robustft.tables import average_tasks

PAPER = "SMART"
# seed_notes' wording: "... we ran N pairs, the paper's protocol is <PROTOCOL>."
PROTOCOL = "the best of 3 seeds (3 seeds per method)"
TABLE1 = "Table 1 (arXiv v5; GLUE dev)"
TABLE3 = "Table 3 (arXiv v5; ablation)"
TABLE4 = "Table 4 (arXiv v5; SMART vs MTL)"
TABLE5 = "Table 5 (arXiv v5; domain adaptation)"
TABLE6 = "Table 6 (arXiv v5; ANLI)"
TABLE7 = "Table 7 (arXiv v5; SNLI & SciTail)"
FIGURE2 = "Figure 2 (arXiv v5; ambiguity analysis)"

# Columns appended to CLAIM_COLUMNS (at the end, so readers of the base columns are unaffected).
# best_*: the best score over seeds, the paper's protocol; std_*: sample std over seeds (ddof 1).
EXTRA_COLUMNS = [
    "metric",
    "paper_metric",
    "best_method",
    "best_baseline",
    "best_delta",
    "std_method",
    "std_baseline",
]
SMART_COLUMNS = [*CLAIM_COLUMNS, *EXTRA_COLUMNS]

# Table 1's baseline row differs per block: BERT-base is compared with the authors' re-implementation
# (BERT_ReImp), RoBERTa-large with the numbers Liu et al. reported (the paper re-ran no RoBERTa baseline).
TABLE1_BASELINE = {
    "bert-base": "finetune (BERT_ReImp, SMART authors' reimplementation)",
    "roberta-large": "finetune (as reported by Liu et al. 2019)",
}
# Table 1's columns in the paper's order: (our task, our metric, the paper's dataset, the paper's metric).
# Our metric is a metrics.json key: MNLI mismatched is `accuracy_mm` (split dev_mm).
TABLE1_COLUMNS: list[tuple[str, str, str, str]] = [
    ("mnli", "accuracy", "MNLI-m", "accuracy"),
    ("mnli", "accuracy_mm", "MNLI-mm", "accuracy"),
    ("qqp", "accuracy", "QQP", "accuracy"),
    ("qqp", "f1", "QQP", "f1"),
    ("rte", "accuracy", "RTE", "accuracy"),
    ("qnli", "accuracy", "QNLI", "accuracy"),
    ("mrpc", "accuracy", "MRPC", "accuracy"),
    ("mrpc", "f1", "MRPC", "f1"),
    ("cola", "mcc", "CoLA", "mcc"),
    ("sst2", "accuracy", "SST-2", "accuracy"),
    ("stsb", "pearson", "STS-B", "pearson"),
    ("stsb", "spearman", "STS-B", "spearman"),
]
TABLE1_TASKS = tuple(dict.fromkeys(task for task, *_ in TABLE1_COLUMNS))
# Table 3 (BERT-base ablation): our preset -> the paper's row. MNLI is the matched dev set; the MRPC column
# is labelled Acc but holds F1 (its values equal Table 1's MRPC F1), so MRPC is compared on our F1.
TABLE3_METHODS = {
    "finetune": "finetune",
    "smart": "smart",
    "smart_no_rs": "smart -Rs (lambda_s=0)",
    "smart_no_breg": "smart -D_Breg (mu=0)",
}
TABLE3_COLUMNS = {"mnli": ("MNLI", "accuracy"), "rte": ("RTE", "accuracy"), "qnli": ("QNLI", "accuracy")}
TABLE3_COLUMNS |= {"sst2": ("SST-2", "accuracy"), "mrpc": ("MRPC", "f1")}
# Table 6 block B (trained on ANLI only): our metric key -> (the paper's dataset, split).
TABLE6_COLUMNS = {
    "accuracy_r1": ("ANLI-R1", "dev"),
    "accuracy_r2": ("ANLI-R2", "dev"),
    "accuracy_r3": ("ANLI-R3", "dev"),
    "accuracy": ("ANLI-All", "dev"),
    "accuracy_test_r1": ("ANLI-R1", "test"),
    "accuracy_test_r2": ("ANLI-R2", "test"),
    "accuracy_test_r3": ("ANLI-R3", "test"),
    "accuracy_test": ("ANLI-All", "test"),
}
TABLE6_BLOCK_B = "training data: ANLI-only"  # how paper_results.csv's notes tell block B from block A
TABLE6_BASELINE = "finetune (Nie et al. 2019)"
TABLE5_FRACTIONS = (0.001, 0.01, 0.1, 1.0)
# Figure 2: MNLI dev split -> the paper's panel; the agreement buckets in the paper's order.
FIGURE2_SPLITS = {"dev": "MNLI-m", "dev_mm": "MNLI-mm"}
FIGURE2_BUCKETS = ("All", "5/0/0", "4/1/0", "3/2/0", "3/1/1")
FIGURE2_METRICS = {"accuracy": "acc", "kl_divergence": "KL"}

ValueOf = Callable[[str, str, str], "float | None"]  # (paper model, our task, our method) -> paper number


# ------------------------------------------------------------------------------------------ helpers


def _ok(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "ok"]


def _present(runs: pd.DataFrame, methods: Iterable[str]) -> bool:
    return set(methods) <= set(_ok(runs)["method"])


def _base_task(task: str) -> str:
    return split_task_variant(task)[0]


def _data_hint(task_key: str, splits: Iterable[str] = ("train", "dev")) -> str:
    """Where a task's data must be: its local files under <data_dir> and its Hub dataset."""
    spec = get_task(task_key)
    paths = [str(p) for split in splits for p in spec.local_paths("<data_dir>", split)]
    return f"{spec.paper_name}: {', '.join(paths)} (or the Hub dataset {spec.hub_id})"


@functools.cache
def _paper_frame() -> pd.DataFrame:
    frame = load_paper_results()
    return frame[frame["paper"] == PAPER].reset_index(drop=True)


def paper_value(
    artifact: str,
    model: str,
    dataset: str,
    method: str,
    metric: str,
    split: str = "dev",
    notes_contain: str | None = None,
) -> float | None:
    """One number of the paper, or None. `split` matches the CSV's split exactly or up to a qualifier: "dev"
    matches "dev|agreement=All", and "dev|train_frac=1%" matches Table 5's "dev|train_frac=1% (n=5493)".
    `notes_contain` picks Table 6's training block (its rows differ only in their notes)."""
    frame = _paper_frame()
    rows = frame[
        (frame["artifact"] == artifact)
        & (frame["model"] == model)
        & (frame["dataset"] == dataset)
        & (frame["method"] == method)
        & (frame["metric"] == metric)
        & (
            (frame["split"] == split)
            | frame["split"].str.startswith(split + "|")
            | frame["split"].str.startswith(split + " (")
        )
    ]
    if notes_contain is not None:
        rows = rows[rows["notes"].str.contains(notes_contain, regex=False)]
    values = sorted(set(rows["value"]))
    if len(values) > 1:
        raise ValueError(f"{PAPER} {artifact} {model}/{dataset}/{method}/{metric}/{split}: values {values}")
    return values[0] if values else None


def _scores_as(runs: pd.DataFrame, metric_of: Callable[[str, str], str]) -> pd.DataFrame:
    """The runs with `score` replaced by another metric of the same run (e.g. MRPC F1 for Table 3);
    `metric_of(model, task)` names it per model and task."""
    frame = runs.copy()
    for model, task in frame[["model", "task"]].drop_duplicates().itertuples(index=False):
        metric = metric_of(model, task)
        rows = (frame["model"] == model) & (frame["task"] == task)
        if metric != frame.loc[rows, "metric"].iloc[0]:
            column = f"m_{metric}"
            if column not in frame:
                raise KeyError(f"runs.csv has no column {column} for {model}/{task}")
            frame.loc[rows, "score"] = frame.loc[rows, column]
            frame.loc[rows, "metric"] = metric
    return frame


def _long(runs: pd.DataFrame, columns: Mapping[str, str]) -> pd.DataFrame:
    """One pseudo-task per metric column of the same runs (Table 6's rounds and splits): `columns` maps a
    metrics.json key to the pseudo-task's name. Scores stay paired by seed."""
    parts = []
    for metric, name in columns.items():
        column = f"m_{metric}"
        if column not in runs:
            continue
        part = runs.assign(task=name, metric=metric, score=runs[column])
        part.loc[part["status"] == "ok", "status"] = part["score"].map(
            lambda v: "ok" if pd.notna(v) else "failed"
        )
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else runs.iloc[0:0]


def _mean_or_none(values: list[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else sum(values) / len(values)


def smart_claims(
    runs: pd.DataFrame,
    context: ArtifactContext,
    artifact: str,
    methods: Mapping[str, str],
    baseline: str,
    value_of: ValueOf,
    paper_metric_of: Callable[[str, str], str],
    keep_average: bool = True,
    average_over: Mapping[str, list[str]] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """base.comparison_claims for the statistics (paired over seeds, Holm over tasks), then the paper's
    side filled in per row by `value_of` (SMART's names differ per model block and per task, which one
    PaperKey cannot say), then our best-of-seeds and std beside it (SMART_COLUMNS). `paper_metric_of(our
    model, task)` names the paper's column. The average claims of a model cover `average_over[model]`,
    else the tasks every one of these methods ran."""
    if average_over is None:
        average_over = average_tasks(runs, [*methods, baseline])
    # Without paper models base.comparison_claims looks nothing up: the paper columns are ours to fill.
    bare = replace(context, paper_model={})
    claims, notes = comparison_claims(
        runs, bare, PaperKey(PAPER, artifact), methods, baseline, average_over=average_over
    )
    if not keep_average:
        claims = claims[claims["task"] != GLUE_AVG]
    claims = claims.reset_index(drop=True)
    stats = _ok(runs).groupby(["model", "task", "method"])["score"].agg(["max", "std"])
    metric_of = runs.drop_duplicates(["model", "task"]).set_index(["model", "task"])["metric"]
    filled: dict[str, list[Any]] = {column: [] for column in ["paper_model", "paper_method", "paper_value"]}
    filled |= {column: [] for column in ["paper_baseline", "paper_delta", "verdict", *EXTRA_COLUMNS]}
    for r in claims.itertuples(index=False):
        paper_model = context.paper_model.get(r.model)
        averaged = list(average_over.get(r.model, []))
        value = base = None
        if paper_model is not None and r.task == GLUE_AVG:
            value = _mean_or_none([value_of(paper_model, t, r.method) for t in averaged])
            base = _mean_or_none([value_of(paper_model, t, r.baseline) for t in averaged])
        elif paper_model is not None:
            value, base = value_of(paper_model, r.task, r.method), value_of(paper_model, r.task, r.baseline)
        delta = None if value is None or base is None else value - base
        best = {side: math.nan for side in ("method", "baseline")}
        spread = dict(best)
        if r.task != GLUE_AVG:  # a best seed of an average is not what the paper reports
            for side, method in (("method", r.method), ("baseline", r.baseline)):
                if (r.model, r.task, method) in stats.index:
                    best[side], spread[side] = stats.loc[(r.model, r.task, method)]
        row = {
            "paper_model": paper_model or "",
            "paper_method": methods.get(r.method, r.method),
            "paper_value": value,
            "paper_baseline": base,
            "paper_delta": delta,
            "verdict": verdict(delta, r.ci_low, r.ci_high, r.n_pairs, r.p_value),
            "metric": "average" if r.task == GLUE_AVG else metric_of.get((r.model, r.task), ""),
            "paper_metric": (
                "average of " + "; ".join(paper_metric_of(r.model, t) for t in averaged)
                if r.task == GLUE_AVG
                else paper_metric_of(r.model, r.task)
            ),
            "best_method": best["method"],
            "best_baseline": best["baseline"],
            "best_delta": best["method"] - best["baseline"],
            "std_method": spread["method"],
            "std_baseline": spread["baseline"],
        }
        for column, value in row.items():
            filled[column].append(value)
    for column, values in filled.items():
        claims[column] = pd.Series(values, index=claims.index, dtype=object if not values else None)
    notes = [n for n in notes if "the paper's side of the average" not in n]
    return claims[SMART_COLUMNS], list(dict.fromkeys(notes))


BEST_OF_NOTE = (
    "The paper reports the best of 3 seeds (baselines too; namisan/mt-dnn issue #126). `best_*` in "
    "claims.csv is our best of the same seeds, beside the paper's value; a best-of-3 has no valid "
    "significance test and is biased upwards (by about 0.85 std for 3 normal draws), so every "
    "verdict here uses the mean over seeds, paired by seed."
)


def _finish(result: ArtifactResult, claims: pd.DataFrame, notes: list[str]) -> ArtifactResult:
    result.claims = claims
    result.notes = [BEST_OF_NOTE, *notes, *seed_notes(claims, PROTOCOL)]
    return result


# ------------------------------------------------------------------------------------------ figures


def _fmt(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"


def table_figure(blocks: list[tuple[str, list[str], list[str], list[list[str]]]], title: str):
    """Tables drawn as a figure (the paper's layout): one block per model, (title, column labels, row
    labels, cells)."""
    from matplotlib.figure import Figure

    heights = [0.3 + 0.25 * (len(rows) + 1) for _, _, rows, _ in blocks]
    figure = Figure(figsize=(7.5, sum(heights) + 0.4), layout="constrained")
    axes = figure.subplots(len(blocks), 1, squeeze=False, height_ratios=heights)
    for ax, (name, columns, rows, cells) in zip(axes[:, 0], blocks, strict=True):
        ax.axis("off")
        ax.set_title(name, fontsize=8, loc="left")
        table = ax.table(
            cellText=cells, rowLabels=rows, colLabels=columns, loc="upper center", cellLoc="center"
        )
        table.auto_set_font_size(False)
        table.set_fontsize(6.5)
        table.auto_set_column_width(list(range(-1, len(columns))))
        for (row, _), cell in table.get_celld().items():
            cell.set_linewidth(0.3)
            if row > 0 and "paper" in rows[row - 1]:
                cell.set_facecolor("#eeeeee")
    figure.suptitle(title, fontsize=9)
    return figure


def _table1_blocks(runs: pd.DataFrame, context: ArtifactContext) -> list:
    ok = _ok(runs)
    blocks = []
    for model in sorted(set(ok["model"])):
        mine = ok[ok["model"] == model]
        paper_model = context.paper_model.get(model)
        columns = [c for c in TABLE1_COLUMNS if c[0] in set(mine["task"]) and f"m_{c[1]}" in mine]
        labels = [f"{dataset}\n{metric}" for _, _, dataset, metric in columns]
        rows, cells = [], []
        for method in ("finetune", "smart"):
            runs_of = mine[mine["method"] == method]
            best, spread, paper = [], [], []
            for task, metric, dataset, paper_metric in columns:
                task_runs = runs_of[runs_of["task"] == task]
                # The best seed is chosen on the primary metric; its other metrics come from the same run.
                top = task_runs.loc[task_runs["score"].idxmax()] if len(task_runs) else None
                values = task_runs[f"m_{metric}"].dropna()
                best.append(_fmt(None if top is None else top[f"m_{metric}"]))
                spread.append(f"{_fmt(values.mean())}±{_fmt(values.std())}" if len(values) else "–")
                name = TABLE1_BASELINE.get(paper_model or "", "") if method == "finetune" else "smart"
                paper.append(
                    _fmt(
                        paper_value(TABLE1, paper_model, dataset, name, paper_metric) if paper_model else None
                    )
                )
            rows += [f"{method}: ours, best", f"{method}: ours, mean±std", f"{method}: paper"]
            cells += [best, spread, paper]
        proxy = f" (paper: {paper_model}, proxy)" if paper_model and paper_model != model else ""
        blocks.append((f"{model}{proxy}", labels, rows, cells))
    return blocks


def _curve_panels(claims: pd.DataFrame, title: str):
    """Table 5: dev accuracy against the share of training data, one panel per dataset (log x)."""
    from matplotlib.figure import Figure

    claims = claims.assign(base=claims["task"].map(_base_task), x=claims["task"].map(_percent))
    datasets = list(dict.fromkeys(claims["base"]))
    figure = Figure(figsize=(3.6 * len(datasets) + 0.5, 2.8), layout="constrained")
    axes = figure.subplots(1, len(datasets), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        rows = claims[claims["base"] == dataset].sort_values("x")
        ax.errorbar(
            rows["x"],
            rows["mean_method"],
            yerr=rows["std_method"],
            fmt="o-",
            color="C1",
            capsize=2,
            label="ours: smart",
        )
        ax.errorbar(
            rows["x"],
            rows["mean_baseline"],
            yerr=rows["std_baseline"],
            fmt="s--",
            color="C0",
            capsize=2,
            label="ours: finetune",
        )
        ax.plot(
            rows["x"], rows["paper_value"].astype(float), "o", mfc="none", color="black", label="paper: smart"
        )
        ax.plot(
            rows["x"],
            rows["paper_baseline"].astype(float),
            "s--",
            mfc="none",
            color="grey",
            label="paper: finetune",
        )
        ax.set_xscale("log")
        ax.set_xlabel("% of training data")
        ax.set_ylabel("dev accuracy (points)")
        ax.set_title(f"{rows['model'].iloc[0]}: {get_task(dataset).paper_name}", fontsize=9)
        ax.legend(fontsize=6, frameon=False)
    figure.suptitle(title, fontsize=10)
    return figure


def _percent(task: str) -> float:
    return 100 * (split_task_variant(task)[1] or 1.0)


def _bars_figure(table: pd.DataFrame, title: str):
    """Figure 2: per panel (split x metric), bars per agreement bucket: ours (mean ± std over seeds) and
    the paper's (hollow)."""
    from matplotlib.figure import Figure

    models = list(dict.fromkeys(table["model"]))
    figure = Figure(figsize=(7.5, 2.4 * len(FIGURE2_SPLITS) * len(models) + 0.4), layout="constrained")
    axes = figure.subplots(len(FIGURE2_SPLITS) * len(models), len(FIGURE2_METRICS), squeeze=False)
    for m, model in enumerate(models):
        for s, split in enumerate(FIGURE2_SPLITS.values()):
            for c, metric in enumerate(FIGURE2_METRICS):
                ax = axes[m * len(FIGURE2_SPLITS) + s, c]
                for k, method in enumerate(("finetune", "smart")):
                    rows = table[(table["model"] == model) & (table["split"] == split)]
                    rows = rows[(rows["metric"] == metric) & (rows["method"] == method)].set_index("bucket")
                    rows = rows.reindex(list(FIGURE2_BUCKETS))
                    x = [i + (k - 0.5) * 0.38 for i in range(len(FIGURE2_BUCKETS))]
                    ax.bar(
                        x,
                        rows["mean"],
                        0.36,
                        yerr=rows["std"],
                        color=f"C{k}",
                        capsize=2,
                        label=f"ours: {method}",
                    )
                    ax.plot(x, rows["paper"], "_", color="black", ms=10, mew=2, label="paper" if k else None)
                ax.set_xticks(range(len(FIGURE2_BUCKETS)), FIGURE2_BUCKETS, fontsize=7)
                ax.set_title(f"{model} {split}: {FIGURE2_METRICS[metric]}", fontsize=8)
                if metric == "accuracy":
                    ax.set_ylim(40, 100)
    # One legend below the panels: inside them it would cover the high bars of 5/0/0 or the low of 3/x/x.
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=7, frameon=False)
    figure.suptitle(title, fontsize=10)
    return figure


# ------------------------------------------------------------------------------------------ artifacts


def _table1_metric(task: str) -> tuple[str, str]:
    """Our primary metric's column in Table 1: (the paper's dataset, the paper's metric)."""
    return _table1_column(task)[1:]


def _table1_column(task: str, paper_model: str | None = None) -> tuple[str, str, str]:
    """The Table 1 column a claim compares on: (our metric, the paper's dataset, the paper's metric). Our
    primary metric's column, unless `paper_model`'s baseline row lacks it but has another column of the
    task (Liu et al.'s RoBERTa-large MRPC: F1 only): then that one, so both sides of the paper Δ exist and
    ours is read on the same metric."""
    columns = [c for c in TABLE1_COLUMNS if c[0] == _base_task(task)]
    primary = get_task(task).primary_metric
    chosen = next((c for c in columns if c[1] == primary), None)
    if chosen is None:
        raise KeyError(f"{task}: no Table 1 column for its primary metric {primary}")
    baseline = TABLE1_BASELINE.get(paper_model or "")
    if baseline is not None and paper_value(TABLE1, paper_model, chosen[2], baseline, chosen[3]) is None:
        chosen = next(
            (c for c in columns if paper_value(TABLE1, paper_model, c[2], baseline, c[3]) is not None), chosen
        )
    return chosen[1], chosen[2], chosen[3]


@register_artifact("smart/table1", PAPER, TABLE1, "GLUE dev: fine-tuning vs SMART (BERT-base, RoBERTa-large)")
def table1(runs: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("smart/table1")
    glue = runs[runs["task"].isin(TABLE1_TASKS)]
    if not _present(glue, ["finetune", "smart"]):
        return not_run(
            spec, f"needs runs of the presets `finetune` and `smart` on the GLUE tasks {list(TABLE1_TASKS)}"
        )

    def column_of(paper_model: str | None, task: str) -> tuple[str, str, str]:
        column = _table1_column(task, paper_model)
        # Our runs without that metric (an older runs.csv): the primary column, the paper's baseline missing.
        return column if f"m_{column[0]}" in glue else _table1_column(task)

    glue = _scores_as(glue, lambda model, task: column_of(context.paper_model.get(model), task)[0])

    def value_of(paper_model: str, task: str, method: str) -> float | None:
        _, dataset, metric = column_of(paper_model, task)
        name = TABLE1_BASELINE.get(paper_model, method) if method == "finetune" else method
        return paper_value(TABLE1, paper_model, dataset, name, metric)

    claims, notes = smart_claims(
        glue,
        context,
        TABLE1,
        {"finetune": "finetune", "smart": "smart"},
        "finetune",
        value_of,
        lambda model, task: " ".join(column_of(context.paper_model.get(model), task)[1:]),
    )
    result = ArtifactResult(spec.key, PAPER, spec.artifact, spec.title)
    result.figure = table_figure(
        _table1_blocks(glue, context),
        "SMART Table 1 layout: ours (best of seeds; mean ± std) and the paper's",
    )
    result.caption = (
        "Every Table 1 column we ran. Ours: the best seed (chosen on the task's primary metric; its other "
        "metrics are of the same run) and the mean ± std over seeds; grey: the paper's best of 3."
    )
    result.choices = [
        "Claims use our primary metric and the paper's matching column: MNLI-m accuracy, QQP accuracy, "
        "MRPC accuracy, STS-B Pearson, CoLA MCC, accuracy elsewhere; the other columns are in the figure.",
        "Paper baselines: BERT_ReImp (the authors' re-run) for BERT-base; for RoBERTa-large the numbers of "
        "Liu et al. 2019, the only RoBERTa baseline in the table. It gives MRPC F1 only, no accuracy, so "
        "RoBERTa-large's MRPC claim (and its GLUE-avg) compares our F1 with the paper's F1.",
    ]
    notes.append(
        "The paper prints no GLUE average in Table 1: the GLUE-avg row's paper side is the mean of its "
        "per-task values over the tasks we ran, only where it has all of them."
    )
    return _finish(result, claims, notes)


@register_artifact("smart/table3", PAPER, TABLE3, "Ablation on BERT-base: without R_s, without D_Breg")
def table3(runs: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("smart/table3")
    wanted = runs[runs["task"].isin(list(TABLE3_COLUMNS))]
    ablations = [m for m in ("smart_no_rs", "smart_no_breg") if _present(wanted, [m])]
    if not _present(wanted, ["finetune", "smart"]) or not ablations:
        return not_run(
            spec,
            "needs runs of `finetune`, `smart` and at least one of `smart_no_rs` (smoothness_weight 0) and "
            f"`smart_no_breg` (bregman_weight 0) on {list(TABLE3_COLUMNS)}",
        )
    # The paper's MRPC column holds F1: compare our MRPC F1 with it, not our primary accuracy.
    wanted = _scores_as(wanted, lambda model, task: TABLE3_COLUMNS[task][1])

    def value_of(paper_model: str, task: str, method: str) -> float | None:
        dataset, metric = TABLE3_COLUMNS[task]
        return paper_value(TABLE3, paper_model, dataset, TABLE3_METHODS[method], metric)

    def metric_of(model: str, task: str) -> str:
        return " ".join(TABLE3_COLUMNS[task])

    names = {m: TABLE3_METHODS[m] for m in ("finetune", "smart", *ablations)}
    # One task set for every average in the table, the ablations' own claims included.
    shared = average_tasks(wanted, names)
    claims, notes = smart_claims(
        wanted, context, TABLE3, names, "finetune", value_of, metric_of, average_over=shared
    )
    # The ablation's own claim: full SMART beats SMART without each component.
    parts = [claims]
    for ablation in ablations:
        more, more_notes = smart_claims(
            wanted[wanted["method"].isin(["smart", ablation])],
            context,
            TABLE3,
            {"smart": "smart", ablation: TABLE3_METHODS[ablation]},
            ablation,
            value_of,
            metric_of,
            average_over=shared,
        )
        parts.append(more)
        notes += more_notes
    claims = pd.concat(parts, ignore_index=True)
    result = ArtifactResult(spec.key, PAPER, spec.artifact, spec.title)
    result.figure = effects_figure(
        claims[claims["task"] != GLUE_AVG],
        lambda r: f"{get_task(r.task).paper_name}: {r.method} − {r.baseline}",
        "SMART Table 3: Δ of each variant (mean over seeds)",
    )
    result.caption = (
        "Our Δ (mean over seeds) with its 95% paired bootstrap CI; crosses: the paper's Δ (best of 3)."
    )
    result.choices = [
        "−R_s is the preset `smart_no_rs` (smoothness_weight 0), −D_Breg is `smart_no_breg` "
        "(bregman_weight 0); everything else as `smart`.",
        "MRPC is compared on F1: the paper's column is labelled Acc but holds Table 1's MRPC F1 values.",
    ]
    missing = sorted({"smart_no_rs", "smart_no_breg"} - set(ablations))
    if missing:
        notes.append(f"Ablations not run: {missing}.")
    return _finish(result, claims, notes)


@register_artifact("smart/table4", PAPER, TABLE4, "SMART vs multi-task learning (MT-DNN)")
def table4(runs: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("smart/table4")
    return not_run(
        spec,
        "not reproduced here: its MT-DNN rows start from an MT-DNN multi-task checkpoint (BERT-base "
        "pre-finetuned on GLUE by namisan/mt-dnn), which is not on the Hugging Face Hub in a form our "
        "sequence classifiers load (mt-dnn ships its own .pt state dicts and code), and MT-DNN-SMART "
        "additionally needs multi-task training with SMART over MNLI, RTE, QNLI, SST-2 and MRPC, which this "
        "project does not implement. Its BERT and SMART rows repeat Table 1's (smart/table1).",
    )


@register_artifact("smart/table5", PAPER, TABLE5, "SNLI and SciTail with 0.1/1/10/100% of the training data")
def table5(runs: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("smart/table5")
    nli = runs[runs["task"].map(_base_task).isin(["snli", "scitail"])]
    if not _present(nli, ["finetune", "smart"]):
        return not_run(
            spec,
            "needs runs of `finetune` and `smart` on the task variants snli@0.001 … snli and scitail@0.001 … "
            f"scitail, none of which are in the runs. Their data: {_data_hint('snli')}; "
            f"{_data_hint('scitail')} (fetch with `snakemake prefetch` where the Hub is reachable).",
        )
    dataset_of = {"snli": "SNLI", "scitail": "SciTail"}

    def value_of(paper_model: str, task: str, method: str) -> float | None:
        base, fraction = split_task_variant(task)
        if method == "finetune":
            return paper_value(
                TABLE5,
                paper_model,
                dataset_of[base],
                "finetune",
                "accuracy",
                f"dev|train_frac={_percent(task):g}%",
            )
        # Table 5's SMART row starts from MT-DNN; BERT-base + SMART exists only at 100% (Table 7).
        if fraction in (None, 1.0):
            return paper_value(TABLE7, paper_model, dataset_of[base], method, "accuracy")
        return None

    claims, notes = smart_claims(
        nli,
        context,
        TABLE5,
        {"finetune": "finetune", "smart": "smart"},
        "finetune",
        value_of,
        lambda model, task: f"{dataset_of[_base_task(task)]} dev accuracy",
        keep_average=False,
    )
    result = ArtifactResult(spec.key, PAPER, spec.artifact, spec.title)
    result.figure = _curve_panels(claims, "SMART Table 5: dev accuracy against training data (BERT-base)")
    result.caption = "Ours: mean ± std over seeds; black/grey: the paper (smart only at 100%, from Table 7)."
    result.choices = [
        "Subsets: floor(n·fraction) training examples drawn once (data_seed), nested across "
        "fractions; dev is never subsampled (robustft.data.subsample_fraction).",
        "Our SMART starts from BERT-base: Table 5's SMART row is MT-DNN-SMART (MT-DNN checkpoint, not "
        "reproduced, see smart/table4), so the paper's smart value exists only at 100% (Table 7, BERT-base).",
    ]
    return _finish(result, claims, notes)


@register_artifact("smart/table6", PAPER, TABLE6, "ANLI (trained on ANLI only): dev and test per round")
def table6(runs: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("smart/table6")
    anli = runs[runs["task"] == "anli"]
    if not _present(anli, ["finetune", "smart"]):
        return not_run(
            spec,
            "needs runs of `finetune` and `smart` on the task anli (rounds 1-3 together), none of "
            f"which are in the runs. Their data: {_data_hint('anli', ('train', 'dev', 'test'))} (fetch with "
            "`snakemake prefetch` where the Hub is reachable).",
        )
    names = {metric: f"{dataset} {split}" for metric, (dataset, split) in TABLE6_COLUMNS.items()}
    long = _long(anli, names)
    where = {name: TABLE6_COLUMNS[metric] for metric, name in names.items()}

    def value_of(paper_model: str, task: str, method: str) -> float | None:
        dataset, split = where[task]
        name = TABLE6_BASELINE if method == "finetune" else method
        return paper_value(
            TABLE6, paper_model, dataset, name, "accuracy", split, notes_contain=TABLE6_BLOCK_B
        )

    claims, notes = smart_claims(
        long,
        context,
        TABLE6,
        {"finetune": "finetune", "smart": "smart"},
        "finetune",
        value_of,
        lambda model, task: f"{task} accuracy",
        keep_average=False,
    )
    result = ArtifactResult(spec.key, PAPER, spec.artifact, spec.title)
    result.figure = effects_figure(claims, lambda r: r.task, "SMART Table 6 (block B): Δ smart − finetune")
    result.caption = "Our Δ (mean over seeds) with its 95% CI per round and split; crosses: the paper's Δ."
    result.choices = [
        "Block B only (trained on ANLI R1+R2+R3); block A's MNLI+SNLI+FEVER+ANLI training is not run.",
        "The paper's fine-tuning baseline is Nie et al.'s RoBERTa-large: test numbers only, so dev claims "
        "have no paper Δ.",
    ]
    return _finish(result, claims, notes)


def _read_predictions(run_dir: str) -> pd.DataFrame:
    return pd.read_json(Path(run_dir) / "predictions.jsonl", lines=True)


def agreement_table(predictions: pd.DataFrame, annotations: Any) -> pd.DataFrame:
    """Accuracy and the paper's "KL" −(1/n)Σ_i Σ_j p_ij log f_ij (p: the annotators' label distribution,
    f: the model's probabilities) per agreement bucket of one split; `All` is every example."""
    import numpy as np

    if len(predictions) != len(annotations) or list(predictions["label"]) != list(annotations.labels):
        raise ValueError(
            f"predictions ({len(predictions)} examples) do not line up with the annotated dev set "
            f"({len(annotations)}, {annotations.source}): was dev subsampled (max_eval_samples)?"
        )
    patterns = np.array(annotations.patterns())
    correct = (predictions["prediction"] == predictions["label"]).to_numpy()
    f = np.clip(np.array(predictions["probs"].tolist(), dtype=float), 1e-12, 1.0)
    p = np.array(annotations.distributions(), dtype=float)
    cross = -(p * np.log(f)).sum(axis=1)
    rows = []
    for bucket in FIGURE2_BUCKETS:
        mask = np.ones(len(patterns), bool) if bucket == "All" else patterns == bucket
        if mask.any():
            rows.append(
                {
                    "bucket": bucket,
                    "accuracy": 100 * correct[mask].mean(),
                    "kl_divergence": cross[mask].mean(),
                    "n": int(mask.sum()),
                }
            )
    return pd.DataFrame(rows)


@register_artifact("smart/figure2", PAPER, FIGURE2, "MNLI dev by annotator agreement (accuracy and KL)")
def figure2(runs: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("smart/figure2")
    mnli = _ok(runs[(runs["task"] == "mnli") & runs["method"].isin(["finetune", "smart"])])
    data_hint = (
        f"Their data: {_data_hint('mnli', ('train', 'dev', 'dev_mm'))}; the annotator labels come only from "
        "the GLUE TSVs (label1..label5) or "
        "<data_dir>/nli/multinli_1.0/multinli_1.0_dev_{matched,mismatched}.jsonl "
        "(no Hub dataset carries them)."
    )
    if not _present(mnli, ["finetune", "smart"]):
        return not_run(
            spec, f"needs runs of `finetune` and `smart` on mnli, none of which are in the runs. {data_hint}"
        )
    models = [
        m for m, paper in context.paper_model.items() if paper == "roberta-large" and m in set(mnli["model"])
    ]
    mnli = mnli[mnli["model"].isin(models or sorted(set(mnli["model"])))]
    with_predictions = mnli[mnli["run_dir"].map(lambda d: (Path(str(d)) / "predictions.jsonl").exists())]
    if not _present(with_predictions, ["finetune", "smart"]):
        return not_run(
            spec,
            "the mnli runs wrote no predictions.jsonl: set train_by_task.mnli.save_predictions: true and "
            "rerun them",
        )
    data_dir = json.loads((Path(with_predictions["run_dir"].iloc[0]) / "run.json").read_text())["spec"][
        "data_dir"
    ]
    try:
        annotations = {split: load_mnli_annotations(split, data_dir) for split in FIGURE2_SPLITS}
    except DataNotFoundError as err:
        return not_run(spec, str(err))
    try:
        frame = _figure2_scores(with_predictions, annotations)
    except ValueError as err:
        return not_run(spec, str(err))
    parsed = {task: task.split(" ") for task in frame["task"].unique()}
    metric_name = {short: metric for metric, short in FIGURE2_METRICS.items()}

    def value_of(paper_model: str, task: str, method: str) -> float | None:
        dataset, bucket, short = parsed[task]
        return paper_value(
            FIGURE2, paper_model, dataset, method, metric_name[short], f"dev|agreement={bucket}"
        )

    claims, notes = smart_claims(
        frame,
        context,
        FIGURE2,
        {"finetune": "finetune", "smart": "smart"},
        "finetune",
        value_of,
        lambda model, task: f"{parsed[task][0]} {parsed[task][1]} {metric_name[parsed[task][2]]}",
        keep_average=False,
    )
    result = ArtifactResult(spec.key, PAPER, spec.artifact, spec.title)
    result.figure = _bars_figure(
        _figure2_summary(frame, context), "SMART Figure 2: MNLI dev by annotator agreement"
    )
    result.caption = (
        "Ours: mean ± std over seeds per agreement bucket; black bars: the paper's printed labels."
    )
    counts = frame.drop_duplicates(["split", "bucket"]).set_index(["split", "bucket"])["n"]
    result.choices = [
        "\"KL\" is the paper's −(1/n)Σ p_j log f_j (cross-entropy of the model's probabilities f against the "
        "annotators' label distribution p), not a KL divergence; lower is better.",
        "Buckets from the five annotator labels, sorted high to low (5/0/0, 4/1/0, 3/2/0, 3/1/1); "
        "All is every dev example. Predictions are the final model's (predictions.jsonl).",
    ]
    notes.append("Examples per bucket: " + ", ".join(f"{s} {b}: {n}" for (s, b), n in counts.items()) + ".")
    notes.append(
        "The paper's values are its printed bar labels (its drawn KL bars are about 1.25× the labels)."
    )
    return _finish(result, claims, notes)


def _figure2_scores(with_predictions: pd.DataFrame, annotations: dict[str, Any]) -> pd.DataFrame:
    """Each run's accuracy and KL per (panel, agreement bucket), one row per metric, in the runs table's
    shape (task "<panel> <bucket> <metric>"). A run whose predictions do not match the annotations
    raises ValueError naming its directory."""
    rows = []
    for r in with_predictions.itertuples(index=False):
        predictions = _read_predictions(r.run_dir)
        for split, panel in FIGURE2_SPLITS.items():
            try:
                table = agreement_table(
                    predictions[predictions["split"] == split].reset_index(drop=True), annotations[split]
                )
            except ValueError as err:
                raise ValueError(f"{r.run_dir}: {err}") from err
            for t in table.itertuples(index=False):
                for metric, short in FIGURE2_METRICS.items():
                    rows.append(
                        {
                            "model": r.model,
                            "task": f"{panel} {t.bucket} {short}",
                            "method": r.method,
                            "seed": r.seed,
                            "status": "ok",
                            "metric": metric,
                            "score": getattr(t, metric),
                            "split": panel,
                            "bucket": t.bucket,
                            "n": t.n,
                        }
                    )
    return pd.DataFrame(rows)


def _figure2_summary(frame: pd.DataFrame, context: ArtifactContext) -> pd.DataFrame:
    """Mean and std over seeds per (model, panel, bucket, metric, method), beside the paper's label."""
    summary = (
        frame.groupby(["model", "split", "bucket", "metric", "method"])["score"]
        .agg(["mean", "std"])
        .reset_index()
    )
    summary["paper"] = [
        paper_value(
            FIGURE2,
            context.paper_model.get(s.model, ""),
            s.split,
            s.method,
            s.metric,
            f"dev|agreement={s.bucket}",
        )
        for s in summary.itertuples(index=False)
    ]
    return summary
