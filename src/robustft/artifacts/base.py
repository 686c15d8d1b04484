"""The artifact contract: each table or figure of a paper is a function of the runs table.

An artifact function takes the runs (runs.csv as a DataFrame) and the config's naming context, and
returns an `ArtifactResult`: a claims table (ours beside the paper's, with CI, test and verdict), an
optional figure, and the notes and choices that say how it was obtained. When the runs it needs are
absent the result says "not run" and why; it never invents a number. Registering an artifact is one
decorator; the workflow makes one job per registered artifact named in the config.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from robustft.data.base import split_task_variant
from robustft.io import write_bytes_atomic, write_json_atomic, write_text_atomic
from robustft.reference import (
    GLUE_AVG,
    GLUE_TABLE_ORDER,
    PaperNumber,
    paper_dataset_name,
    paper_lookup,
    paper_task_name,
)
from robustft.stats import (
    DIRECTION_ONLY,
    MECHANICS_CHECK,
    MIN_PAIRED_SEEDS,
    NOT_RUN,
    REPRODUCED,
    TOO_FEW_SEEDS,
    UNSTABLE,
    diverged_against_method,
    magnitude,
    verdict,
)
from robustft.tables import AVERAGE_SEPARATOR, average_tasks, compare

REGENERATED = "regenerated"

CLAIM_COLUMNS = [
    "model",
    "paper_model",
    "task",
    "method",
    "paper_method",
    "baseline",
    "n_pairs",
    "mean_method",
    "mean_baseline",
    "delta",
    "ci_low",
    "ci_high",
    "p_value",
    "p_kind",
    "paper_value",
    "paper_baseline",
    "paper_delta",
    "verdict",
    "min_seeds_for_significance",
    # Where the paper's Δ sits against our CI (stats.MAGNITUDES), filled for every artifact on build.
    "magnitude",
    # Diverged runs of the method / the baseline behind the claim: not paired, so shown beside the Δ.
    "n_diverged_method",
    "n_diverged_baseline",
]


@dataclass
class ArtifactContext:
    """Which of our models stands for which paper model (the config's `report.paper_model`)."""

    paper_model: dict[str, str] = field(default_factory=dict)
    n_boot: int = 10000
    # Track-specific naming (the instruction-tuning track: judge, baseline, paper dataset names, recipes).
    extra: dict[str, Any] = field(default_factory=dict)
    # Fewer paired seeds than this: "too few seeds" (the config's `report.min_seeds`).
    min_seeds: int = MIN_PAIRED_SEEDS


@dataclass
class ArtifactResult:
    key: str
    paper: str
    artifact: str
    title: str
    status: str = REGENERATED
    reason: str = ""
    claims: pd.DataFrame | None = None
    figure: Any = None  # a matplotlib Figure
    caption: str = ""
    notes: list[str] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)
    # A long supporting table (e.g. per-language scores): the report prints it on appendix pages.
    appendix: pd.DataFrame | None = None
    appendix_title: str = ""
    min_seeds: int | None = None  # the seed floor its verdicts used (set on build)


ArtifactFunction = Callable[[pd.DataFrame, ArtifactContext], ArtifactResult]


@dataclass(frozen=True)
class Artifact:
    key: str  # "<paper>/<artifact id>", e.g. noisytune/figure2: the wildcard of its rule
    paper: str  # the paper's name in paper_results.csv
    artifact: str  # the artifact's name in paper_results.csv
    title: str
    build: ArtifactFunction
    table: str = "runs"  # the table it is a function of: runs (GLUE track) or instruct


ARTIFACTS: dict[str, Artifact] = {}


