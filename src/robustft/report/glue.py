"""The GLUE/XTREME report: our numbers beside the paper's, as a PDF typeset with typst.

Inputs are the CSVs written by `robustft.tables.glue` (runs.csv, summary.csv, comparisons.csv; scores in
points) and, where present, curves.csv and xtreme_curves.csv for the learning curves (drawn by
report/curves.py). Nothing is computed here except formatting, the paper's Δ (from `reference`), the
verdict and the curves' mean and std over seeds, so every number in the PDF can be traced to rows of
those tables or of `paper_results.csv`.

In order: the report spec and the tables it reads, the paper's numbers for each cell, the sections of the
PDF, the report document and the effect rows a published finding stores, the figures and learning curves,
and `build_report`. A section is a list of blocks (report/typeset.py, shared with the instruction-tuning
report): data that templates/report.typ lays out, never typst markup.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from robustft.artifacts.base import mean_paper_number
from robustft.errors import AmbiguousPaperValue
from robustft.reference import (
    GLUE_AVG,
    GLUE_SPLIT_SIZES,
    GLUE_TABLE_ORDER,
    PaperNumber,
    load_paper_results,
    paper_dataset_name,
    paper_lookup,
    paper_task_name,
)
from robustft.report.curves import (
    GLUE_INTRO,
    XTREME_INTRO,
    curves_section,
    glue_cells,
    load_xtreme_curves,
    remove_curve_figures,
    write_curve_figures,
    xtreme_cells,
)
from robustft.report.typeset import (
    CI_LABEL,
    Artifact,
    Block,
    Cell,
    appendix_part,
    artifacts_part,
    bullets,
    callout,
    diverged_text,
    document,
    figure_block,
    fmt_p,
    fmt_points,
    fmt_signed,
    heading,
    is_missing,
    load_artifacts,
    magnitude_glossary,
    paragraph,
    refuse_unknown_keys,
    table_block,
    table_cell,
    text_list_section,
    verdict_cell,
    verdict_glossary,
    write_pdf,
)
from robustft.stats import (  # the verdict vocabulary and rules: one place for every report
    CONTRADICTED,
    DIRECTION_ONLY,
    MIN_PAIRED_SEEDS,
    NO_PAPER_VALUE,
    NOT_RUN,
    REPRODUCED,
    TOO_FEW_SEEDS,
    UNSTABLE,
    WITHIN_NOISE,
    magnitude,
    verdict,
)

OK_STATUS = "ok"
# The verdicts the GLUE comparison can give (the artifacts' own, e.g. "clear gain", are listed with them).
GLUE_VERDICTS = (
    REPRODUCED,
    DIRECTION_ONLY,
    CONTRADICTED,
    WITHIN_NOISE,
    UNSTABLE,
    TOO_FEW_SEEDS,
    NOT_RUN,
    NO_PAPER_VALUE,
)


_RUNS_COLUMNS = {
    "model",
    "task",
    "method",
    "seed",
    "status",
    "n_train",
    "n_eval",
    "wall_time_s",
    "git_commit",
}
_SUMMARY_COLUMNS = {
    "model",
    "task",
    "method",
    "metric",
    "n",
    "n_diverged",
    "n_failed",
    "mean",
    "std",
    "average_over",
}
_COMPARISON_COLUMNS = {
    "model",
    "task",
    "method",
    "baseline",
    "metric",
    "n_pairs",
    "delta",
    "ci_low",
    "ci_high",
    "p_ttest",
    "p_wilcoxon",
    "p_holm",
    "min_seeds_for_significance",
    "average_over",
}


@dataclass
class ReportSpec:
    """What to report and how our names map to the paper's; the workflow's `report:` block."""

    title: str
    paper: str
    artifact: str
    baseline: str = "finetune"
    # Methods to show, baseline included or not; empty means every method in summary.csv.
    methods: list[str] = field(default_factory=list)
    # Our model name -> the paper's model name. A different name marks our model as a proxy.
    paper_model: dict[str, str] = field(default_factory=dict)
    # Our method name -> the paper's method name, either one name for every paper model or a mapping
    # paper model -> name (SMART Table 1's baseline row is BERT_ReImp for BERT-base but Liu et al.'s numbers
    # for RoBERTa-large). Methods, and paper models of a mapping, that are not listed map to themselves.
    paper_method: dict[str, str | dict[str, str]] = field(default_factory=dict)
    choices: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    provenance: dict[str, str] = field(default_factory=dict)
    # Per model, the tasks its average rows cover (filled from summary.csv's average_over column when the
    # report is rendered). When they are not all nine GLUE tasks, the paper's "average" is recomputed
    # over the same tasks.
    average_over: dict[str, list[str]] = field(default_factory=dict)
    # Fewer paired seeds than this and a claim's verdict is "too few seeds" (config `report.min_seeds`).
    min_seeds: int = MIN_PAIRED_SEEDS

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ReportSpec:
        """Build from plain data (YAML/JSON); unknown keys are an error so a typo cannot pass silently."""
        refuse_unknown_keys(raw, cls, "report spec")
        missing = sorted({"title", "paper", "artifact"} - set(raw))
        if missing:
            raise ValueError(f"report spec lacks required keys {missing}")
        values = dict(raw)
        for key in ("methods", "choices", "notes"):
            values[key] = [str(item) for item in values.get(key) or []]
        for key in ("paper_model", "provenance"):
            values[key] = {str(k): str(v) for k, v in (values.get(key) or {}).items()}
        values["paper_method"] = _paper_method_names(values.get("paper_method") or {})
        min_seeds = values.get("min_seeds", MIN_PAIRED_SEEDS)
        if isinstance(min_seeds, bool) or not isinstance(min_seeds, int) or min_seeds < 1:
            raise ValueError(f"report spec min_seeds must be an integer >= 1, got {min_seeds!r}")
        return cls(**values)

    def paper_method_name(self, method: str, paper_model: str | None = None) -> str:
        """The paper's name for `method` in `paper_model`'s rows (None: a name shared by every model)."""
        names = self.paper_method.get(method, method)
        if isinstance(names, str):
            return names
        return names.get(paper_model, method) if paper_model is not None else method

    def paper_method_names(self, method: str) -> dict[str, str]:
        """Paper model -> the paper's name for `method`, for every paper model our models map to."""
        return {
            paper: self.paper_method_name(method, paper) for paper in dict.fromkeys(self.paper_model.values())
        }

    def is_proxy(self, model: str) -> bool:
        return model in self.paper_model and self.paper_model[model] != model


