"""NoisyTune (Wu et al., ACL 2022) Table 3: XTREME with and without NoisyTune, as a function of xtreme.csv.

One claim per (model, setting, task, metric) and one per (model, setting) on the XTREME average: our
method minus the baseline, paired over seeds, beside the paper's numbers for the paper model our model
stands for. Scores are per-run means over the task's languages (robustft.tables.xtreme) in points.
The names come from the context (`--context` JSON): `baseline` (default finetune), `method` (default
noisytune) and `mechanics_check` (runs that only check the machinery, never compared with the paper).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from robustft.artifacts.base import (
    CLAIM_COLUMNS,
    ArtifactContext,
    ArtifactResult,
    effects_figure,
    get_artifact,
    not_run,
    register_artifact,
    seed_notes,
)
from robustft.data.xtreme import XTREME_TASKS
from robustft.reference import paper_lookup
from robustft.stats import MECHANICS_CHECK, NOT_COMPARABLE, holm, verdict
from robustft.tables.glue import _paired_comparison  # the statistics of tables.compare, which Table 2 uses
from robustft.tables.xtreme import AVERAGE_METRICS, PAPER_NAME, XTREME_AVG, xtreme_average, xtreme_run_scores

PAPER = "NoisyTune"
ARTIFACT = "Table 3"
PROTOCOL = "the mean of 5 seeds"
# Our settings -> the paper's splits in paper_results.csv.
SETTING_SPLIT = {
    "zero-shot": "test/zero-shot-cross-lingual",
    "translate-train-all": "test/translate-train-all",
}
# Table 3 labels BUCC "Acc"; XTREME (and our runs) score BUCC by F1.
PAPER_METRIC = {("bucc2018", "f1"): "accuracy"}
EXTRA_COLUMNS = ["setting", "xtreme_task", "metric", "n_failed"]
MECHANICS_NOTE = (
    "These runs are mechanics checks, not reproductions: the CPU variant fine-tunes a tiny random XLM-R "
    "and MiniLM on small subsets, so no claim is compared with the paper (verdict: mechanics check) and "
    "the paper's numbers are shown for reference only."
)


def _label(setting: str, task: str, metric: str) -> str:
    """The claim's `task`, as the report prints it: setting, the paper's task name and, for QA, the metric."""
    if task == XTREME_AVG:
        return f"{setting}: {XTREME_AVG}"
    shown = f" {metric}" if metric and len(AVERAGE_METRICS.get(task, ())) > 1 else ""
    return f"{setting}: {PAPER_NAME.get(task, task)}{shown}"


def _common_languages(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Keep, per (model, setting, task, metric), the languages every ok run has, so that the per-task
    means of the two methods and of all seeds average the same languages; notes say what was left out."""
    ok = frame["status"] == "ok"
    keep = pd.Series(True, index=frame.index)
    notes = []
    for (model, setting, task, metric), cell in frame[ok].groupby(["model", "setting", "task", "metric"]):
        per_run = cell.groupby(["method", "seed"])["language"].agg(set)
        common = set.intersection(*per_run)
        dropped = sorted(set.union(*per_run) - common)
        if dropped:
            keep[cell.index[~cell["language"].isin(common)]] = False
            notes.append(
                f"{model} {setting} {PAPER_NAME.get(task, task)} {metric}: {', '.join(dropped)} left out "
                "(not scored by every run of the cell)."
            )
    return frame[keep], notes


