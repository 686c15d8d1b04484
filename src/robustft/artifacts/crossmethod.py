"""Beyond the papers: every method and composition on one budget, with what each point of gain costs.

Claims are each method against `finetune` on every task and on the average (paired over seeds, as in
the paper artifacts). Cost comes from the runs themselves: training time (Trainer's train_runtime, on
whatever device ran it) and training examples per second. "Points per extra hour" divides the average
gain by the extra training hours per run; it is undefined when a method is not slower.
"""

from __future__ import annotations

import math

import pandas as pd

from robustft.artifacts.base import (
    ArtifactContext,
    ArtifactResult,
    PaperKey,
    comparison_claims,
    get_artifact,
    not_run,
    register_artifact,
)
from robustft.reference import GLUE_AVG

BASELINE = "finetune"
COST_COLUMNS = ["hours_per_run", "baseline_hours_per_run", "samples_per_s", "points_per_extra_hour"]


def method_costs(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (model, method): mean training hours per run and examples/s, and the baseline's mean hours,
    all over the (task, seed) pairs both finished, so a method run on fewer or cheaper tasks is not
    made to look cheap."""
    ok = runs[runs["status"] == "ok"]
    keys = ["model", "task", "seed"]
    baseline = ok[ok["method"] == BASELINE][[*keys, "train_runtime_s"]]
    paired = ok[ok["method"] != BASELINE].merge(baseline, on=keys, suffixes=("", "_baseline"))
    return (
        paired.groupby(["model", "method"])
        .agg(
            hours_per_run=("train_runtime_s", lambda s: s.mean() / 3600),
            baseline_hours_per_run=("train_runtime_s_baseline", lambda s: s.mean() / 3600),
            samples_per_s=("train_samples_per_second", "mean"),
        )
        .reset_index()
    )


@register_artifact(
    "crossmethod/table", "robustft", "cross-method", "Every method on one budget, with its cost"
)
def table(runs: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("crossmethod/table")
    full = runs[~runs["task"].str.contains("@", regex=False)]
    methods = sorted(set(full["method"]) - {BASELINE})
    if BASELINE not in set(full["method"]) or not methods:
        return not_run(spec, f"needs `{BASELINE}` and at least one other method on the same tasks and seeds")
    names = {m: m for m in [BASELINE, *methods]}
    # No paper reports this table: the key only names where paper numbers would be looked up (none are).
    claims, _ = comparison_claims(full, context, PaperKey("NoisyTune", "Table 2"), names, BASELINE)
    claims["paper_value"] = claims["paper_baseline"] = claims["paper_delta"] = None
    claims["verdict"] = [_effect(r) for r in claims.itertuples(index=False)]
    costs = method_costs(full).set_index(["model", "method"])
    for column in ("hours_per_run", "baseline_hours_per_run", "samples_per_s"):
        claims[column] = [costs[column].get((r.model, r.method)) for r in claims.itertuples()]
    extra = claims["hours_per_run"] - claims["baseline_hours_per_run"]
    claims["points_per_extra_hour"] = [
        delta / hours if hours and hours > 0 and math.isfinite(delta) else None
        for delta, hours in zip(claims["delta"], extra, strict=True)
    ]
    result = ArtifactResult(spec.key, spec.paper, spec.artifact, spec.title)
    result.claims = claims
    average = claims[claims["task"] == GLUE_AVG]
    result.figure = _cost_figure(average if not average.empty else claims)
    result.caption = (
        "Average gain over plain fine-tuning (95% CI) against the extra training time per run; the "
        "slope from the origin is the points gained per extra hour."
    )
    result.notes = _cost_notes(average)
    result.choices = [
        "One budget (the config's `train` block) for every method; each method keeps its paper defaults.",
        "Hours are Trainer's train_runtime (evaluation included) on the device that ran the job, averaged "
        "over the (task, seed) pairs the method and finetune both finished; compare them only between "
        "runs on the same hardware. A run resumed after preemption counts only its last attempt's time.",
    ]
    return result


def _effect(row) -> str:
    """No paper to agree with: say only whether the effect is clear (CI excludes 0 and the test is
    significant) and which way."""
    from robustft.stats import CLEAR_GAIN, CLEAR_LOSS, NOT_RUN, SIGNIFICANCE, WITHIN_NOISE

    if not row.n_pairs:
        return NOT_RUN
    clear = row.ci_low > 0 or row.ci_high < 0
    if clear and not pd.isna(row.p_value) and row.p_value < SIGNIFICANCE:
        return CLEAR_GAIN if row.ci_low > 0 else CLEAR_LOSS
    return WITHIN_NOISE


def _cost_notes(average: pd.DataFrame) -> list[str]:
    notes = []
    for r in average.itertuples(index=False):
        rate = (
            "undefined (not slower)"
            if pd.isna(r.points_per_extra_hour)
            else f"{r.points_per_extra_hour:+.2f}"
        )
        notes.append(
            f"{r.model} {r.method}: {r.hours_per_run * 60:.1f} min per run vs "
            f"{r.baseline_hours_per_run * 60:.1f} for {BASELINE}, {r.samples_per_s:.1f} examples/s; "
            f"average Δ {r.delta:+.2f} points, {rate} points per extra hour."
        )
    return notes


def _cost_figure(rows: pd.DataFrame):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 3.6), layout="constrained")
    ax = figure.subplots()
    extra_minutes = 60 * (rows["hours_per_run"] - rows["baseline_hours_per_run"])
    low = (rows["delta"] - rows["ci_low"]).clip(lower=0)
    high = (rows["ci_high"] - rows["delta"]).clip(lower=0)
    ax.errorbar(extra_minutes, rows["delta"], yerr=[low, high], fmt="o", capsize=2, ms=4)
    for x, y, name in zip(extra_minutes, rows["delta"], rows["method"], strict=True):
        ax.annotate(name, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.axhline(0, color="grey", lw=0.6)
    ax.axvline(0, color="grey", lw=0.6)
    ax.set_xlabel(f"extra training minutes per run vs {BASELINE}")
    ax.set_ylabel(f"Δ average vs {BASELINE} (points)")
    ax.set_title("Gain against cost", fontsize=10)
    return figure