def _paper_method_names(raw: Mapping[str, Any]) -> dict[str, str | dict[str, str]]:
    """`report.paper_method` checked: each value is one name or a mapping paper model -> name."""
    names: dict[str, str | dict[str, str]] = {}
    for method, value in raw.items():
        if isinstance(value, Mapping):
            if not value or not all(isinstance(name, str) for name in value.values()):
                raise ValueError(
                    f"report spec paper_method[{method!r}] must map paper models to method names, "
                    f"got {value!r}"
                )
            names[str(method)] = {str(paper_model): name for paper_model, name in value.items()}
        elif isinstance(value, str):
            names[str(method)] = value
        else:
            raise ValueError(
                f"report spec paper_method[{method!r}] must be a method name or a mapping paper model -> "
                f"method name, got {value!r}"
            )
    return names


@dataclass(frozen=True)
class ReportTables:
    runs: pd.DataFrame
    summary: pd.DataFrame
    comparisons: pd.DataFrame


def load_tables(tables_dir: Path) -> ReportTables:
    """Read the three CSVs; check their columns and that summary counts match the ok runs."""
    tables = ReportTables(
        runs=_read_csv(Path(tables_dir) / "runs.csv", _RUNS_COLUMNS),
        summary=_read_csv(Path(tables_dir) / "summary.csv", _SUMMARY_COLUMNS),
        comparisons=_read_csv(Path(tables_dir) / "comparisons.csv", _COMPARISON_COLUMNS),
    )
    _check_counts(tables)
    return tables


def _read_csv(path: Path, required: set[str]) -> pd.DataFrame:
    # Only empty fields are missing values: a model or task called "NA" stays a name.
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    for column in ("model", "task", "method", "baseline", "status", "metric"):
        if column in frame:
            frame[column] = frame[column].astype(str)
    absent = sorted(required - set(frame.columns))
    if absent:
        raise ValueError(f"{path} lacks columns {absent}")
    return frame


def _check_counts(tables: ReportTables) -> None:
    """A diverged or failed run must never be averaged in: each cell's n must equal its ok runs."""
    ok = tables.runs[tables.runs["status"] == OK_STATUS]
    ok_counts = ok.groupby(["model", "task", "method"]).size()
    per_task = tables.summary[tables.summary["task"] != GLUE_AVG]
    for row in per_task.itertuples():
        expected = int(ok_counts.get((row.model, row.task, row.method), 0))
        if int(row.n) != expected:
            raise ValueError(
                f"summary.csv says n={row.n} for {row.model}/{row.task}/{row.method} but runs.csv has "
                f"{expected} runs with status {OK_STATUS!r}"
            )


def _claim_p(row: Any) -> float:
    """The p-value a verdict rests on: Holm-adjusted across tasks, or the plain paired t-test for the
    average row (which is not part of the Holm family)."""
    return row.p_ttest if row.task == GLUE_AVG else row.p_holm


# ---------------------------------------------------------------- ordering and lookups


def _task_key(task: str) -> tuple[int, str]:
    name = paper_task_name(task)
    if name in GLUE_TABLE_ORDER:
        return (GLUE_TABLE_ORDER.index(name), name)
    if task == GLUE_AVG:
        return (len(GLUE_TABLE_ORDER) + 1, name)
    return (len(GLUE_TABLE_ORDER), name)


def _tasks(summary: pd.DataFrame) -> list[str]:
    return sorted(summary["task"].unique(), key=_task_key)


def _models(summary: pd.DataFrame, spec: ReportSpec) -> list[str]:
    present = set(summary["model"])
    return [m for m in spec.paper_model if m in present] + sorted(present - set(spec.paper_model))


def _methods(summary: pd.DataFrame, spec: ReportSpec) -> list[str]:
    shown = spec.methods or sorted(summary["method"].unique())
    return [spec.baseline] + [m for m in shown if m != spec.baseline]


def _paper_number(spec: ReportSpec, model: str, task: str, method: str) -> PaperNumber | None:
    if model not in spec.paper_model:
        return None
    averaged = spec.average_over.get(model, [])
    if task == GLUE_AVG and averaged and {paper_task_name(t) for t in averaged} != set(GLUE_TABLE_ORDER):
        # The mean of the paper's per-task numbers over the tasks our average covers: like for like.
        return mean_paper_number(averaged, lambda t: _paper_number(spec, model, t, method))
    number = _paper_cell(spec, model, task, method)
    if number is None or method == spec.baseline:
        return number
    # One metric per paper cell pair: where the paper's baseline row has only another metric (SMART Table 1:
    # Liu et al.'s RoBERTa-large MRPC is F1 only), the method is read on that metric too, so the paper Δ
    # and the recomputed average subtract and average like with like.
    base = _paper_cell(spec, model, task, spec.baseline)
    if base is None or base.metric == number.metric:
        return number
    return _paper_cell(spec, model, task, method, base.metric) or number


def _paper_cell(
    spec: ReportSpec, model: str, task: str, method: str, metric: str | None = None
) -> PaperNumber | None:
    """The paper's number for one cell, under the paper's name of `method` for the mapped paper model."""
    paper_model = spec.paper_model[model]
    method_name = spec.paper_method_name(method, paper_model)
    # The artifact's own name for the task (SMART Table 1 prints MNLI as "MNLI-m" and "MNLI-mm").
    dataset = paper_dataset_name(spec.paper, spec.artifact, task)
    key = (spec.paper, spec.artifact, paper_model, dataset, method_name)
    if metric is not None:
        return paper_lookup(*key, metric)
    try:
        return paper_lookup(*key)
    except AmbiguousPaperValue:
        # A table with several metrics per task (SMART Table 1: MRPC Acc and F1): our primary metric's.
        from robustft.data import get_task

        return paper_lookup(*key, get_task(task).primary_metric)