def _language_coverage(
    frame: pd.DataFrame, model: str, setting: str, task: str, metric: str
) -> tuple[str | None, str | None]:
    """Whether our per-task mean averages the paper's languages: (None, None) when it does (or nothing
    was scored), else (the verdict "not comparable", a note saying "scored N of M languages" and which).

    The paper prints only the mean over all of a task's test languages, so a mean over a subset of them
    (or over other languages) is a different quantity and gets no reproduced/contradicted verdict.
    """
    spec = XTREME_TASKS.get(task)
    cell = frame[
        (frame["model"] == model)
        & (frame["setting"] == setting)
        & (frame["task"] == task)
        & (frame["metric"] == metric)
        & (frame["status"] == "ok")
    ]
    scored = set(cell["language"].dropna().astype(str))
    if spec is None or not scored or scored == set(spec.languages):
        return None, None
    expected = set(spec.languages)
    missing, extra = sorted(expected - scored), sorted(scored - expected)
    note = (
        f"{model} {_label(setting, task, metric)}: {NOT_COMPARABLE}, scored "
        f"{len(scored & expected)} of {len(expected)} languages"
        + (f" (missing {', '.join(missing)})" if missing else "")
        + (f" (and {', '.join(extra)}, not among the paper's)" if extra else "")
        + f"; the paper prints only its mean over all {len(expected)}, shown for reference, with no verdict."
    )
    return NOT_COMPARABLE, note


def _paper(paper_model: str | None, setting: str, task: str, metric: str, method: str) -> float | None:
    split = SETTING_SPLIT.get(setting)
    if paper_model is None or split is None:
        return None
    name = PAPER_NAME.get(task)
    if name is None:
        return None
    number = paper_lookup(
        PAPER, ARTIFACT, paper_model, name, method, PAPER_METRIC.get((task, metric), metric), split=split
    )
    return None if number is None else number.value


def _paper_average(
    paper_model: str | None, setting: str, tasks: list[str], method: str
) -> tuple[float | None, str]:
    """The paper's Avg. when our average covers all nine tasks, else its per-task numbers averaged by
    the same rule over our tasks."""
    split = SETTING_SPLIT.get(setting)
    if paper_model is None or split is None or not tasks:
        return None, ""
    if set(tasks) == set(PAPER_NAME):
        number = paper_lookup(PAPER, ARTIFACT, paper_model, XTREME_AVG, method, "average", split=split)
        return (None if number is None else number.value), "the paper's Avg. column"
    scores = {t: {m: _paper(paper_model, setting, t, m, method) for m in AVERAGE_METRICS[t]} for t in tasks}
    if any(v is None for metrics in scores.values() for v in metrics.values()):
        return None, ""
    names = ", ".join(PAPER_NAME[t] for t in tasks)
    return xtreme_average(scores), f"the paper's per-task values averaged over {names} by the same rule"


def _seed_scores(
    scores: pd.DataFrame, model: str, setting: str, method: str, task: str, metric: str
) -> pd.Series:
    """Per-seed score in points (the paper's unit), indexed by seed: the pairing key."""
    hit = scores[
        (scores["model"] == model)
        & (scores["setting"] == setting)
        & (scores["method"] == method)
        & (scores["task"] == task)
        & (scores["metric"] == metric)
    ]
    return 100.0 * hit.set_index("seed")["value"].astype(float)


def _why_not_run(frame: pd.DataFrame, model: str, setting: str, task: str, method: str, baseline: str) -> str:
    cell = frame[(frame["model"] == model) & (frame["setting"] == setting)]
    if task != XTREME_AVG:
        cell = cell[cell["task"] == task]
    missing = []
    for name in (baseline, method):
        runs = cell[cell["method"] == name].drop_duplicates(["task", "seed"])
        bad = runs[runs["status"] != "ok"]
        if runs.empty:
            missing.append(f"no `{name}` runs")
        elif len(bad) == len(runs):
            missing.append(f"every `{name}` run {'/'.join(sorted(set(bad['status'])))}")
    if missing:
        return "; ".join(missing)
    if task == XTREME_AVG:
        return "no seed has an ok run of both methods on every task attempted"
    return "no seed ran ok with both methods"