def register_artifact(key: str, paper: str, artifact: str, title: str, table: str = "runs"):
    """Register `function` as the artifact `key`. Its build passes every claims table through
    finish_claims, so each artifact's verdicts share one seed floor and carry the magnitude."""

    def decorate(function: ArtifactFunction) -> ArtifactFunction:
        def build(runs: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
            result = function(runs, context)
            if result.claims is not None:
                result.claims = finish_claims(result.claims, context.min_seeds)
            result.min_seeds = context.min_seeds
            return result

        ARTIFACTS[key] = Artifact(key, paper, artifact, title, build, table)
        return function

    return decorate


def get_artifact(key: str) -> Artifact:
    try:
        return ARTIFACTS[key]
    except KeyError:
        raise KeyError(f"unknown artifact {key!r}; known: {sorted(ARTIFACTS)}") from None


def not_run(spec: Artifact, reason: str, **extra: Any) -> ArtifactResult:
    return ArtifactResult(
        spec.key, spec.paper, spec.artifact, spec.title, status=NOT_RUN, reason=reason, **extra
    )


# ------------------------------------------------------------------------------------------ verdicts


def finish_claims(claims: pd.DataFrame, min_seeds: int) -> pd.DataFrame:
    """Every artifact's claims, made uniform: the magnitude column (paper Δ against our CI), the
    diverged-run columns (empty where the artifact does not know), the seed floor (a claim on fewer
    paired seeds than `min_seeds` is "too few seeds", whatever vocabulary the artifact used), and
    divergence against the method: a reproduced or direction-only claim whose method diverged on more
    seeds than its baseline is "unstable" (stats.verdict), whichever artifact drew it.

    The floor counts seeds: `n_seeds` where an artifact pairs something else (NEFTune pairs prompts
    within matched seeds), else `n_pairs`.
    """
    claims = claims.copy()
    for column in ("n_diverged_method", "n_diverged_baseline"):
        if column not in claims:
            claims[column] = pd.NA
    if claims.empty:
        claims["magnitude"] = pd.Series(dtype=object)
        return claims
    claims["magnitude"] = [
        magnitude(_number(r.paper_delta), _number(r.ci_low), _number(r.ci_high))
        for r in claims.itertuples(index=False)
    ]
    pairs = pd.to_numeric(claims["n_pairs"], errors="coerce")
    seeds = pd.to_numeric(claims["n_seeds"], errors="coerce").fillna(pairs) if "n_seeds" in claims else pairs
    # A mechanics check claims nothing, so it has no floor to fall under.
    floor = (seeds > 0) & (seeds < min_seeds) & ~claims["verdict"].isin([NOT_RUN, MECHANICS_CHECK])
    claims.loc[floor, "verdict"] = TOO_FEW_SEEDS
    # A claim that had too few seeds only by the default floor gets its verdict back under a lower one.
    for index in claims.index[(claims["verdict"] == TOO_FEW_SEEDS) & (seeds >= min_seeds)]:
        row = claims.loc[index]
        claims.loc[index, "verdict"] = verdict(
            _number(row["paper_delta"]),
            _number(row["ci_low"]),
            _number(row["ci_high"]),
            float(seeds[index]),
            _number(row["p_value"]),
            min_seeds,
        )
    against_method = pd.Series(
        [
            diverged_against_method(_number(m), _number(b))
            for m, b in zip(claims["n_diverged_method"], claims["n_diverged_baseline"], strict=True)
        ],
        index=claims.index,
        dtype=bool,
    )
    unstable = claims["verdict"].isin([REPRODUCED, DIRECTION_ONLY]) & against_method
    claims.loc[unstable, "verdict"] = UNSTABLE
    return claims


def _number(value: Any) -> float | None:
    """A claims cell as a float, None when it is missing (claims columns are often object-typed)."""
    if value is None or value is pd.NA:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# ------------------------------------------------------------------------------------------ paper values


@dataclass(frozen=True)
class PaperKey:
    """Where an artifact's paper numbers live: dataset names, split and metric in paper_results.csv."""

    paper: str
    artifact: str
    metric: str | None = None
    split: Callable[[str], str | None] = lambda task: None  # our task (variant) -> the paper's split


def _base(task: str) -> str:
    return split_task_variant(task)[0]


def paper_dataset(task: str) -> str:
    return GLUE_AVG if task == GLUE_AVG else paper_task_name(split_task_variant(task)[0])


def _paper_cell(key: PaperKey, paper_model: str, task: str, paper_method: str) -> PaperNumber | None:
    metric = "average" if task == GLUE_AVG else key.metric
    # The artifact's own name for the task (e.g. SMART prints MNLI as "MNLI-m" and "MNLI-mm").
    dataset = GLUE_AVG if task == GLUE_AVG else paper_dataset_name(key.paper, key.artifact, _base(task))
    return paper_lookup(
        key.paper, key.artifact, paper_model, dataset, paper_method, metric, split=key.split(task)
    )


def paper_number(key: PaperKey, paper_model: str, task: str, paper_method: str) -> float | None:
    number = _paper_cell(key, paper_model, task, paper_method)
    return None if number is None else number.value


def mean_paper_number(
    tasks: Sequence[str], number_of: Callable[[str], PaperNumber | None]
) -> PaperNumber | None:
    """The mean of the paper's per-task numbers (`number_of(task)`) over the tasks our average covers,
    like for like; None unless the paper has a number for every one of them. The one recomputation of
    a paper-side average over a task subset, for the GLUE report and every artifact."""
    numbers = [number_of(task) for task in tasks]
    present = [number for number in numbers if number is not None]
    if not numbers or len(present) < len(numbers):
        return None
    names = ", ".join(paper_dataset(task) for task in tasks)
    return PaperNumber(
        value=sum(number.value for number in present) / len(present),
        metric="average",
        split=present[0].split,
        source=f"mean of the paper's per-task values over {names} (recomputed, not the paper's Avg column)",
        confidence=min(number.confidence for number in present),
    )


def paper_average_over(
    key: PaperKey, paper_model: str, tasks: Iterable[str], paper_method: str
) -> tuple[float | None, str]:
    """The paper's average over the tasks we ran: its own Avg when we ran all nine, else recomputed."""
    tasks = list(tasks)
    if {paper_dataset(t) for t in tasks} == set(GLUE_TABLE_ORDER):
        return paper_number(key, paper_model, GLUE_AVG, paper_method), "the paper's average"
    recomputed = mean_paper_number(tasks, lambda task: _paper_cell(key, paper_model, task, paper_method))
    if recomputed is not None:
        names = ", ".join(paper_dataset(t) for t in tasks)
        return recomputed.value, f"the paper's per-task values averaged over {names}"
    # The paper prints only the average (e.g. NoisyTune Figures 2, 3, 6): compare directions only.
    return paper_number(key, paper_model, GLUE_AVG, paper_method), "the paper's 9-task average"


# ------------------------------------------------------------------------------------------ claims


def comparison_claims(
    runs: pd.DataFrame,
    context: ArtifactContext,
    key: PaperKey,
    methods: Mapping[str, str],
    baseline: str,
    tasks: Iterable[str] | None = None,
    average_over: Mapping[str, list[str]] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Claims "method beats baseline" per (model, task) and on the average, ours beside the paper's.

    `methods` maps our method names (presets in the config) to the paper's names, baseline included.
    Statistics are paired over seeds (tables.compare): Holm-adjusted t-test p over the tasks of one
    (model, method), plain paired t-test p for the average. Every average claim of a model covers one
    task set: `average_over` (model -> tasks; for a table built from several calls), else the tasks
    every one of these methods ran (tables.average_tasks). Returns the claims and notes, which name
    each model's task set and the paper's side of the average.
    """
    paper_names = dict(methods)  # each artifact knows the paper's names for the presets it reads
    wanted = runs[runs["method"].isin([*methods, baseline])]
    if tasks is not None:
        wanted = wanted[wanted["task"].isin(list(tasks))]
    if average_over is None:  # the artifact's table: the tasks every method it compares ran
        average_over = average_tasks(wanted)
    comparisons = (
        compare(wanted, baseline=baseline, n_boot=context.n_boot, average_over=average_over)
        if not wanted.empty
        else None
    )
    rows, notes = [], []
    if comparisons is None or comparisons.empty:
        return pd.DataFrame(columns=CLAIM_COLUMNS), notes
    base_name = paper_names.get(baseline, baseline)
    for r in comparisons.itertuples(index=False):
        paper_model = context.paper_model.get(r.model)
        method_name = paper_names.get(r.method, r.method)
        paper_value = paper_base = None
        if paper_model is not None:
            paper_value, paper_base, how = _paper_side(key, paper_model, r, method_name, base_name)
            if how is not None:
                notes.append(f"{r.model} {r.method}: the paper's side of the average is {how}.")
        if r.task == GLUE_AVG:
            names = ", ".join(paper_dataset(t) for t in str(r.average_over).split(AVERAGE_SEPARATOR))
            notes.append(f"{r.model}: {GLUE_AVG} is the average over {names}, for every method alike.")
        rows.append(_claim_row(r, baseline, paper_model, method_name, paper_value, paper_base))
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS), list(dict.fromkeys(notes))


def _paper_side(
    key: PaperKey, paper_model: str, r: Any, method_name: str, base_name: str
) -> tuple[float | None, float | None, str | None]:
    """(paper's method value, paper's baseline value, how the paper's average was formed or None) for
    one comparison row `r`: the printed numbers of a task, or the paper's average over the row's tasks."""
    if r.task == GLUE_AVG:
        averaged = str(r.average_over).split(AVERAGE_SEPARATOR)
        paper_value, how = paper_average_over(key, paper_model, averaged, method_name)
        paper_base, _ = paper_average_over(key, paper_model, averaged, base_name)
        return paper_value, paper_base, how
    return (
        paper_number(key, paper_model, r.task, method_name),
        paper_number(key, paper_model, r.task, base_name),
        None,
    )


def _claim_row(
    r: Any,
    baseline: str,
    paper_model: str | None,
    method_name: str,
    paper_value: float | None,
    paper_base: float | None,
) -> dict[str, Any]:
    """One claim: comparison row `r` (tables.compare) beside the paper's numbers, with its verdict."""
    paper_delta = None if paper_value is None or paper_base is None else paper_value - paper_base
    p_value = r.p_ttest if r.task == GLUE_AVG else r.p_holm
    return {
        "model": r.model,
        "paper_model": paper_model or "",
        "task": r.task,
        "method": r.method,
        "paper_method": method_name,
        "baseline": baseline,
        "n_pairs": r.n_pairs,
        "mean_method": r.mean_method,
        "mean_baseline": r.mean_baseline,
        "delta": r.delta,
        "ci_low": r.ci_low,
        "ci_high": r.ci_high,
        "p_value": p_value,
        "p_kind": "t-test" if r.task == GLUE_AVG else "Holm",
        "paper_value": paper_value,
        "paper_baseline": paper_base,
        "paper_delta": paper_delta,
        "verdict": verdict(
            paper_delta,
            r.ci_low,
            r.ci_high,
            r.n_pairs,
            p_value,
            n_diverged_method=r.n_diverged_method,
            n_diverged_baseline=r.n_diverged_baseline,
        ),
        "min_seeds_for_significance": r.min_seeds_for_significance,
        "n_diverged_method": r.n_diverged_method,
        "n_diverged_baseline": r.n_diverged_baseline,
    }


def seed_notes(claims: pd.DataFrame, protocol: str) -> list[str]:
    """Where the observed variance says the paper's protocol cannot support a claimed difference."""
    notes = []
    for r in claims.itertuples(index=False):
        need = r.min_seeds_for_significance
        if _missing(r.paper_delta) or _missing(need) or pd.isna(need):
            continue
        if int(need) > r.n_pairs:
            notes.append(
                f"{r.model} {paper_dataset(r.task)} {r.method}: at our variance a 95% paired test needs "
                f"about {int(need)} seeds to detect our Δ = {r.delta:+.2f}; we ran {int(r.n_pairs)} pairs, "
                f"the paper's protocol is {protocol}."
            )
    return notes


# ------------------------------------------------------------------------------------------ outputs


def claims_latex(claims: pd.DataFrame) -> str:
    shown = claims[
        ["model", "task", "method", "baseline", "mean_method", "delta", "ci_low", "ci_high"]
    ].copy()
    shown["p"] = claims["p_value"]
    shown["paper Δ"] = claims["paper_delta"]
    shown["verdict"] = claims["verdict"]
    return shown.to_latex(index=False, float_format=lambda v: f"{v:.2f}", na_rep="--")


def write_result(result: ArtifactResult, out_dir: Path) -> dict[str, Any]:
    """claims.csv / claims.tex / figure.svg / appendix.csv / result.json in `out_dir`; result.json is
    written last. figure.svg and appendix.csv exist only when the result has them."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    claims = result.claims if result.claims is not None else pd.DataFrame(columns=CLAIM_COLUMNS)
    write_text_atomic(out_dir / "claims.csv", claims.to_csv(index=False))
    write_text_atomic(out_dir / "claims.tex", claims_latex(claims))
    figure_path = out_dir / "figure.svg"
    if result.figure is not None:
        import io

        import matplotlib

        buffer = io.BytesIO()
        style = {"svg.hashsalt": "robustft", "svg.fonttype": "path", "text.parse_math": False}
        with matplotlib.rc_context(style):
            result.figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
        write_bytes_atomic(figure_path, buffer.getvalue())
    else:
        figure_path.unlink(missing_ok=True)
    appendix_path = out_dir / "appendix.csv"
    if result.appendix is not None:
        write_text_atomic(appendix_path, result.appendix.to_csv(index=False))
    else:
        appendix_path.unlink(missing_ok=True)  # a stale appendix must not outlive the result it belonged to
    record = {
        "key": result.key,
        "paper": result.paper,
        "artifact": result.artifact,
        "title": result.title,
        "status": result.status,
        "reason": result.reason,
        "figure": "figure.svg" if result.figure is not None else None,
        "caption": result.caption,
        "notes": result.notes,
        "choices": result.choices,
        "n_claims": len(claims),
        "min_seeds": result.min_seeds,
    }
    if result.appendix is not None:  # absent otherwise, so results without one are unchanged
        record |= {"appendix": appendix_path.name, "appendix_title": result.appendix_title}
    write_json_atomic(out_dir / "result.json", record)
    return record


def read_result(out_dir: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    out_dir = Path(out_dir)
    record = json.loads((out_dir / "result.json").read_text(encoding="utf-8"))
    claims = pd.read_csv(out_dir / "claims.csv")
    return record, claims


def read_appendix(out_dir: Path, record: dict[str, Any]) -> pd.DataFrame | None:
    """The appendix table `record` (from read_result) names, or None when the result has none."""
    if not record.get("appendix"):
        return None
    # Only empty fields are missing: a language or model called "NA" stays a name.
    return pd.read_csv(Path(out_dir) / record["appendix"], keep_default_na=False, na_values=[""])


# ------------------------------------------------------------------------------------------ figures


def effects_figure(claims: pd.DataFrame, label: Callable[[Any], str], title: str):
    """Our Δ against the baseline with its 95% CI, one panel per model; crosses: the paper's Δ."""
    from matplotlib.figure import Figure

    models = list(dict.fromkeys(claims["model"]))
    figure = Figure(figsize=(7.5, 1.9 * max(len(models), 1) + 0.5), layout="constrained")
    axes = figure.subplots(max(len(models), 1), 1, squeeze=False)
    for ax, model in zip(axes[:, 0], models, strict=False):
        rows = claims[claims["model"] == model]
        x = range(len(rows))
        low = (rows["delta"] - rows["ci_low"]).clip(lower=0).to_numpy(dtype=float)
        high = (rows["ci_high"] - rows["delta"]).clip(lower=0).to_numpy(dtype=float)
        ax.errorbar(
            x, rows["delta"], yerr=[low, high], fmt="o", color="C0", capsize=2, ms=4, label="ours (95% CI)"
        )
        ax.plot(x, rows["paper_delta"].astype(float), "x", color="black", ms=6, label="paper")
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_xticks(list(x), [label(r) for r in rows.itertuples(index=False)], rotation=20, ha="right")
        ax.set_ylabel("Δ vs baseline (points)")
        paper_model = rows["paper_model"].iloc[0]
        proxy = f" (paper: {paper_model}, proxy)" if paper_model and paper_model != model else ""
        ax.set_title(f"{model}{proxy}", fontsize=9)
        ax.legend(fontsize=7, frameon=False)
    figure.suptitle(title, fontsize=10)
    return figure


def curve_figure(claims: pd.DataFrame, x_of: Callable[[Any], float], xlabel: str, title: str):
    """Score against a swept quantity (data fraction, λ): ours (mean over seeds) and the paper's."""
    from matplotlib.figure import Figure

    models = list(dict.fromkeys(claims["model"]))
    figure = Figure(figsize=(3.6 * max(len(models), 1) + 0.5, 2.8), layout="constrained")
    axes = figure.subplots(1, max(len(models), 1), squeeze=False)
    for ax, model in zip(axes[0], models, strict=False):
        rows = claims[claims["model"] == model]  # the caller picks the rows of the curve
        rows = rows.assign(x=[x_of(r) for r in rows.itertuples(index=False)]).sort_values("x")
        ax.plot(rows["x"], rows["mean_method"], "o-", color="C1", label="ours: method")
        ax.plot(rows["x"], rows["mean_baseline"], "s--", color="C0", label="ours: baseline")
        if rows["paper_value"].notna().any():
            ax.plot(
                rows["x"],
                rows["paper_value"].astype(float),
                "o-",
                mfc="none",
                color="black",
                label="paper: method",
            )
            ax.plot(
                rows["x"],
                rows["paper_baseline"].astype(float),
                "s--",
                mfc="none",
                color="grey",
                label="paper: baseline",
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel("score (points)")
        ax.set_title(model, fontsize=9)
        ax.legend(fontsize=6, frameon=False)
    figure.suptitle(title, fontsize=10)
    return figure