def _paper_delta(spec: ReportSpec, model: str, task: str, method: str) -> float | None:
    ours = _paper_number(spec, model, task, method)
    base = _paper_number(spec, model, task, spec.baseline)
    if ours is None or base is None or ours.metric != base.metric:  # never a difference of two metrics
        return None
    return ours.value - base.value


# ---------------------------------------------------------------- sections


def _summary_section(
    tables: ReportTables, spec: ReportSpec, models: list[str], tasks: list[str]
) -> list[Block]:
    runs = tables.runs
    ok = runs[runs["status"] == OK_STATUS]
    seeds = ok.groupby(["model", "task", "method"])["seed"].nunique()
    if seeds.empty:
        seeds_text = "no seeds per cell"
    elif seeds.min() == seeds.max():
        seeds_text = f"{seeds.min()} seeds per cell"
    else:
        seeds_text = f"{seeds.min()} to {seeds.max()} seeds per cell"
    task_names = [paper_task_name(t) for t in tasks if t != GLUE_AVG]
    timed = runs["wall_time_s"].dropna()
    hours = (
        f"{timed.sum() / 3600:.1f} h over the {len(timed)} runs that recorded it"
        if len(timed)
        else "not recorded"
    )
    text = (
        f"We compare our runs with {spec.paper} {spec.artifact}. "
        f"Models: {', '.join(models)}. Tasks: {', '.join(task_names)}. "
        f"Methods: {', '.join(_methods(tables.summary, spec))} (baseline: {spec.baseline}). "
        f"{_runs(len(runs))}, {seeds_text} among the {_runs(len(ok))} that finished ok; "
        f"{_runs(len(runs) - len(ok))} diverged or failed and are excluded from every number. "
        f"Wall time: {hours}."
    )
    if "degenerate" in ok:
        degenerate = int(ok["degenerate"].fillna(False).astype(bool).sum())
        text += (
            f" {degenerate} of the {_runs(len(ok))} that finished ok are degenerate (one prediction for "
            "every dev example); they are averaged in and counted beside each mean."
        )
    return [paragraph(text), _model_sentences(spec, models), *_data_budget(runs, tasks)]