def _claim(
    frame: pd.DataFrame,
    scores: pd.DataFrame,
    context: ArtifactContext,
    key: tuple[str, str, str, str],
    names: tuple[str, str],
) -> tuple[dict[str, Any], list[str]]:
    """One claim: `method` − `baseline` on (model, setting, task, metric), beside the paper's Δ."""
    model, setting, task, metric = key
    baseline, method = names
    paper_model = context.paper_model.get(model)
    notes = []
    if task == XTREME_AVG:
        covered = scores.loc[
            (scores["model"] == model) & (scores["setting"] == setting) & (scores["task"] == XTREME_AVG),
            "tasks",
        ]
        tasks = covered.iloc[0].split(",") if len(covered) else []
        paper_value, how = _paper_average(paper_model, setting, tasks, "noisytune")
        paper_base, _ = _paper_average(paper_model, setting, tasks, "finetune")
        if how:
            notes.append(f"{model} {setting}: the paper's side of {XTREME_AVG} is {how}.")
    else:
        paper_value = _paper(paper_model, setting, task, metric, "noisytune")
        paper_base = _paper(paper_model, setting, task, metric, "finetune")
    mine = _seed_scores(scores, model, setting, method, task, metric)
    theirs = _seed_scores(scores, model, setting, baseline, task, metric)
    paired = _paired_comparison(mine, theirs, context.n_boot, 0)
    if paired["n_pairs"] == 0:
        why = _why_not_run(frame, model, setting, task, method, baseline)
        # Runs give both QA metrics or neither, so one note per task (metric left out) says it.
        notes.append(f"{model} {_label(setting, task, '')}: not run ({why}).")
    runs = frame[(frame["model"] == model) & (frame["setting"] == setting)]
    if task != XTREME_AVG:
        runs = runs[runs["task"] == task]
    runs = runs.drop_duplicates(["task", "method", "seed"])
    # A per-task claim over a subset of the task's languages is not comparable with the paper's mean.
    not_comparable = None
    if task != XTREME_AVG:
        not_comparable, coverage_note = _language_coverage(frame, model, setting, task, metric)
        if coverage_note and paired["n_pairs"] > 0:
            notes.append(coverage_note)
    row = {
        "model": model,
        "paper_model": paper_model or "",
        "task": _label(setting, task, metric),
        "method": method,
        "paper_method": "noisytune",
        "baseline": baseline,
        **{k: paired[k] for k in ("n_pairs", "mean_method", "mean_baseline", "delta", "ci_low", "ci_high")},
        "p_value": paired["p_ttest"],
        "p_kind": "t-test" if task == XTREME_AVG else "Holm",
        "paper_value": paper_value,
        "paper_baseline": paper_base,
        "paper_delta": None if paper_value is None or paper_base is None else paper_value - paper_base,
        "min_seeds_for_significance": paired["min_seeds_for_significance"],
        "verdict": not_comparable,  # None: decided in _claims
        "setting": setting,
        "xtreme_task": task,
        "metric": metric,
        "n_failed": int((runs["status"] != "ok").sum()),
    }
    return row, notes