def _runs(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


def _model_sentences(spec: ReportSpec, models: list[str]) -> Block:
    lines = []
    for model in models:
        if spec.is_proxy(model):
            lines.append(
                f"Proxy: paper column is {spec.paper_model[model]}; our runs use {model}: "
                "compare the direction of the effect, not the level."
            )
        elif model in spec.paper_model:
            lines.append(f"{model}: the same model as the paper's column.")
        else:
            lines.append(f"{model}: no paper counterpart; no paper values are shown for it.")
    return callout([bullets(lines)])


def _data_budget(runs: pd.DataFrame, tasks: list[str]) -> list[Block]:
    def used(values: pd.Series, full: int | None) -> str:
        values = values.dropna()
        if values.empty:
            return "–"
        low, high = int(values.min()), int(values.max())
        amount = f"{low}" if low == high else f"{low}–{high}"
        if full is None:
            return amount
        return f"{amount} of {full}" + (" (subset)" if high < full else "")

    rows = []
    for task in (t for t in tasks if t != GLUE_AVG):
        in_task = runs[runs["task"] == task]
        full_train, full_eval = GLUE_SPLIT_SIZES.get(task, (None, None))
        rows.append(
            [
                table_cell(paper_task_name(task)),
                table_cell(used(in_task["n_train"], full_train)),
                table_cell(used(in_task["n_eval"], full_eval)),
            ]
        )
    return [
        paragraph(
            "Examples per run, against the full GLUE split (validation matched for MNLI).", "Data budget."
        ),
        table_block(["Task", "Train examples", "Eval examples"], rows, ["left", "right", "right"]),
    ]


def _method_section(spec: ReportSpec, rows: pd.DataFrame) -> list[Block]:
    items = [
        "Each cell of the main table: mean over the n seeds that finished ok, ± standard deviation "
        "(ddof=1); the paper's number is printed in grey below it.",
        f"Δ: mean over seeds of the paired difference method − {spec.baseline} (same seed, same data); "
        f"{CI_LABEL}: bootstrap over seed pairs.",
        "p: two-sided paired t-test and exact Wilcoxon signed-rank test over seed pairs; Holm: the t-test "
        "p adjusted over the tasks of one model and method (the average row is a separate claim and is "
        "not adjusted). The CI is not adjusted for multiplicity.",
        f"Paper Δ: the paper's {spec.paper} {spec.artifact} value for the method minus its value for "
        f"{_baseline_names(spec)}, for the paper model our model is mapped to.",
        "Verdict (the paired t-test is Holm-adjusted across tasks; the average row's is not): "
        + verdict_glossary(spec.min_seeds, GLUE_VERDICTS)
        + " A percentile bootstrap over 3-5 seed pairs is too narrow to carry a claim alone.",
        "Under the verdict, in grey, the magnitude: " + magnitude_glossary(),
        "Under the pair count: how many runs of the method / of the baseline diverged in that cell. They "
        "are left out of the pairing (a diverged run has no score), so fewer pairs than seeds is never "
        "silent.",
        "Seeds needed: seed pairs a two-sided paired t-test (α = 0.05) would need for 80% power to "
        "detect our observed Δ at our observed spread of the per-seed differences.",
    ]
    run = rows.loc[rows["n_pairs"] > 0, "n_pairs"]
    if not run.empty and run.min() < 6:
        # 2 / 2**5 = 0.0625: with 5 pairs even a perfectly consistent sign gives p > 0.05.
        items.append(
            "With fewer than 6 seed pairs an exact two-sided Wilcoxon test cannot reach p < 0.05 "
            "(its smallest p is 0.0625 at 5 pairs), whatever the effect."
        )
    return [heading("How the numbers were obtained"), bullets(items)]


def _baseline_names(spec: ReportSpec) -> str:
    """The paper's name of the baseline row: one name, or one per paper model where they differ."""
    names = spec.paper_method_names(spec.baseline)
    if len(set(names.values())) <= 1:
        return next(iter(names.values()), spec.paper_method_name(spec.baseline))
    return "; ".join(f"{name} for {paper_model}" for paper_model, name in names.items())


def _main_table(tables: ReportTables, spec: ReportSpec, models: list[str], tasks: list[str]) -> list[Block]:
    summary = tables.summary.set_index(["model", "task", "method"])
    methods = _methods(tables.summary, spec)
    n_max = int(summary["n"].max())
    rows: list[list[Cell]] = []
    mismatches: set[tuple[str, str, str]] = set()
    for model in models:
        for i, method in enumerate(methods):
            row = []
            if i == 0:
                sub = f"proxy for {spec.paper_model[model]}" if spec.is_proxy(model) else None
                row.append(table_cell(model, sub, rowspan=len(methods)))
            paper_name = spec.paper_method_name(method, spec.paper_model.get(model))
            row.append(table_cell(method, f"paper: {paper_name}" if paper_name != method else None))
            for task in tasks:
                row.append(_main_cell(summary, spec, model, task, method, n_max, mismatches))
            rows.append(row)
    header = ["Model", "Method"] + [_task_header(tables.summary, t) for t in tasks]
    blocks = [
        heading(f"Main table (layout of {spec.paper} {spec.artifact})"),
        paragraph(
            "Ours: mean ± std over seeds, in points. Grey: the paper's value for the mapped paper model "
            "(– where the paper has none)."
        ),
        table_block(
            header,
            rows,
            ["left", "left"] + ["center"] * len(tasks),
            group_starts=range(0, len(rows), len(methods)),
        ),
    ]
    notes = [
        f"{task}: our metric is {ours}, the paper's is {paper}." for task, ours, paper in sorted(mismatches)
    ]
    if GLUE_AVG in tasks:
        notes += _average_notes(spec, models)
    return blocks + ([bullets(notes)] if notes else []) + _degenerate_warning(tables.summary)


def _degenerate_text(stats: pd.Series) -> str:
    """ ", k/n degenerate" when some of the cell's runs predicted one class (or one value) for every dev
    example. They stay in the mean (a real outcome), but a reader must know the mean is made of them."""
    count = stats.get("n_degenerate")
    if is_missing(count) or int(count) == 0:
        return ""
    return f", {int(count)}/{int(stats['n'])} degenerate"


def _degenerate_warning(summary: pd.DataFrame) -> list[Block]:
    """A callout naming the cells whose every run learned nothing (one prediction for all of dev)."""
    if "n_degenerate" not in summary:
        return []
    every = summary[(summary["n"] > 0) & (summary["n_degenerate"] == summary["n"])]
    if every.empty:
        return []
    cells = [f"{r.model} {paper_task_name(r.task)} {r.method}" for r in every.itertuples(index=False)]
    everything = len(every) == int((summary["n"] > 0).sum())
    lead = (
        "Every run of this report is degenerate"
        if everything
        else f"{len(every)} of {int((summary['n'] > 0).sum())} cells consist only of degenerate runs"
    )
    text = (
        f"{lead}: the model predicted one class (or, on a regression task, one value) for every dev "
        "example, so its score measures the class balance of dev, not what fine-tuning learned, and no "
        "difference between methods on these cells means anything. Cells: " + "; ".join(cells) + "."
    )
    return [callout([paragraph(text)])]


def _average_notes(spec: ReportSpec, models: list[str]) -> list[str]:
    """Name the task set of each model's Avg, and say where the paper's value under it comes from."""
    notes = []
    for model in models:
        averaged = spec.average_over.get(model)
        if not averaged:
            continue
        note = (
            f"Avg of {model}: average over {', '.join(paper_task_name(t) for t in averaged)}, the tasks "
            "every method in this table ran for this model, for every method alike."
        )
        if model in spec.paper_model and {paper_task_name(t) for t in averaged} != set(GLUE_TABLE_ORDER):
            note += (
                " The paper value under it is the mean of the paper's numbers for the same tasks, "
                f"recomputed here; the paper's own Avg column covers all {len(GLUE_TABLE_ORDER)} GLUE tasks."
            )
        notes.append(note)
    return notes


def _task_header(summary: pd.DataFrame, task: str) -> str:
    metrics = "/".join(sorted(summary.loc[summary["task"] == task, "metric"].unique()))
    return f"{'Avg' if task == GLUE_AVG else paper_task_name(task)} ({metrics})"


def _main_cell(
    summary: pd.DataFrame,
    spec: ReportSpec,
    model: str,
    task: str,
    method: str,
    n_max: int,
    mismatches: set[tuple[str, str, str]],
) -> Cell:
    paper = _paper_number(spec, model, task, method)
    if (model, task, method) not in summary.index:
        ours, metric = "not run", None
    else:
        stats = summary.loc[(model, task, method)]
        ours, metric = f"{fmt_points(stats['mean'], 1)} ± {fmt_points(stats['std'], 1)}", stats["metric"]
        if int(stats["n"]) != n_max:
            ours += f" (n={int(stats['n'])})"
        ours += _degenerate_text(stats)
    if paper is not None and metric is not None and metric != paper.metric:
        mismatches.add((paper_task_name(task), metric, paper.metric))
    return table_cell(ours, fmt_points(None if paper is None else paper.value, 1))


def _comparison_rows(
    tables: ReportTables, spec: ReportSpec, models: list[str], tasks: list[str]
) -> pd.DataFrame:
    """One row per (model, task, method ≠ baseline); cells with no comparison row count as not run."""
    methods = _methods(tables.summary, spec)[1:]
    comparisons = tables.comparisons[tables.comparisons["baseline"] == spec.baseline]
    grid = pd.DataFrame(
        [(m, t, me) for m in models for t in tasks for me in methods], columns=["model", "task", "method"]
    )
    rows = grid.merge(comparisons, on=["model", "task", "method"], how="left")
    rows["n_pairs"] = rows["n_pairs"].fillna(0)
    rows["paper_delta"] = [_paper_delta(spec, r.model, r.task, r.method) for r in rows.itertuples()]
    # Older comparisons.csv files lack the diverged counts: unknown, not zero.
    for column in ("n_diverged_method", "n_diverged_baseline"):
        if column not in rows:
            rows[column] = math.nan
    # A method that diverged on more seeds than the baseline is "unstable", not reproduced on its survivors.
    rows["verdict"] = [
        verdict(
            r.paper_delta,
            r.ci_low,
            r.ci_high,
            r.n_pairs,
            _claim_p(r),
            spec.min_seeds,
            n_diverged_method=r.n_diverged_method,
            n_diverged_baseline=r.n_diverged_baseline,
        )
        for r in rows.itertuples(index=False)
    ]
    rows["magnitude"] = [magnitude(r.paper_delta, r.ci_low, r.ci_high) for r in rows.itertuples(index=False)]
    return rows


def _comparison_section(rows: pd.DataFrame) -> list[Block]:
    cells, group_starts = [], []
    for i, r in enumerate(rows.itertuples(index=False)):
        if i == 0 or r.model != rows["model"].iloc[i - 1]:
            group_starts.append(i)
        effect = "–"
        if not is_missing(r.delta):
            effect = f"{fmt_signed(r.delta, 2)} [{fmt_signed(r.ci_low, 2)}, {fmt_signed(r.ci_high, 2)}]"
        cells.append(
            [
                table_cell(r.model),
                table_cell(paper_task_name(r.task)),
                table_cell(r.method),
                table_cell(str(int(r.n_pairs)), diverged_text(r.n_diverged_method, r.n_diverged_baseline)),
                table_cell(effect),
                table_cell(fmt_p(r.p_ttest)),
                table_cell(fmt_p(r.p_wilcoxon)),
                table_cell(fmt_p(r.p_holm)),
                # The paper prints one decimal, so its Δ has no second one.
                table_cell(fmt_signed(r.paper_delta, 1)),
                verdict_cell(r.verdict, r.magnitude),
                table_cell(_fmt_seeds(r.min_seeds_for_significance)),
            ]
        )
    header = ["Model", "Task", "Method", "Pairs", f"Δ ours [{CI_LABEL}]", "p (t-test)", "p (Wilcoxon)"]
    header += ["p (Holm)", "Paper Δ", "Verdict", "Seeds needed"]
    align = ["left"] * 3 + ["right"] * 6 + ["left", "right"]
    averages = _average_sets(rows, "comparisons.csv")
    named = [
        f"{GLUE_AVG} of {model}: average over {', '.join(paper_task_name(t) for t in tasks)}, for every "
        "method."
        for model, tasks in averages.items()
    ]
    return [
        heading("Effect of each method against the baseline"),
        table_block(header, cells, align, group_starts),
        *([bullets(named)] if named else []),
        *_underpowered(rows),
    ]


def _fmt_seeds(value: float) -> str:
    return "–" if is_missing(value) or math.isinf(value) else str(math.ceil(value))


def _underpowered(rows: pd.DataFrame) -> list[Block]:
    """Say plainly where the number of seeds we ran cannot support a claim either way."""
    need = rows["min_seeds_for_significance"]
    weak = rows[
        (rows["verdict"] == WITHIN_NOISE) & (rows["n_pairs"] > 0) & (need.isna() | (need > rows["n_pairs"]))
    ]
    if weak.empty:
        return []
    items = []
    for r in weak.itertuples(index=False):
        seeds = _fmt_seeds(r.min_seeds_for_significance)
        need_text = (
            f"about {seeds} would be needed"
            if seeds != "–"
            else "no estimate (zero effect, or no spread to estimate from)"
        )
        items.append(
            f"{r.model} {paper_task_name(r.task)} {r.method}: {int(r.n_pairs)} seed pairs; {need_text}."
        )
    intro = (
        "The protocol cannot support a claim either way about these effects: the CI includes 0, and at "
        "the observed variance a paired t-test would need more seed pairs than we ran."
    )
    return [paragraph(intro), bullets(items)]


def _failed_section(runs: pd.DataFrame) -> list[Block]:
    bad = runs[runs["status"] != OK_STATUS].sort_values(["model", "task", "method", "seed"])
    title = heading("Diverged or failed runs")
    if bad.empty:
        return [title, paragraph("None: every run finished with status ok.")]
    rows = [
        [
            table_cell(r.model),
            table_cell(paper_task_name(r.task)),
            table_cell(r.method),
            table_cell(str(r.seed)),
            table_cell(r.status),
            table_cell(_why(getattr(r, "diverged_because", None))),
        ]
        for r in bad.itertuples(index=False)
    ]
    return [
        title,
        paragraph("These runs are listed here and left out of every mean, std, Δ and test above."),
        table_block(["Model", "Task", "Method", "Seed", "Status", "Why"], rows),
    ]


def _why(reason: Any) -> str:
    return reason if isinstance(reason, str) and reason else "–"


def _provenance_section(tables: ReportTables, spec: ReportSpec) -> list[Block]:
    entries = dict(spec.provenance)
    for column, label in (("git_commit", "git commits"), ("config_hash", "config hashes")):
        if column in tables.runs:
            # More than one value here means the runs were not all produced by the same code or config.
            values = sorted(tables.runs[column].dropna().astype(str).unique())
            entries[f"{label} in runs.csv"] = ", ".join(values) or "not recorded"
    entries["paper numbers"] = f"{spec.paper} {spec.artifact}, robustft/reference/paper_results.csv"
    paper_rows = load_paper_results()
    used = paper_rows[
        (paper_rows["paper"] == spec.paper)
        & (paper_rows["artifact"] == spec.artifact)
        & paper_rows["model"].isin(spec.paper_model.values())
    ]
    entries["paper numbers: source"] = " | ".join(dict.fromkeys(used["source"])) or "none used"
    entries["paper numbers: confidence"] = ", ".join(dict.fromkeys(used["confidence"])) or "none used"
    return [
        heading("Provenance"),
        _key_value_table(entries),
        paragraph("Per-run directories and Slurm job ids are in runs.csv."),
    ]


def _key_value_table(entries: Mapping[str, str]) -> Block:
    return table_block(
        ["Key", "Value"], [[table_cell(key), table_cell(value)] for key, value in entries.items()]
    )


def _figures_section(figures: Sequence[str]) -> list[Block]:
    captions = [
        "Our mean ± std per task and method (points); hollow diamonds: the paper's value for the mapped "
        "paper model (a proxy where the panel title says so: compare directions, not levels).",
        f"Δ against the baseline with our {CI_LABEL}; crosses: the paper's Δ.",
    ]
    if not figures:
        return []
    return [heading("Figures")] + [
        figure_block(path, text) for path, text in zip(figures, captions, strict=False)
    ]


def precision_choice(runs: pd.DataFrame) -> str | None:
    """The choices line on the precision the runs trained in, computed from runs.csv's `precision` and
    `precision_why` columns, e.g. "Precision: fp32 (all 18 runs; auto: fp32, this CPU has no fast bf16
    kernels (AVX2))". None when no run recorded it (a runs.csv from before the columns existed)."""
    if "precision" not in runs or runs["precision"].isna().all():
        return None
    why = runs["precision_why"] if "precision_why" in runs else pd.Series(index=runs.index, dtype=object)
    used = runs["precision"].fillna("not recorded").astype(str)
    groups = []
    for name, count in used.value_counts(sort=True).items():
        share = f"all {count} runs" if count == len(runs) else f"{count} of {len(runs)} runs"
        reasons = sorted(why[used == name].dropna().astype(str).unique())
        groups.append(f"{name} ({'; '.join([share, *reasons])})")
    return "Precision: " + " and ".join(groups)


def _choices(spec: ReportSpec, runs: pd.DataFrame) -> list[str]:
    """The config's choices, then the precision the runs used (measured from them, not configured)."""
    precision = precision_choice(runs)
    return [*spec.choices, precision] if precision else list(spec.choices)


# ---------------------------------------------------------------- the document and the effect rows


def report_document(
    tables_dir: Path, spec: ReportSpec, figures: Sequence[str] = (), curves: Sequence[tuple[str, str]] = ()
) -> dict[str, Any]:
    """The report as data (typeset.document), as templates/report.typ lays it out; `figures` are image
    paths relative to the typst root, and `curves` the learning-curve figures' (path, caption)."""
    return _glue_document(load_tables(tables_dir), spec, figures, curves=curves)


def effect_rows(tables: ReportTables, spec: ReportSpec) -> pd.DataFrame:
    """The report's table "Effect of each method against the baseline" as data, exactly as the PDF prints
    it: one row per (model, task or average, method other than the baseline), with comparisons.csv's
    paired comparison, `paper_delta`, `p_claim` (the p-value the verdict rests on), `verdict` and
    `magnitude`. A published finding stores it as verdicts.csv."""
    spec, tables = _with_average_tasks(spec, tables)
    rows = _comparison_rows(tables, spec, _models(tables.summary, spec), _tasks(tables.summary))
    rows["p_claim"] = [_claim_p(r) for r in rows.itertuples(index=False)]
    return rows


def _with_average_tasks(spec: ReportSpec, tables: ReportTables) -> tuple[ReportSpec, ReportTables]:
    """The spec and tables as the main table prints them: one average task set per model, the averaged
    tasks every method the table shows ran (tables.average_tasks over _methods), in spec.average_over.

    A method the table does not show (an ablation that ran 5 of 8 tasks, printed by its own artifact)
    never shrinks the set. summary.csv and comparisons.csv name each row's own set (the tasks a method
    ran; those it and the baseline both ran): a row over the table's set is printed as it is, any other
    average row of a shown method is recomputed from runs.csv by the same functions with the aggregate
    step's defaults (tables.summarize, tables.compare), or dropped where the table's set has under two
    tasks."""
    from robustft.tables import average_tasks, compare, summarize

    methods = _methods(tables.summary, spec)
    shown = tables.runs[tables.runs["method"].isin(methods)]
    sets = {model: tasks for model, tasks in average_tasks(shown).items() if len(tasks) >= 2}
    summary = _with_table_averages(
        tables.summary,
        sets,
        tables.summary["method"].isin(methods),
        lambda: summarize(shown, GLUE_AVG, average_over=sets),
    )
    comparisons = _with_table_averages(
        tables.comparisons,
        sets,
        tables.comparisons["method"].isin(methods) & (tables.comparisons["baseline"] == spec.baseline),
        lambda: compare(shown, baseline=spec.baseline, avg_name=GLUE_AVG, average_over=sets),
    )
    return replace(spec, average_over=sets), replace(tables, summary=summary, comparisons=comparisons)


def _with_table_averages(
    table: pd.DataFrame,
    sets: Mapping[str, list[str]],
    shown: pd.Series,
    recompute: Callable[[], pd.DataFrame],
) -> pd.DataFrame:
    """`table` whose average rows selected by `shown` each cover `sets[model]`: a row over another set is
    replaced by the row of the same (model, method) in `recompute()` (a summarize or compare frame)."""
    from robustft.tables import AVERAGE_SEPARATOR

    wanted = table["model"].map(lambda model: AVERAGE_SEPARATOR.join(sets.get(str(model), [])))
    named = table["average_over"].map(lambda value: value if isinstance(value, str) else "")
    stale = (table["task"] == GLUE_AVG) & shown & (named != wanted)
    if not stale.any():
        return table
    fresh = recompute()
    fresh = fresh[fresh["task"] == GLUE_AVG].merge(
        table.loc[stale, ["model", "method"]], on=["model", "method"]
    )
    # As read back from a CSV: a missing count is NaN, not pd.NA, for the formatting helpers.
    fresh = fresh.astype(
        {column: "float64" for column in fresh.columns if str(fresh[column].dtype) == "Int64"}
    )
    return pd.concat([table[~stale], fresh], ignore_index=True)


def _average_sets(table: pd.DataFrame, name: str) -> dict[str, list[str]]:
    """Per model, the tasks named in the `average_over` column of `table`'s average rows."""
    from robustft.tables import AVERAGE_SEPARATOR

    sets: dict[str, list[str]] = {}
    for model, rows in table[table["task"] == GLUE_AVG].groupby("model"):
        # Rows with no average (a method not run) name nothing; those that do must agree.
        named = {value for value in rows["average_over"] if isinstance(value, str) and value}
        if not named:
            continue
        if len(named) > 1:
            raise ValueError(
                f"{name}: the {GLUE_AVG} rows of {model} average different task sets {sorted(named)}; "
                "every average row of one model must cover the same tasks (regenerate it with tables/glue.py)"
            )
        sets[str(model)] = [task for task in named.pop().split(AVERAGE_SEPARATOR) if task]
    return sets


def _glue_document(
    tables: ReportTables,
    spec: ReportSpec,
    figures: Sequence[str],
    artifacts: Sequence[Artifact] = (),
    curves: Sequence[tuple[str, str]] = (),
    xtreme_curves: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The report; `curves` and `xtreme_curves` are the learning-curve figures (path, caption)."""
    spec, tables = _with_average_tasks(spec, tables)
    models, tasks = _models(tables.summary, spec), _tasks(tables.summary)
    rows = _comparison_rows(tables, spec, models, tasks)
    return document(
        spec.title,
        [
            *_summary_section(tables, spec, models, tasks),
            *_method_section(spec, rows),
            *_main_table(tables, spec, models, tasks),
            *_comparison_section(rows),
            *_figures_section(figures),
            *curves_section("Learning curves", GLUE_INTRO, curves),
            *artifacts_part(artifacts),
            *curves_section("XTREME learning curves", XTREME_INTRO, xtreme_curves),
            *_failed_section(tables.runs),
            *text_list_section("Choices where the paper is silent", _choices(spec, tables.runs)),
            *text_list_section("Notes", spec.notes),
            *_provenance_section(tables, spec),
            *appendix_part(artifacts),
        ],
    )


def _artifacts_only_document(
    spec: ReportSpec, artifacts: Sequence[Artifact], xtreme_curves: Sequence[tuple[str, str]] = ()
) -> dict[str, Any]:
    """The report of a config whose runs are all in artifact tables (no runs.csv): the artifacts with
    their claims, the XTREME learning curves, then choices, notes, provenance and the appendix."""
    entries = dict(spec.provenance)
    entries["paper numbers"] = "robustft/reference/paper_results.csv (the artifacts name their rows)"
    return document(
        spec.title,
        [
            *artifacts_part(artifacts),
            *curves_section("XTREME learning curves", XTREME_INTRO, xtreme_curves),
            *text_list_section("Choices where the paper is silent", spec.choices),
            *text_list_section("Notes", spec.notes),
            heading("Provenance"),
            _key_value_table(entries),
            paragraph("Per-run directories are in the tables (results/tables/<config name>/)."),
            *appendix_part(artifacts),
        ],
    )


# ---------------------------------------------------------------- figures


def make_figures(tables: ReportTables, spec: ReportSpec, figures_dir: Path, stem: str) -> list[Path]:
    """Write the levels and effects figures as SVG; byte-identical for identical inputs."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    models, tasks = _models(tables.summary, spec), _tasks(tables.summary)
    rows = _comparison_rows(tables, spec, models, tasks)
    levels, effects = figures_dir / f"{stem}_levels.svg", figures_dir / f"{stem}_effects.svg"
    with matplotlib.rc_context(_FIGURE_STYLE):
        _levels_figure(tables, spec, models, tasks).savefig(levels, **_SVG_OPTIONS)
        _effects_figure(rows, spec).savefig(effects, **_SVG_OPTIONS)
    return [levels, effects]


_SVG_OPTIONS: dict[str, Any] = {"format": "svg", "metadata": {"Date": None}, "bbox_inches": "tight"}
# Fixed hash salt and no date: the SVG ids and metadata do not change between renders.
# parse_math off: a "$" in a model name is text, not the start of a formula.
_FIGURE_STYLE = {"svg.hashsalt": "robustft", "svg.fonttype": "path", "text.parse_math": False, "font.size": 7}


def _model_title(spec: ReportSpec, model: str) -> str:
    if spec.is_proxy(model):
        return f"{model} (paper: {spec.paper_model[model]}, proxy)"
    return model


def _levels_figure(tables: ReportTables, spec: ReportSpec, models: list[str], tasks: list[str]) -> Figure:
    summary = tables.summary.set_index(["model", "task", "method"])
    methods = _methods(tables.summary, spec)
    figure = Figure(figsize=(1.25 * len(tasks) + 0.5, 1.7 * len(models) + 0.4), layout="constrained")
    axes = figure.subplots(len(models), len(tasks), squeeze=False)
    for i, model in enumerate(models):
        for j, task in enumerate(tasks):
            ax = axes[i][j]
            for k, method in enumerate(methods):
                if (model, task, method) in summary.index:
                    cell = summary.loc[(model, task, method)]
                    ax.errorbar(k, cell["mean"], yerr=cell["std"], fmt="o", color=f"C{k}", capsize=2, ms=4)
                paper = _paper_number(spec, model, task, method)
                if paper is not None:
                    ax.plot(k + 0.3, paper.value, "D", mfc="none", color="black", ms=4)
            ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
            ax.set_xlim(-0.5, len(methods) - 0.2)
            ax.set_title(
                f"{_model_title(spec, model)}\n{paper_task_name(task)}" if j == 0 else paper_task_name(task)
            )
    handles = [
        Line2D([], [], marker="o", ls="", color=f"C{k}", label=f"ours: {m}") for k, m in enumerate(methods)
    ]
    handles.append(Line2D([], [], marker="D", ls="", mfc="none", color="black", label="paper"))
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    return figure


def _effects_figure(rows: pd.DataFrame, spec: ReportSpec) -> Figure:
    models = list(dict.fromkeys(rows["model"]))
    methods = list(dict.fromkeys(rows["method"]))
    figure = Figure(figsize=(8, 1.9 * len(models) + 0.4), layout="constrained")
    axes = figure.subplots(len(models), 1, squeeze=False)
    width = 0.8 / max(len(methods), 1)
    for ax, model in zip(axes[:, 0], models, strict=True):
        in_model = rows[rows["model"] == model]
        tasks = list(dict.fromkeys(in_model["task"]))
        for k, method in enumerate(methods):
            part = in_model[in_model["method"] == method].set_index("task").reindex(tasks)
            x = [t + (k - (len(methods) - 1) / 2) * width for t in range(len(tasks))]
            low = (part["delta"] - part["ci_low"]).to_numpy()
            high = (part["ci_high"] - part["delta"]).to_numpy()
            ax.errorbar(
                x,
                part["delta"],
                yerr=[low, high],
                fmt="o",
                color=f"C{k + 1}",
                capsize=2,
                ms=4,
                label=f"ours: {method} − {spec.baseline}",
            )
            ax.plot(
                x,
                part["paper_delta"].astype(float),
                "x",
                color="black",
                ms=5,
                label="paper Δ" if k == 0 else None,
            )
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_xticks(range(len(tasks)), [paper_task_name(t) for t in tasks])
        ax.set_ylabel("Δ (points)")
        ax.set_title(_model_title(spec, model))
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=len(handles), frameon=False)
    return figure


# ---------------------------------------------------------------- learning curves

# curves.csv (tables.collect_curves): one row per logged training or dev evaluation point of each run.
_CURVES_COLUMNS = {
    *("model", "task", "method", "seed", "status"),
    *("step", "epoch", "train_loss", "metric", "dev_score"),
}


def load_curves(tables_dir: Path) -> pd.DataFrame | None:
    """The learning curves of curves.csv, every status (the figures draw the runs that finished ok and
    count the others); None when the file is absent (tables aggregated before it was written) or holds
    no point of a finished run."""
    path = Path(tables_dir) / "curves.csv"
    if not path.exists():
        return None
    curves = _read_csv(path, _CURVES_COLUMNS)
    return curves if (curves["status"] == OK_STATUS).any() else None


def make_curve_figures(
    tables_dir: Path, tables: ReportTables, spec: ReportSpec, figures_dir: Path, curves_dir: Path, stem: str
) -> list[tuple[str, str]]:
    """The GLUE track's learning curves, one figure per shown model x task with a point in curves.csv:
    PNG and PDF in `curves_dir`, the PDF also in `figures_dir` to embed; [(path from the typst root,
    caption)], none without curves.csv."""
    remove_curve_figures(curves_dir, "glue")
    curves = load_curves(tables_dir)
    if curves is None:
        return []
    models, methods = _models(tables.summary, spec), _methods(tables.summary, spec)
    curves = curves.loc[curves["method"].isin(methods)]
    cells = glue_cells(curves, models, _tasks(tables.summary), lambda model: _model_title(spec, model))
    return write_curve_figures(cells, methods, curves_dir, figures_dir, f"{stem}_curves_")


def make_xtreme_curve_figures(
    tables_dir: Path, spec: ReportSpec, figures_dir: Path, curves_dir: Path, stem: str
) -> list[tuple[str, str]]:
    """The XTREME track's learning curves from xtreme_curves.csv, one figure per model x setting x task,
    every method of the table (the track has its own methods, not `spec.methods`): the report's baseline
    first, so it keeps its colour, then the others by name."""
    remove_curve_figures(curves_dir, "xtreme")
    curves = load_xtreme_curves(tables_dir)
    if curves is None:
        return []
    present = sorted(curves["method"].unique())
    methods = sorted(present, key=lambda method: method != spec.baseline)  # stable: the rest stay sorted
    return write_curve_figures(xtreme_cells(curves), methods, curves_dir, figures_dir, f"{stem}_curves_")


# ---------------------------------------------------------------- entry point


def build_report(
    tables_dir: Path,
    out_pdf: Path,
    spec: ReportSpec,
    figures_dir: Path | None = None,
    artifact_dirs: Sequence[Path] = (),
) -> None:
    """Write the report PDF to `out_pdf` and its figures (SVG; the learning curves as PDF) to `figures_dir`
    (default: next to it). The learning curves are also written as PNG and PDF, one file per figure, to
    `<out_pdf without .pdf>/curves/` (glue_<model>_<task>, xtreme_<model>_<setting>_<task>).

    `artifact_dirs` hold the paper artifacts (robustft.artifacts) to append, in order.
    """
    out_pdf = Path(out_pdf)
    figures_dir = Path(figures_dir) if figures_dir is not None else out_pdf.parent
    curves_dir = out_pdf.with_suffix("") / "curves"
    artifacts = load_artifacts(artifact_dirs, figures_dir)
    # The figures directory is the typst root, so images are addressed by name from the root.
    xtreme_curves = make_xtreme_curve_figures(Path(tables_dir), spec, figures_dir, curves_dir, out_pdf.stem)
    if (Path(tables_dir) / "runs.csv").exists():
        tables = load_tables(Path(tables_dir))
        shown_spec, shown_tables = _with_average_tasks(spec, tables)
        paths = make_figures(shown_tables, shown_spec, figures_dir, out_pdf.stem)
        curves = make_curve_figures(
            Path(tables_dir), shown_tables, shown_spec, figures_dir, curves_dir, out_pdf.stem
        )
        report = _glue_document(
            tables, spec, ["/" + path.name for path in paths], artifacts, curves, xtreme_curves
        )
    else:
        # A config without the GLUE track (e.g. XTREME alone): the paper's artifacts are the report.
        figures_dir.mkdir(parents=True, exist_ok=True)
        report = _artifacts_only_document(spec, artifacts, xtreme_curves)
    out_pdf.parent.mkdir(parents=True, exist_ok=True)
    write_pdf(report, figures_dir, out_pdf)