def _claims(
    frame: pd.DataFrame, context: ArtifactContext, baseline: str, method: str, mechanics: bool
) -> tuple[pd.DataFrame, list[str]]:
    """Every Table 3 cell of each (model, setting) we ran: the nine tasks (QA twice: F1 and EM), then
    the average. Cells without seed pairs are claims with verdict "not run" and a note saying why."""
    scores = xtreme_run_scores(frame)
    order = {setting: i for i, setting in enumerate(SETTING_SPLIT)}
    cells = sorted(
        set(zip(frame["model"], frame["setting"], strict=True)),
        key=lambda cell: (cell[0], order.get(cell[1], len(order)), cell[1]),
    )
    rows, notes = [], []
    for model, setting in cells:
        family = []
        for task, metrics in AVERAGE_METRICS.items():
            for metric in metrics:
                row, more = _claim(frame, scores, context, (model, setting, task, metric), (baseline, method))
                family.append(row)
                notes += more
        # One Holm family per (model, setting): its per-task claims, both QA metrics included.
        for row, p in zip(family, holm([r["p_value"] for r in family]), strict=True):
            row["p_value"] = p
        average, more = _claim(
            frame, scores, context, (model, setting, XTREME_AVG, "average"), (baseline, method)
        )
        # An average over tasks inherits any task's language subset: it is no longer the paper's Avg.
        partial = sorted({PAPER_NAME.get(r["xtreme_task"], r["xtreme_task"]) for r in family if r["verdict"]})
        if partial:
            average["verdict"] = NOT_COMPARABLE
            if average["n_pairs"] > 0:
                notes.append(
                    f"{model} {_label(setting, XTREME_AVG, '')}: {NOT_COMPARABLE}, {len(partial)} of its "
                    f"tasks scored on a subset of their languages ({', '.join(partial)})."
                )
        rows += [*family, average]
        notes += more
    claims = pd.DataFrame(rows, columns=[*CLAIM_COLUMNS, *EXTRA_COLUMNS])
    claims["verdict"] = [
        (MECHANICS_CHECK if r.n_pairs > 0 else "not run")
        if mechanics
        else r.verdict  # not comparable (language subset)
        if r.n_pairs > 0 and isinstance(r.verdict, str)
        else verdict(r.paper_delta, r.ci_low, r.ci_high, r.n_pairs, r.p_value)
        for r in claims.itertuples(index=False)
    ]
    return claims, list(dict.fromkeys(notes))


def per_language_appendix(frame: pd.DataFrame, baseline: str, method: str) -> pd.DataFrame:
    """Per (model, setting, task, metric, language): each method's mean ± std (ddof=1) over its ok seeds,
    in points, with the number of seeds, and the difference of the two means."""
    ok = frame[(frame["status"] == "ok") & frame["value"].notna() & frame["method"].isin([baseline, method])]
    ok = ok[[m in AVERAGE_METRICS.get(t, ()) for t, m in zip(ok["task"], ok["metric"], strict=True)]]
    keys = ["model", "setting", "task", "metric", "language"]
    stats = (
        ok.assign(value=100.0 * ok["value"].astype(float))
        .groupby([*keys, "method"])["value"]
        .agg(mean="mean", std="std", n="count")
        .unstack("method")
    )
    table = pd.DataFrame(index=stats.index)
    for name in (baseline, method):
        for stat in ("mean", "std", "n"):
            table[f"{name} {stat}"] = stats[stat].get(name, math.nan)
        table[f"{name} n"] = table[f"{name} n"].fillna(0).astype(int)
    table["Δ of means"] = table[f"{method} mean"] - table[f"{baseline} mean"]
    table = table.reset_index()
    # Table 3's order: settings as SETTING_SPLIT, tasks as PAPER_NAME, each task's metrics primary first.
    orders = {
        "setting": {s: i for i, s in enumerate(SETTING_SPLIT)},
        "task": {t: i for i, t in enumerate(PAPER_NAME)},
        "metric": {m: i for i, m in enumerate(("accuracy", "f1", "em"))},
    }
    table = table.sort_values(
        keys,
        key=lambda c: c.map(orders[c.name]).fillna(len(orders[c.name])) if c.name in orders else c,
        ignore_index=True,
    )
    table["task"] = table["task"].map(lambda t: PAPER_NAME.get(t, t))
    return table


@register_artifact(
    "noisytune/table3", PAPER, ARTIFACT, "XTREME, XLM-R with and without NoisyTune", table="xtreme"
)
def table3(xtreme: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("noisytune/table3")
    baseline = str(context.extra.get("baseline", "finetune"))
    method = str(context.extra.get("method", "noisytune"))
    mechanics = bool(context.extra.get("mechanics_check", False))
    frame = xtreme[xtreme["method"].isin([baseline, method])]
    present = set(frame.loc[frame["status"] == "ok", "method"])
    if not {baseline, method} <= present:
        absent = ", ".join(f"`{m}`" for m in (baseline, method) if m not in present)
        return not_run(spec, f"needs ok XTREME runs of `{baseline}` and `{method}`; no ok run of {absent}")
    frame, language_notes = _common_languages(frame)
    claims, notes = _claims(frame, context, baseline, method, mechanics)

    result = ArtifactResult(spec.key, PAPER, spec.artifact, spec.title)
    result.claims = claims
    result.appendix = per_language_appendix(xtreme, baseline, method)
    result.appendix_title = (
        f"NoisyTune Table 3 per language: {baseline} and {method}, mean ± std over seeds (points)"
    )
    # The figure: the primary metric of each task (QA by F1) and the average.
    primary = pd.Series(
        [
            m == "average" or m == AVERAGE_METRICS[t][0]
            for t, m in zip(claims["xtreme_task"], claims["metric"], strict=True)
        ],
        index=claims.index,
    )
    shown = claims[(claims["n_pairs"] > 0) & primary]
    check = " (MECHANICS CHECK, not a reproduction)" if mechanics else ""
    if not shown.empty:
        result.figure = effects_figure(
            shown.reset_index(drop=True),
            lambda r: r.task,
            f"NoisyTune Table 3{check}: Δ ({method} − {baseline}), mean over languages",
        )
    result.caption = (
        f"Per task (its mean over languages; QA by F1) and on {XTREME_AVG}: our Δ with its 95% paired "
        "bootstrap CI; crosses: the paper's Δ."
    )
    if mechanics:
        result.caption = f"Mechanics check, not a reproduction. {result.caption}"
    result.choices = [
        "A task's score per run: the mean over its test languages (XTREME's per-task number); claims pair "
        "those per-run scores over seeds (95% percentile bootstrap CI, paired t-test; Holm over the "
        "per-task claims, both QA metrics included, of one model and setting; the average row unadjusted).",
        f"{XTREME_AVG}: the mean of XTREME's four category scores (pair classification, structured "
        "prediction, QA with (F1 + EM) / 2 per task, retrieval). From the paper's own per-task numbers "
        "this rule gives its Avg. column within 0.05 in all eight cells (tables.xtreme.xtreme_average).",
        "BUCC: our F1 (XTREME's metric) is compared with the paper's BUCC column, which Table 3 labels "
        "'Acc'.",
        "Settings map to the paper's splits: "
        + "; ".join(f"{ours} → {split}" for ours, split in SETTING_SPLIT.items())
        + ".",
        f"The paper's Table 3 uses λ = 0.1 and no noise on the token embeddings; `{method}` is expected "
        "to be configured so (not checked here).",
    ]
    result.choices += [str(choice) for choice in context.extra.get("choices") or []]
    notes = [*language_notes, *_training_language_notes(frame), *notes]
    if mechanics:
        result.notes = [MECHANICS_NOTE, *notes]
    else:
        result.notes = [*notes, *seed_notes(claims[claims["n_pairs"] > 0], PROTOCOL)]
    return result


def _training_language_notes(frame: pd.DataFrame) -> list[str]:
    """Which languages each translate-train-all task trained on, so an English-only run is never read
    as the paper's translate-train-all (XTREME has no translated UD-POS or PAN-X training data)."""
    if "train_languages" not in frame:
        return []
    trained = frame[(frame["setting"] == "translate-train-all") & frame["train_languages"].notna()]
    notes = []
    for task, rows in trained.groupby("task", sort=True):
        used = sorted(set(rows["train_languages"]))
        label = PAPER_NAME.get(task, task)
        if used == ["en"]:
            notes.append(f"translate-train-all {label}: trained on English only (no translations found).")
        else:
            notes.append(
                f"translate-train-all {label}: trained on {', '.join(u.replace('+', ', ') for u in used)}."
            )
    return notes
