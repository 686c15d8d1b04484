"""NEFTune (Jain et al., ICLR 2024): the instruction-tuning track's tables and figures.

Each artifact is a function of `instruct.csv` (robustft.tables.instruct) and of the per-example files in
the run directories it lists (judgements, generations, losses); Figures 6-8 are functions of the
embedding measurements instead (embedding_flips.csv, embedding_spectra.csv:
robustft.evals.embedding_analysis). The paper trains one model per cell with one seed, so its claims are
paired over *prompts* (or training examples), not seeds: both arms answer the same 805 AlpacaEval
prompts, judged against the same reference. Our CIs are paired bootstraps over those items; where several
seeds exist, items are paired within each seed. A prompt-level CI does not capture seed-to-seed variance,
and every artifact says so.

Our dataset and method names map to the paper's through the config (`instruct.report`); the judge is
named in every claim, because the paper's GPT-4/ChatGPT numbers and a local judge's are not on one scale:
with another judge only the direction of an effect is comparable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustft.artifacts.base import (
    CLAIM_COLUMNS,
    ArtifactContext,
    ArtifactResult,
    get_artifact,
    not_run,
    register_artifact,
)
from robustft.io import read_jsonl
from robustft.reference import paper_lookup
from robustft.stats import (
    NOT_RUN,
    mean_bootstrap_ci,
    paired_bootstrap_ci,
    paired_ttest,
    seeds_needed,
    verdict,
)

PAPER = "NEFTune"
# Our dataset keys -> the paper's dataset names. alpaca_seed (the 175 Alpaca seed tasks, the only Alpaca
# data available offline) stands in for Alpaca: a proxy, marked as such wherever it is compared.
PAPER_DATASET = {
    "alpaca": "Alpaca",
    "alpaca_seed": "Alpaca",
    "evol_instruct": "Evol-Instruct",
    "sharegpt": "ShareGPT",
    "open_platypus": "OpenPlatypus",
}
PROMPT_PAIRING = (
    "Paired over prompts (or examples) within each seed: 95% percentile bootstrap CI of the mean "
    "difference and a paired t-test. Prompt-level intervals do not include seed-to-seed variance; the "
    "paper ran one seed per cell, so neither does its protocol."
)


def _context_value(context: ArtifactContext, key: str, default: Any) -> Any:
    return context.extra.get(key, default)


def paper_dataset_name(dataset: str, context: ArtifactContext) -> str:
    return {**PAPER_DATASET, **_context_value(context, "paper_dataset", {})}.get(dataset, dataset)


def _judges(frame: pd.DataFrame) -> list[str]:
    return sorted(s.split(":", 1)[1] for s in frame["source"].dropna().unique() if s.startswith("judge:"))


def _primary_judge(frame: pd.DataFrame, context: ArtifactContext, metric: str | None = None) -> str | None:
    """The judge standing for the paper's judge of `metric` (config instruct.report.judge_for), else the
    config's first judge, else the first one in the table."""
    judges = _judges(frame)
    wanted = _context_value(context, "judge_for", {}).get(metric) or _context_value(context, "judge", None)
    if wanted is not None:
        return wanted if wanted in judges else None
    return judges[0] if judges else None


def _judge_description(frame: pd.DataFrame, judge: str) -> str:
    details = frame.loc[frame["source"] == f"judge:{judge}", "detail"].dropna()
    if details.empty:
        return judge
    info = json.loads(details.iloc[0]).get("judge") or {}
    model = info.get("model") or ""
    return f"{judge} ({info.get('kind', '?')}{', ' + str(model) if model else ''})"


RUN_KEYS = ["model", "dataset", "recipe", "method", "seed"]


def _runs(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its keys and directory, SFT finished."""
    ok = frame[(frame["source"] == "sft") & (frame["status"] == "ok")]
    return ok[[*RUN_KEYS, "run_dir"]].drop_duplicates(subset=RUN_KEYS).reset_index(drop=True)


def diverged_counts(frame: pd.DataFrame, keys: dict[str, Any], method: str, baseline: str) -> dict[str, int]:
    """Seeds of `method` and of `baseline` whose SFT diverged (instruct.csv: source "sft", status
    "diverged") in the cell `keys` (model, dataset, recipe). A diverged run has no outputs to pair, so
    these counts stand beside the Δ, and a method that lost more seeds than its baseline makes a
    reproduced claim "unstable" (stats.verdict, via base.finish_claims)."""
    diverged = frame[(frame["source"] == "sft") & (frame["status"] == "diverged")]
    for key, value in keys.items():
        diverged = diverged[diverged[key] == value]
    runs = diverged.drop_duplicates(subset=RUN_KEYS)
    return {
        "n_diverged_method": int((runs["method"] == method).sum()),
        "n_diverged_baseline": int((runs["method"] == baseline).sum()),
    }


# ------------------------------------------------------------------------------------------ per-item data


def judge_preferences(run_dir: str, judge: str) -> pd.Series:
    """Per-prompt win of the model over the reference in points: 100 win, 50 draw, 0 loss (AlpacaEval's
    preference in [1, 2], shifted); prompts the judge could not decide are left out."""
    rows = read_jsonl(Path(run_dir) / "judge" / f"{judge}.annotations.jsonl")
    wins = {
        str(r["id"]): (float(r["preference"]) - 1.0) * 100 for r in rows if r.get("preference") is not None
    }
    return pd.Series(wins, dtype=float)


def output_lengths(run_dir: str, prompts: str = "alpaca_eval") -> pd.Series:
    rows = read_jsonl(Path(run_dir) / "generations" / f"{prompts}.jsonl")
    return pd.Series({str(r["id"]): float(len(r["output"])) for r in rows}, dtype=float)


def example_losses(run_dir: str, split: str) -> pd.Series:
    # A killed-and-resumed SFT can leave a torn line: skipped (with a warning), not fatal.
    rows = read_jsonl(Path(run_dir) / "sft" / "losses.jsonl", skip_malformed=True)
    return pd.Series({str(r["index"]): float(r["loss"]) for r in rows if r["split"] == split}, dtype=float)


def overlap_scores(run_dir: str, metric: str) -> pd.Series:
    """Per-prompt `rouge_l` or `bleu` (0-1) of train-prompt generations against the training outputs."""
    path = Path(run_dir) / "overlap.json"
    rows = json.loads(path.read_text())["per_example"] if path.exists() else []
    return pd.Series({str(r["id"]): float(r[metric]) for r in rows}, dtype=float)


def chunk_values(run_dir: str, metric: str, cutoff: int) -> pd.Series:
    """Per-prompt 2-gram repetition (%) or log-diversity of the first `cutoff` whitespace tokens of each
    AlpacaEval output; outputs shorter than the cutoff are dropped, as in NEFTune Sec. 5.2."""
    from robustft.evals.text_stats import repetition_and_diversity

    values = {}
    for r in read_jsonl(Path(run_dir) / "generations" / "alpaca_eval.jsonl"):
        words = r["output"].split()
        if len(words) >= cutoff:
            values[str(r["id"])] = repetition_and_diversity(" ".join(words[:cutoff]))[metric]
    return pd.Series(values, dtype=float)


def whitespace_lengths(run_dir: str) -> pd.Series:
    rows = read_jsonl(Path(run_dir) / "generations" / "alpaca_eval.jsonl")
    return pd.Series({str(r["id"]): float(len(r["output"].split())) for r in rows}, dtype=float)


# ------------------------------------------------------------------------------------------ claims


def paired_claim(
    runs: pd.DataFrame,
    keys: dict[str, Any],
    method: str,
    baseline: str,
    values_of: Callable[[str], pd.Series],
    n_boot: int,
) -> dict[str, Any] | None:
    """Our effect of `method` over `baseline` for one cell, paired over items within matched seeds."""
    cell = runs
    for key, value in keys.items():
        cell = cell[cell[key] == value]
    ours, base = cell[cell["method"] == method], cell[cell["method"] == baseline]
    pairs_a, pairs_b = [], []
    for seed in sorted(set(ours["seed"]) & set(base["seed"])):
        a = values_of(ours.loc[ours["seed"] == seed, "run_dir"].iloc[0])
        b = values_of(base.loc[base["seed"] == seed, "run_dir"].iloc[0])
        common = a.index.intersection(b.index)
        pairs_a.append(a[common].to_numpy())
        pairs_b.append(b[common].to_numpy())
    if not pairs_a or sum(len(p) for p in pairs_a) < 2:
        return None
    a, b = np.concatenate(pairs_a), np.concatenate(pairs_b)
    low, high = paired_bootstrap_ci(a, b, n_boot=n_boot)
    diff = a - b
    return {
        "n_pairs": len(a),
        "n_seeds": len(pairs_a),  # matched seeds: the unit the seed floor counts
        "mean_method": float(a.mean()),
        "mean_baseline": float(b.mean()),
        "delta": float(diff.mean()),
        "ci_low": low,
        "ci_high": high,
        "p_value": paired_ttest(a, b),
        "p_kind": "paired t over items",
        "min_seeds_for_significance": seeds_needed(float(diff.mean()), float(diff.std(ddof=1))),
    }


def _paper(artifact: str, model: str | None, dataset: str, method: str, metric: str, split: str | None):
    if model is None:
        return None
    number = paper_lookup(PAPER, artifact, model, dataset, method, metric, split=split)
    return None if number is None else number.value


def claim_row(
    stats: dict[str, Any],
    *,
    model: str,
    paper_model: str | None,
    task: str,
    method: str,
    paper_method: str,
    baseline: str,
    paper_value: float | None,
    paper_baseline: float | None,
) -> dict[str, Any]:
    paper_delta = (
        paper_value - paper_baseline if paper_value is not None and paper_baseline is not None else None
    )
    row = {
        "model": model,
        "paper_model": paper_model,
        "task": task,
        "method": method,
        "paper_method": paper_method,
        "baseline": baseline,
        **stats,
        "paper_value": paper_value,
        "paper_baseline": paper_baseline,
        "paper_delta": paper_delta,
    }
    row["verdict"] = verdict(
        paper_delta,
        stats["ci_low"],
        stats["ci_high"],
        stats["n_pairs"],
        stats["p_value"],
        n_diverged_method=stats.get("n_diverged_method"),
        n_diverged_baseline=stats.get("n_diverged_baseline"),
    )
    return row


def _claims_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return pd.DataFrame(columns=[*CLAIM_COLUMNS, "n_seeds"])
    # n_seeds rides along: the seed floor (base.finish_claims) counts seeds, not the prompts paired here.
    return frame.reindex(columns=[*CLAIM_COLUMNS, "n_seeds"])


def _is_neftune(method: str) -> bool:
    return "neftune" in method


def _method_comparisons(
    runs: pd.DataFrame, baseline: str, recipes: Iterable[str] | None = None, gaussian: bool = False
) -> list[tuple[str, str, str, str]]:
    """(model, dataset, recipe, method) for every NEFTune method that has a matching baseline run; the
    Gaussian-noise presets only where asked (Table 6), since the paper's NEFTune rows are uniform noise."""
    cells = []
    for (model, dataset, recipe), group in runs.groupby(["model", "dataset", "recipe"], sort=False):
        if recipes is not None and recipe not in recipes:
            continue
        if baseline not in set(group["method"]):
            continue
        for method in dict.fromkeys(group["method"]):
            if method != baseline and _is_neftune(method) and (gaussian or "gauss" not in method):
                cells.append((model, dataset, recipe, method))
    return cells


def _winrate_claims(
    frame: pd.DataFrame,
    context: ArtifactContext,
    judge: str,
    artifact: str,
    metric: str,
    paper_method: Callable[[str, str], str],
    paper_baseline: Callable[[str], str] = lambda recipe: "finetune",
    split: Callable[[str], str | None] = lambda recipe: None,
    recipes: Iterable[str] | None = None,
    gaussian: bool = False,
    dataset_alias: dict[str, str] | None = None,
) -> pd.DataFrame:
    runs, baseline = _runs(frame), _context_value(context, "baseline", "finetune")
    rows = []
    for model, dataset, recipe, method in _method_comparisons(runs, baseline, recipes, gaussian):
        keys = {"model": model, "dataset": dataset, "recipe": recipe}
        stats = paired_claim(
            runs, keys, method, baseline, lambda run_dir: judge_preferences(run_dir, judge), context.n_boot
        )
        if stats is None:
            continue
        stats |= diverged_counts(frame, keys, method, baseline)
        paper_model, dataset_name = context.paper_model.get(model), paper_dataset_name(dataset, context)
        lookup_name = (dataset_alias or {}).get(dataset_name, dataset_name)  # e.g. Table 3: Evol-Instruct-70k
        ours_paper_method = paper_method(method, recipe)
        rows.append(
            claim_row(
                stats,
                model=model,
                paper_model=paper_model,
                task=f"{dataset_name} [{recipe}]" if recipe != "default" else dataset_name,
                method=method,
                paper_method=ours_paper_method,
                baseline=baseline,
                paper_value=_paper(
                    artifact, paper_model, lookup_name, ours_paper_method, metric, split(recipe)
                ),
                paper_baseline=_paper(
                    artifact, paper_model, lookup_name, paper_baseline(recipe), metric, split(recipe)
                ),
            )
        )
    return _claims_frame(rows)


def _judge_notes(frame: pd.DataFrame, judge: str, paper_judge: str) -> list[str]:
    description = _judge_description(frame, judge)
    notes = [
        f"Judge: {description}. The paper's numbers are {paper_judge} win rates against text-davinci-003; "
        "with another judge only the direction of an effect is comparable, not its size.",
        PROMPT_PAIRING,
    ]
    return notes


def _winrate_figure(claims: pd.DataFrame, title: str, judge: str):
    """Win rates, ours (with the method's CI on Δ) beside the paper's, one group per cell."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 2.8), layout="constrained")
    ax = figure.subplots()
    x = np.arange(len(claims))
    ax.bar(x - 0.3, claims["mean_baseline"], 0.2, color="C0", label=f"ours: baseline ({judge})")
    ax.bar(x - 0.1, claims["mean_method"], 0.2, color="C1", label=f"ours: method ({judge})")
    ax.bar(
        x + 0.1, claims["paper_baseline"].astype(float), 0.2, color="C0", alpha=0.35, label="paper: baseline"
    )
    ax.bar(x + 0.3, claims["paper_value"].astype(float), 0.2, color="C1", alpha=0.35, label="paper: method")
    labels = [f"{r.task}\n{r.method}" for r in claims.itertuples(index=False)]
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("win rate vs reference (%)")
    ax.legend(fontsize=6, frameon=False, ncols=2)
    figure.suptitle(title, fontsize=10)
    return figure


def _winrate_artifact(
    key: str,
    frame: pd.DataFrame,
    context: ArtifactContext,
    *,
    artifact: str,
    metric: str,
    paper_judge: str,
    paper_method: Callable[[str, str], str],
    paper_baseline: Callable[[str], str] = lambda recipe: "finetune",
    split: Callable[[str], str | None] = lambda recipe: None,
    recipes: Iterable[str] | None = None,
    choices: list[str] | None = None,
    gaussian: bool = False,
    dataset_alias: dict[str, str] | None = None,
) -> ArtifactResult:
    spec = get_artifact(key)
    judge = _primary_judge(frame, context, metric)
    if judge is None:
        return not_run(spec, "no judged instruction-tuning runs (configure instruct.judges)")
    claims = _winrate_claims(
        frame,
        context,
        judge,
        artifact,
        metric,
        paper_method,
        paper_baseline,
        split,
        recipes,
        gaussian,
        dataset_alias,
    )
    if claims.empty:
        return not_run(spec, "no NEFTune run with a matching baseline run in this config's grid")
    result = ArtifactResult(
        spec.key,
        spec.paper,
        spec.artifact,
        spec.title,
        claims=claims,
        notes=_judge_notes(frame, judge, paper_judge),
    )
    result.figure = _winrate_figure(claims, spec.title, judge)
    result.caption = (
        "AlpacaEval win rate against the text-davinci-003 reference: ours by "
        f"{_judge_description(frame, judge)} (solid), the paper's by {paper_judge} (pale)."
    )
    result.choices = list(choices or [])
    return result


def _alpha_of(method: str) -> str:
    """neftune_a10 -> '10'; a method without an explicit α uses the component default, 5."""
    for part in method.split("_"):
        if part.startswith("a") and part[1:].replace(".", "", 1).isdigit():
            return part[1:].rstrip("0").rstrip(".") if "." in part else part[1:]
    return "5"


@register_artifact(
    "neftune/table1", PAPER, "Table 1", "AlpacaEval win rate, ± NEFTune, per training set", table="instruct"
)
def table1(frame: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    return _winrate_artifact(
        "neftune/table1",
        frame,
        context,
        artifact="Table 1",
        metric="win_rate_gpt4",
        paper_judge="GPT-4 (alpaca_eval_gpt4)",
        paper_method=lambda method, recipe: "neftune",
        recipes=["default"],
        choices=[
            "Every NEFTune method preset of the config is compared with the paper's NEFTune row, which used "
            "the best α per dataset (Table 7: Alpaca 5, Evol-Instruct 5, ShareGPT 10, OpenPlatypus 15)."
        ],
    )


@register_artifact(
    "neftune/figure2",
    PAPER,
    "Figure 2",
    "AlpacaEval (ChatGPT judge): OPT-6.7B, LLaMA-1-7B, LLaMA-2-7B",
    table="instruct",
)
def figure2(frame: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    return _winrate_artifact(
        "neftune/figure2",
        frame,
        context,
        artifact="Figure 2",
        metric="win_rate_chatgpt",
        paper_judge="ChatGPT (chatgpt_fn)",
        paper_method=lambda method, recipe: "neftune",
        recipes=["default"],
        choices=["The paper's NEFTune bars use the best α per model and dataset (Table 8)."],
    )


@register_artifact(
    "neftune/table2",
    PAPER,
    "Table 2",
    "Larger and chat models on Evol-Instruct (GPT-4 judge)",
    table="instruct",
)
def table2(frame: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    return _winrate_artifact(
        "neftune/table2",
        frame,
        context,
        artifact="Table 2",
        metric="win_rate_gpt4",
        paper_judge="GPT-4 (alpaca_eval_gpt4)",
        paper_method=lambda method, recipe: "neftune",
        recipes=["default"],
        choices=[
            "LLaMA-2-70B (Table 2's last column) needs its own recipe (Llama-2 paper settings, 2,048 tokens)."
        ],
    )


@register_artifact(
    "neftune/table6",
    PAPER,
    "Table 6",
    "Noise type and level (uniform α 5/10/15, Gaussian α 5)",
    table="instruct",
)
def table6(frame: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    def paper_method(method: str, recipe: str) -> str:
        kind = "gaussian" if "gauss" in method else "uniform"
        return f"neftune({kind},alpha={_alpha_of(method)})"

    return _winrate_artifact(
        "neftune/table6",
        frame,
        context,
        artifact="Table 6",
        metric="win_rate_chatgpt",
        paper_judge="ChatGPT (chatgpt_fn)",
        paper_method=paper_method,
        recipes=["default"],
        gaussian=True,
        choices=[
            "Method presets name their noise: neftune_a10 is uniform α = 10, neftune_gauss_a5 Gaussian α = 5."
        ],
    )


@register_artifact(
    "neftune/table14", PAPER, "Table 14", "Win rate against the number of epochs", table="instruct"
)
def table14(frame: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    epochs = _context_value(context, "recipe_epochs", {})
    # The default recipe is the paper's 3-epoch point; epochs<N> recipes the others.
    recipes = [recipe for recipe in epochs if recipe.startswith("epochs") or recipe == "default"]

    def split(recipe: str) -> str:
        return f"AlpacaEval|epochs={int(epochs.get(recipe, 3))}"

    return _winrate_artifact(
        "neftune/table14",
        frame,
        context,
        artifact="Table 14",
        metric="win_rate_chatgpt",
        paper_judge="ChatGPT (chatgpt_fn)",
        paper_method=lambda method, recipe: "neftune",
        split=split,
        recipes=recipes,
        choices=[
            "Recipes named epochs<N> set the number of epochs; every other setting is the default recipe's."
        ],
    )


@register_artifact("neftune/table3", PAPER, "Table 3", "QLoRA ± NEFTune (α 5/10/15)", table="instruct")
def table3(frame: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    return _winrate_artifact(
        "neftune/table3",
        frame,
        context,
        artifact="Table 3",
        metric="win_rate_chatgpt",
        paper_judge="ChatGPT (chatgpt_fn)",
        paper_method=lambda method, recipe: f"neftune (qlora, alpha={_alpha_of(method)})",
        paper_baseline=lambda recipe: "finetune (qlora)",
        recipes=["qlora"],
        dataset_alias={"Evol-Instruct": "Evol-Instruct-70k"},
        choices=[
            "The recipe named qlora trains 4-bit QLoRA adapters (the QLoRA reference defaults, 1 epoch)."
        ],
    )


# ------------------------------------------------------------------------------------------ leaderboard

LEADERBOARD_PAPER_NAME = {
    "arc_challenge": "ARC",
    "hellaswag": "HellaSwag",
    "mmlu": "MMLU",
    "truthfulqa_mc2": "TruthfulQA",
}


@register_artifact(
    "neftune/figure3", PAPER, "Figure 3", "Open LLM Leaderboard tasks, ± NEFTune", table="instruct"
)
def figure3(frame: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("neftune/figure3")
    baseline = _context_value(context, "baseline", "finetune")
    finished = set(_runs(frame)["run_dir"])  # SFT ok; the paper's default recipe only
    scores = frame[
        frame["source"].fillna("").str.startswith("leaderboard:")
        & frame["run_dir"].isin(finished)
        & (frame["recipe"] == "default")
    ].copy()
    if scores.empty:
        return not_run(spec, "no leaderboard results (configure instruct.leaderboard.tasks)")
    scores["task"] = scores["source"].str.split(":", n=1).str[1]
    rows, not_run_tasks, limited = [], set(), set()
    keys = ["model", "dataset", "recipe", "task"]
    for (model, dataset, recipe, task), group in scores.groupby(keys, sort=False):
        done = group[group["status"] == "ok"]
        if done.empty:
            not_run_tasks.add(f"{task}: {json.loads(group['detail'].iloc[0]).get('reason') or 'not run'}")
            continue
        if any(json.loads(d).get("limit") for d in done["detail"]):
            limited.add(task)
        base = done[done["method"] == baseline]
        for method in dict.fromkeys(done["method"]):
            if method == baseline or not _is_neftune(method) or base.empty:
                continue
            stats = _leaderboard_paired_stats(done[done["method"] == method], base)
            paper_model, dataset_name = context.paper_model.get(model), paper_dataset_name(dataset, context)
            task_name = LEADERBOARD_PAPER_NAME.get(task, task)
            stats |= diverged_counts(
                frame, {"model": model, "dataset": dataset, "recipe": recipe}, method, baseline
            )
            rows.append(
                claim_row(
                    stats,
                    model=model,
                    paper_model=paper_model,
                    task=f"{task_name} ({dataset_name})",
                    method=method,
                    paper_method="neftune",
                    baseline=baseline,
                    paper_value=_figure3_paper(paper_model, dataset_name, task_name, "neftune"),
                    paper_baseline=_figure3_paper(paper_model, dataset_name, task_name, "finetune"),
                )
            )
    claims = _claims_frame(rows)
    if claims.empty:
        reason = "; ".join(sorted(not_run_tasks)) or "no NEFTune run with a matching baseline run"
        return not_run(spec, reason)
    result = ArtifactResult(spec.key, spec.paper, spec.artifact, spec.title, claims=claims)
    result.notes = [
        "Scores in percent: ARC and HellaSwag acc_norm, MMLU acc, TruthfulQA mc2 (Open LLM Leaderboard v1 "
        "settings: 25/10/5/0 shots; the paper does not state them).",
        "The CI of Δ combines the two runs' lm-eval standard errors as if independent; the runs answer the "
        "same documents, so a paired interval would be narrower.",
    ]
    if not_run_tasks:
        result.notes.append("Not run: " + "; ".join(sorted(not_run_tasks)) + ".")
    if limited:
        result.notes.append(
            f"Scored on a limited number of documents ({', '.join(sorted(limited))}): a smoke run, not "
            "comparable with the paper's full-set scores."
        )
    result.figure = _leaderboard_figure(claims, spec.title)
    result.caption = "Leaderboard scores, ours (solid) beside the paper's (pale), per task and training set."
    return result


def _leaderboard_paired_stats(ours: pd.DataFrame, base: pd.DataFrame) -> dict[str, Any]:
    """Δ of one task's leaderboard score (method - baseline) over the seeds both arms have, with a
    z-interval and p from lm-eval's standard errors."""
    from scipy import stats as scipy_stats

    seeds = sorted(set(ours["seed"]) & set(base["seed"]))
    a = ours.set_index("seed").loc[seeds]
    b = base.set_index("seed").loc[seeds]
    delta = float((a["value"] - b["value"]).mean())
    # lm-eval gives a standard error per score; the two runs are scored on the same documents but
    # their per-document answers are not logged, so the CI treats them as independent (wider).
    se = math.sqrt(
        float(
            ((a["ci_high"] - a["value"]) / 1.96).pow(2).mean()
            + ((b["ci_high"] - b["value"]) / 1.96).pow(2).mean()
        )
    )
    p = float(2 * scipy_stats.norm.sf(abs(delta) / se)) if se > 0 else math.nan
    return {
        "n_pairs": int(a["n"].iloc[0]) if pd.notna(a["n"].iloc[0]) else len(seeds),
        "n_seeds": len(seeds),
        "mean_method": float(a["value"].mean()),
        "mean_baseline": float(b["value"].mean()),
        "delta": delta,
        "ci_low": delta - 1.96 * se,
        "ci_high": delta + 1.96 * se,
        "p_value": p,
        "p_kind": "z over lm-eval standard errors",
        "min_seeds_for_significance": None,
    }


def _figure3_paper(paper_model: str | None, dataset_name: str, task_name: str, method: str) -> float | None:
    """Figure 3 rows carry the benchmark in `dataset` and the training set in the notes."""
    if paper_model is None:
        return None
    from robustft.reference import load_paper_results

    rows = load_paper_results()
    rows = rows[
        (rows["paper"] == PAPER)
        & (rows["artifact"] == "Figure 3")
        & (rows["model"] == paper_model)
        & (rows["dataset"] == task_name)
        & (rows["method"] == method)
        & rows["notes"].str.contains(f"instruction-tuned on {dataset_name}.", regex=False)
    ]
    return float(rows["value"].iloc[0]) if len(rows) == 1 else None


def _leaderboard_figure(claims: pd.DataFrame, title: str):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 2.8), layout="constrained")
    ax = figure.subplots()
    ticks = [f"{r.task}\n{r.method}" for r in claims.itertuples(index=False)]
    _bar_panel(ax, claims, "score (%)", ("finetune", "NEFTune"), ticks, fontsize=7)
    ax.legend(fontsize=6, frameon=False, ncols=2)
    figure.suptitle(title, fontsize=10)
    return figure


# ------------------------------------------------------------------------------------------ overfitting


def paper_histogram_mean(artifact: str, method: str) -> float | None:
    """Mean of a paper histogram (Figures 4, 5) from its transcribed bin counts, at the bin centres."""
    from robustft.reference import load_paper_results

    rows = load_paper_results()
    rows = rows[(rows["paper"] == PAPER) & (rows["artifact"] == artifact) & (rows["method"] == method)]
    bins = rows["split"].str.extract(r"_bin=\[(-?[\d.]+),(-?[\d.]+)\)").astype(float)
    if rows.empty or bins.isna().any().any():
        return None
    centres = (bins[0] + bins[1]) / 2
    return float((centres * rows["value"]).sum() / rows["value"].sum())


def _item_artifact(
    key: str,
    frame: pd.DataFrame,
    context: ArtifactContext,
    panels: list[tuple[str, str, Callable[[str], pd.Series], float]],
    xlabel: str,
) -> ArtifactResult:
    """Histograms of a per-item quantity ± NEFTune, and claims on its mean, paired over items.

    `panels`: (our label, the paper's artifact name, per-run item values, scale to the paper's units).
    """
    spec = get_artifact(key)
    runs, baseline = _runs(frame), _context_value(context, "baseline", "finetune")
    cells = _method_comparisons(runs, baseline, recipes=["default"])
    if not cells:
        return not_run(spec, "no NEFTune run with a matching baseline run in this config's grid")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3.6 * len(panels), 2.6), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    rows = []
    for ax, (label, paper_artifact, values_of, scale) in zip(axes, panels, strict=True):
        for model, dataset, recipe, method in cells:
            keys = {"model": model, "dataset": dataset, "recipe": recipe}
            scaled = lambda d, values_of=values_of, scale=scale: values_of(d) * scale  # noqa: E731
            stats = paired_claim(runs, keys, method, baseline, scaled, context.n_boot)
            if stats is None:
                continue
            stats |= diverged_counts(frame, keys, method, baseline)
            paper_model = context.paper_model.get(model)
            # The paper's histograms are of LLaMA-2-7B trained on Alpaca: no other cell has a paper value.
            same_cell = paper_model == "llama-2-7b" and paper_dataset_name(dataset, context) == "Alpaca"
            paper_b = paper_histogram_mean(paper_artifact, "finetune") if same_cell else None
            paper_m = paper_histogram_mean(paper_artifact, "neftune") if same_cell else None
            rows.append(
                claim_row(
                    stats,
                    model=model,
                    paper_model=paper_model,
                    task=f"{label} ({paper_dataset_name(dataset, context)})",
                    method=method,
                    paper_method="neftune",
                    baseline=baseline,
                    paper_value=paper_m,
                    paper_baseline=paper_b,
                )
            )
            for arm, colour in ((baseline, "C0"), (method, "C1")):
                run = runs[
                    (runs["model"] == model)
                    & (runs["dataset"] == dataset)
                    & (runs["recipe"] == recipe)
                    & (runs["method"] == arm)
                ]
                values = pd.concat([values_of(d) * scale for d in run["run_dir"]])
                ax.hist(values, bins=30, alpha=0.5, color=colour, label=f"{model}: {arm}")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(xlabel if "loss" in label else label)
        ax.set_ylabel("count")
        ax.legend(fontsize=6, frameon=False)
    figure.suptitle(spec.title, fontsize=10)
    claims = _claims_frame(rows)
    result = ArtifactResult(spec.key, spec.paper, spec.artifact, spec.title, claims=claims, figure=figure)
    result.notes = [
        PROMPT_PAIRING,
        "The paper's values are the means of its histograms, computed from the transcribed bin counts at the "
        "bin centres (paper_results.csv): LLaMA-2-7B trained on the full Alpaca set.",
    ]
    return result


@register_artifact(
    "neftune/figure4",
    PAPER,
    "Figure 4",
    "Per-example loss without noise: training and held-out data",
    table="instruct",
)
def figure4(frame: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    result = _item_artifact(
        "neftune/figure4",
        frame,
        context,
        [
            ("train loss", "Figure 4 (left)", lambda d: example_losses(d, "train"), 1.0),
            ("held-out loss", "Figure 4 (right)", lambda d: example_losses(d, "heldout"), 1.0),
        ],
        "mean response-token loss (no noise)",
    )
    if result.status == "regenerated":
        result.caption = (
            "Histograms of per-example loss of the final models, computed with the noise off. The paper's "
            "claim: NEFTune has a higher training loss and a lower held-out loss (less overfitting)."
        )
        result.choices = [
            "Per-example loss: the mean cross-entropy over one example's response tokens (the SFT loss).",
            "Held-out data: the paper uses Evol-Instruct as 'test'; the config's held-out set is named in "
            "each run's sft/run.json.",
        ]
    return result


@register_artifact(
    "neftune/figure5",
    PAPER,
    "Figure 5",
    "ROUGE-L and BLEU of generations on training prompts",
    table="instruct",
)
def figure5(frame: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    result = _item_artifact(
        "neftune/figure5",
        frame,
        context,
        [
            ("ROUGE-L", "Figure 5 (left)", lambda d: overlap_scores(d, "rouge_l"), 1.0),
            ("BLEU", "Figure 5 (right)", lambda d: overlap_scores(d, "bleu"), 1.0),
        ],
        "score",
    )
    if result.status == "regenerated":
        result.caption = (
            "Overlap of greedy generations on training prompts with the training responses. The paper's "
            "claim: NEFTune overlaps less (it memorises the training responses less)."
        )
        result.choices = [
            "Scores on the 0-1 scale: ROUGE-L F-measure (rouge-score, stemmed) and sentence BLEU-4 "
            "(sacrebleu) divided by 100."
        ]
    return result


# ------------------------------------------------------------------------------------------ loss curves


@register_artifact(
    "neftune/loss_curves",
    PAPER,
    "Section 5.1",
    "Train and held-out loss over steps, ± NEFTune",
    table="instruct",
)
def loss_curves(frame: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("neftune/loss_curves")
    runs = _runs(frame)
    runs = runs[runs["recipe"] == "default"]
    if runs.empty:
        return not_run(spec, "no finished instruction-tuning runs")
    from matplotlib.figure import Figure

    series = [
        ("train_loss", "training loss as trained (noise on)"),
        ("eval_train_loss", "training data, noise off"),
        ("eval_heldout_loss", "held-out data, noise off"),
    ]
    figure = Figure(figsize=(10, 2.8), layout="constrained")
    axes = figure.subplots(1, len(series))
    methods = list(dict.fromkeys(runs["method"]))
    for ax, (column, title) in zip(axes, series, strict=True):
        for k, method in enumerate(methods):
            for i, r in enumerate(runs[runs["method"] == method].itertuples(index=False)):
                history = read_jsonl(Path(r.run_dir) / "sft" / "history.jsonl", skip_malformed=True)
                points = [(h["step"], h[column]) for h in history if h.get(column) is not None]
                if points:
                    steps, values = zip(*points, strict=True)
                    label = f"{method} ({r.model}, {r.dataset})" if i == 0 else None
                    ax.plot(steps, values, "-o", ms=2, color=f"C{k}", label=label)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss")
    axes[0].legend(fontsize=6, frameon=False)
    figure.suptitle(spec.title, fontsize=10)
    result = ArtifactResult(spec.key, spec.paper, spec.artifact, spec.title, figure=figure)
    result.caption = (
        "Loss over training: as the trainer logged it (with NEFTune's noise in the NEFTune arms), and "
        "measured with the noise off on a training subset and on the held-out set. The paper (Sec. 5.1): the "
        "losses look alike with noise on; only the noise-free training loss shows NEFTune's higher loss."
    )
    result.claims = pd.DataFrame(columns=CLAIM_COLUMNS)
    result.notes = [
        "The paper prints no loss-curve numbers; Figure 4's histograms (neftune/figure4) carry the claim."
    ]
    return result


# ------------------------------------------------------------------------------------------ Table 4


def _censoring_notes(runs: pd.DataFrame) -> list[str]:
    """Runs whose outputs often stopped at max_new_tokens: their lengths are cut, not measured."""
    notes = []
    for r in runs.itertuples(index=False):
        path = Path(r.run_dir) / "generations" / "alpaca_eval.summary.json"
        summary = json.loads(path.read_text()) if path.exists() else {}
        hit, n = summary.get("n_hit_max_new_tokens") or 0, summary.get("n") or 0
        if n and hit / n > 0.05:
            notes.append(
                f"{r.model} {r.dataset} {r.recipe} {r.method} seed {r.seed}: {hit} of {n} outputs stopped at "
                f"max_new_tokens ({summary['settings']['max_new_tokens']}), so its lengths are censored; "
                "the length claims are not comparable with the paper's (1,024 new tokens)."
            )
    return notes


TABLE4_METRICS = [
    # (our label, paper metric, per-run per-prompt values given the chunk cutoff)
    ("character length", "char_length", lambda d, cutoff: output_lengths(d)),
    ("whitespace length", "whitespace_tokens", lambda d, cutoff: whitespace_lengths(d)),
    (
        "2-gram repetition %",
        "2gram_repetition_pct",
        lambda d, cutoff: chunk_values(d, "repetition_2", cutoff),
    ),
    ("log-diversity", "log_diversity", lambda d, cutoff: chunk_values(d, "log_diversity", cutoff)),
]


@register_artifact(
    "neftune/table4",
    PAPER,
    "Table 4",
    "Length and diversity of AlpacaEval outputs, ± NEFTune",
    table="instruct",
)
def table4(frame: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    from robustft.evals.text_stats import CHUNK_CUTOFFS

    spec = get_artifact("neftune/table4")
    runs, baseline = _runs(frame), _context_value(context, "baseline", "finetune")
    cells = _method_comparisons(runs, baseline, recipes=["default"])
    if not cells:
        return not_run(spec, "no NEFTune run with a matching baseline run in this config's grid")
    rows = []
    for model, dataset, recipe, method in cells:
        cutoff = CHUNK_CUTOFFS.get(dataset, 50)
        paper_model, dataset_name = context.paper_model.get(model), paper_dataset_name(dataset, context)
        for label, metric, values_of in TABLE4_METRICS:
            keys = {"model": model, "dataset": dataset, "recipe": recipe}
            of_run = lambda d, values_of=values_of, cutoff=cutoff: values_of(d, cutoff)  # noqa: E731
            stats = paired_claim(runs, keys, method, baseline, of_run, context.n_boot)
            if stats is None:
                continue
            stats |= diverged_counts(frame, keys, method, baseline)
            split = "AlpacaEval outputs"
            rows.append(
                claim_row(
                    stats,
                    model=model,
                    paper_model=paper_model,
                    task=f"{label} ({dataset_name})",
                    method=method,
                    paper_method="neftune",
                    baseline=baseline,
                    paper_value=_paper("Table 4", paper_model, dataset_name, "neftune", metric, split),
                    paper_baseline=_paper("Table 4", paper_model, dataset_name, "finetune", metric, split),
                )
            )
    claims = _claims_frame(rows)
    if claims.empty:
        return not_run(spec, "the runs have no AlpacaEval generations")
    chunked = claims[claims["task"].str.startswith(("2-gram", "log-diversity"))]
    no_chunks = (
        " Here no prompt's outputs reached N tokens in both arms: repetition and log-diversity have no value."
        if chunked.empty
        else ""
    )
    result = ArtifactResult(spec.key, spec.paper, spec.artifact, spec.title, claims=claims)
    result.notes = [
        *_censoring_notes(runs),
        PROMPT_PAIRING,
        "Repetition and log-diversity are computed per output on its first N whitespace tokens (N = 50 "
        "Alpaca, 100 Evol-Instruct, 150 ShareGPT and OpenPlatypus; shorter outputs dropped) and paired over "
        "prompts whose outputs reach N in both arms; each arm's mean in the table is over those prompts."
        + no_chunks,
    ]
    result.choices = [
        "Repetition and diversity follow the released code of Kirchenbauer et al. (the convention NEFTune's "
        "numbers match); robustft.evals.text_stats documents both conventions."
    ]
    result.figure = _table4_figure(claims, spec.title)
    result.caption = "AlpacaEval output length and diversity, ours (solid) beside the paper's (pale)."
    return result


def _table4_figure(claims: pd.DataFrame, title: str):
    """One panel per Table 4 metric: our two arms (solid) beside the paper's (pale), per training set."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 2.6), layout="constrained")
    axes = figure.subplots(1, len(TABLE4_METRICS))
    for ax, (label, _, _) in zip(axes, TABLE4_METRICS, strict=True):
        part = claims[claims["task"].str.startswith(label)]
        x = np.arange(len(part))
        ax.bar(x - 0.3, part["mean_baseline"], 0.2, color="C0", label="ours: finetune")
        ax.bar(x - 0.1, part["mean_method"], 0.2, color="C1", label="ours: NEFTune")
        ax.bar(
            x + 0.1,
            part["paper_baseline"].astype(float),
            0.2,
            color="C0",
            alpha=0.35,
            label="paper: finetune",
        )
        ax.bar(
            x + 0.3, part["paper_value"].astype(float), 0.2, color="C1", alpha=0.35, label="paper: NEFTune"
        )
        ax.set_xticks(x, [t.split("(")[-1].rstrip(")") for t in part["task"]], fontsize=7)
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=6, frameon=False)
    figure.suptitle(title, fontsize=10)
    return figure


# ------------------------------------------------------------------------------------------ variants

# Tables 5 and 10 compare generations of the same SFT runs made differently: the config's generation
# variants (instruct.generation.variants; robustft.evals.generation), whose folders, <run>/variants/
# <name>-<key>/, are laid out as a run's own generations/ and judge/, so the per-prompt readers above read
# them as they read a run. instruct.csv names each run's variant folders (source "variant:<name>").
TABLE5_VARIANTS = {
    # our variant name -> the paper's row (its method in paper_results.csv)
    "long": "finetune + prompt 'long'",
    "comprehensive": "finetune + prompt 'comprehensive'",
    "long_comprehensive": "finetune + prompt 'long + comprehensive'",
    "min_new_tokens": "finetune + min_new_tokens=250 (EOS blocked)",
}
PLAIN = ""  # Table 10's greedy row: the run's plain generation, no variant
TABLE10_DECODINGS = {
    # our variant name -> the paper's decoding (its split in paper_results.csv: AlpacaEval|decoding=...)
    PLAIN: "greedy (base)",
    "hp0": "HP 0 (top_p=0.1, temp=0.1)",
    "hp1": "HP 1 (top_p=0.35, temp=0.5)",
    "wizardlm": "WizardLM (top_p=0.6, temp=0.9)",
    "llama2": "LLaMA-2 (top_p=0.9, temp=0.6)",
}
VARIANTS_HOW = (
    "Define the variants in instruct.generation.variants and name them in a grid's `variants` "
    "(config/neftune.yaml's table5 and table10 grids)."
)


def variant_arms(frame: pd.DataFrame, runs: pd.DataFrame, variant: str) -> pd.DataFrame:
    """`runs` (one row per run) as the arms of `variant`: each run that has it, with its variant folder as
    run_dir and method "<method> + <variant>", so paired_claim pairs a variant like any run."""
    rows = frame[(frame["source"] == f"variant:{variant}") & (frame["status"] == "ok")]
    folders = {r.run_dir: json.loads(r.detail)["dir"] for r in rows.itertuples(index=False)}
    arms = runs[runs["run_dir"].isin(list(folders))].copy()
    arms["run_dir"] = arms["run_dir"].map(folders)
    arms["method"] = arms["method"] + f" + {variant}"
    return arms


def variant_settings(frame: pd.DataFrame, variant: str) -> dict[str, Any]:
    """The settings a variant's generations recorded (their summary's variant fields)."""
    from robustft.evals.generation import VARIANT_FIELDS

    details = frame.loc[(frame["source"] == f"variant:{variant}") & (frame["status"] == "ok"), "detail"]
    recorded = json.loads(details.dropna().iloc[0]).get("settings", {}) if details.notna().any() else {}
    return {key: recorded[key] for key in (*VARIANT_FIELDS, "sampling_seed") if key in recorded}


def _paper_cell(artifact: str, paper_model: str | None, dataset_name: str) -> tuple[str, str, bool]:
    """The paper's (model, dataset) a cell of ours is compared with, and whether it is that cell. Tables 5
    and 10 were each measured on one cell only, which stands for any other cell of ours (said in the
    notes: a proxy, comparable by direction)."""
    from robustft.reference import load_paper_results

    rows = load_paper_results()
    cells = rows.loc[(rows["paper"] == PAPER) & (rows["artifact"] == artifact), ["model", "dataset"]]
    cells = cells.drop_duplicates().reset_index(drop=True)
    same = (cells["model"] == paper_model) & (cells["dataset"] == dataset_name)
    if same.any():
        return str(paper_model), dataset_name, True
    return str(cells["model"].iloc[0]), str(cells["dataset"].iloc[0]), False


def _arm_claim(
    arms: pd.DataFrame,
    frame: pd.DataFrame,
    context: ArtifactContext,
    keys: dict[str, Any],
    arm_pair: tuple[str, str],
    paper_pair: tuple[str, str],
    diverged_pair: tuple[str, str],
    values_of: Callable[[str], pd.Series],
    paper: tuple[str, str, str, str, str | None],
    task: str,
) -> dict[str, Any] | None:
    """One claim of arm `arm_pair[0]` over arm `arm_pair[1]` (runs or variants) in the cell `keys`, paired
    over prompts within seeds; the paper's rows `paper_pair` of `paper` (artifact, model, dataset,
    metric, split); the diverged SFT runs counted are those of the methods `diverged_pair`."""
    artifact, paper_model, paper_dataset, metric, split = paper
    return _claim_of_arms(
        arms,
        context,
        keys,
        arm_pair,
        values_of,
        lambda: diverged_counts(frame, keys, *diverged_pair),
        (artifact, paper_model, paper_dataset, metric),
        ((paper_pair[0], split), (paper_pair[1], split)),
        task,
    )


def _claim_of_arms(
    arms: pd.DataFrame,
    context: ArtifactContext,
    keys: dict[str, Any],
    pair: tuple[str, str],
    values_of: Callable[[str], pd.Series],
    diverged: Callable[[], dict[str, int]],
    paper: tuple[str, str | None, str, str],
    paper_rows: tuple[tuple[str | None, str | None], tuple[str | None, str | None]],
    task: str,
) -> dict[str, Any] | None:
    """Arm pair[0] against arm pair[1] in the cell `keys`, paired over prompts within seeds, with the
    diverged-run counts `diverged()` gives and the paper's (method, split) rows `paper_rows` of `paper`
    (artifact, model, dataset, metric); None when the arms share no prompts to pair."""
    stats = paired_claim(arms, keys, *pair, values_of, context.n_boot)
    if stats is None:
        return None
    stats |= diverged()
    artifact, paper_model, paper_dataset, metric = paper
    (paper_method, method_split), (paper_baseline, baseline_split) = paper_rows

    def number(method: str | None, split: str | None) -> float | None:
        return None if method is None else _paper(artifact, paper_model, paper_dataset, method, metric, split)

    return claim_row(
        stats,
        model=keys["model"],
        paper_model=paper_model,
        task=task,
        method=pair[0],
        paper_method=paper_method or "",
        baseline=pair[1],
        paper_value=number(paper_method, method_split),
        paper_baseline=number(paper_baseline, baseline_split),
    )


def _cell_label(context: ArtifactContext, dataset: str, recipe: str) -> str:
    name = paper_dataset_name(dataset, context)
    return f"{name} [{recipe}]" if recipe != "default" else name


def _proxy_note(artifact: str, cells: set[tuple[str, str, str, str]]) -> list[str]:
    """A note per cell of ours compared with the paper's only cell of `artifact`, which is another."""
    return [
        f"{artifact} was measured on {paper_model} trained on {paper_dataset} only: our {model} on "
        f"{dataset} is compared with it as a stand-in, so only the direction of each effect is comparable."
        for model, dataset, paper_model, paper_dataset in sorted(cells)
    ]


def _variant_choices(frame: pd.DataFrame, variants: Iterable[str]) -> list[str]:
    """What each variant did, as its generations recorded it."""
    lines = []
    for variant in variants:
        settings = variant_settings(frame, variant)
        shown = ", ".join(f"{key} = {value!r}" for key, value in settings.items())
        lines.append(f"Variant {variant}: {shown or 'settings not recorded'}.")
    return lines


TABLE5_METRICS = (
    # (our label, the paper's metric, per-prompt values of a run or variant folder given the judge)
    ("win rate", "win_rate_gpt4", lambda folder, judge: judge_preferences(folder, judge)),
    ("character length", "avg_char_length", lambda folder, judge: output_lengths(folder)),
)


@register_artifact(
    "neftune/table5",
    PAPER,
    "Table 5",
    "Does forcing longer outputs recover NEFTune's gain? Length prompts and min_new_tokens",
    table="instruct",
)
def table5(frame: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("neftune/table5")
    judge = _primary_judge(frame, context, "win_rate_gpt4")
    if judge is None:
        return not_run(spec, "no judged instruction-tuning runs (configure instruct.judges)")
    runs, baseline = _runs(frame), _context_value(context, "baseline", "finetune")
    variants = {v: variant_arms(frame, runs[runs["method"] == baseline], v) for v in TABLE5_VARIANTS}
    variants = {v: arms for v, arms in variants.items() if not arms.empty}
    if not variants:
        return not_run(
            spec,
            f"no {baseline} run has a Table 5 generation variant ({', '.join(TABLE5_VARIANTS)}). "
            + VARIANTS_HOW,
        )
    arms = pd.concat([runs, *variants.values()], ignore_index=True)
    claims, proxies = [], set()
    for (model, dataset, recipe), cell in pd.concat(variants.values()).groupby(
        ["model", "dataset", "recipe"]
    ):
        keys = {"model": model, "dataset": dataset, "recipe": recipe}
        paper_model, paper_dataset, same = _paper_cell(
            "Table 5", context.paper_model.get(model), paper_dataset_name(dataset, context)
        )
        if not same:
            proxies.add((model, dataset, paper_model, paper_dataset))
        comparisons = _table5_comparisons(runs, keys, baseline, list(dict.fromkeys(cell["method"])))
        for arm_pair, paper_pair, diverged_pair, labels in comparisons:
            for label, metric, values_of in TABLE5_METRICS:
                if label not in labels:
                    continue
                of_folder = lambda folder, values_of=values_of: values_of(folder, judge)  # noqa: E731
                claim = _arm_claim(
                    arms,
                    frame,
                    context,
                    keys,
                    arm_pair,
                    paper_pair,
                    diverged_pair,
                    of_folder,
                    ("Table 5", paper_model, paper_dataset, metric, None),
                    f"{label} ({_cell_label(context, dataset, recipe)})",
                )
                claims += [claim] if claim is not None else []
    result = ArtifactResult(spec.key, spec.paper, spec.artifact, spec.title, claims=_claims_frame(claims))
    if result.claims.empty:
        return not_run(
            spec, "the Table 5 variants have no generations (or judgements) to pair with a plain run"
        )
    result.notes = [
        *_judge_notes(frame, judge, "GPT-4 (alpaca_eval_gpt4)"),
        *_proxy_note("Table 5", proxies),
        *_censoring_notes(pd.concat(variants.values())),
        f"Rows '{baseline} + <variant>' against {baseline}: does forcing length help the plain model? Rows "
        f"of NEFTune against '{baseline} + <variant>': does NEFTune still beat it? (The paper: 61.99 against "
        "at most 48.01; the longest forced outputs, min_new_tokens, won least.)",
    ]
    result.choices = [*TABLE5_CHOICES, *_variant_choices(frame, variants)]
    result.figure = _table5_figure(result.claims, spec.title)
    result.caption = (
        f"Win rate ({_judge_description(frame, judge)}) and character length of the plain {baseline} model "
        "prompted for length or kept from stopping, beside NEFTune's: ours (solid), the paper's (pale)."
    )
    return result


TABLE5_CHOICES = [
    "The paper does not print its length prompts: ours add one sentence after the template's system text "
    "(the Alpaca preamble), as each variant's system_prompt below says; 'both' is one sentence naming both.",
    "min_new_tokens blocks EOS (every stop id) until that many new tokens, as transformers' min_new_tokens; "
    "decoding is otherwise the plain greedy one with its repetition penalty.",
]


def _table5_comparisons(
    runs: pd.DataFrame, keys: dict[str, Any], baseline: str, variant_methods: list[str]
) -> list[tuple[tuple[str, str], tuple[str, str], tuple[str, str], tuple[str, ...]]]:
    """Table 5's comparisons in one cell: (arms, the paper's rows, methods whose diverged runs count,
    metrics): NEFTune against plain SFT, each variant against plain SFT, NEFTune against each variant."""
    cell = runs
    for key, value in keys.items():
        cell = cell[cell[key] == value]
    nefts = [
        m for m in dict.fromkeys(cell["method"]) if m != baseline and _is_neftune(m) and "gauss" not in m
    ]
    both = ("win rate", "character length")
    out = [((m, baseline), ("neftune", "finetune"), (m, baseline), both) for m in nefts]
    for arm in variant_methods:
        paper_row = TABLE5_VARIANTS[arm.split(" + ", 1)[1]]
        out.append(((arm, baseline), (paper_row, "finetune"), (baseline, baseline), both))
        out += [((m, arm), ("neftune", paper_row), (m, baseline), ("win rate",)) for m in nefts]
    return out


CROWDED_BAR_CLAIMS = 4


def _bar_panel(
    ax: Any,
    part: pd.DataFrame,
    ylabel: str,
    arms: tuple[str, str] = ("baseline", "method"),
    ticks: list[str] | None = None,
    fontsize: int = 6,
) -> None:
    """Per claim: our baseline and method arms (solid) beside the paper's (pale); `arms` name them in the
    legend, `ticks` label the claims (default: "method vs baseline")."""
    x = np.arange(len(part))
    ax.bar(x - 0.3, part["mean_baseline"], 0.2, color="C0", label=f"ours: {arms[0]}")
    ax.bar(x - 0.1, part["mean_method"], 0.2, color="C1", label=f"ours: {arms[1]}")
    ax.bar(
        x + 0.1, part["paper_baseline"].astype(float), 0.2, color="C0", alpha=0.35, label=f"paper: {arms[0]}"
    )
    ax.bar(x + 0.3, part["paper_value"].astype(float), 0.2, color="C1", alpha=0.35, label=f"paper: {arms[1]}")
    if ticks is None:
        ticks = [f"{r.method}\nvs {r.baseline}" for r in part.itertuples(index=False)]
    # Beyond a few claims, level two-line labels run into each other: slant them.
    crowded = len(part) > CROWDED_BAR_CLAIMS
    slant = {"rotation": 30, "ha": "right"} if crowded else {}
    ax.set_xticks(x, ticks, fontsize=fontsize, **slant)
    ax.set_ylabel(ylabel)


def _table5_figure(claims: pd.DataFrame, title: str):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.2), layout="constrained")
    axes = figure.subplots(1, len(TABLE5_METRICS))
    for ax, (label, _, _) in zip(axes, TABLE5_METRICS, strict=True):
        _bar_panel(ax, claims[claims["task"].str.startswith(label)], label)
    axes[0].legend(fontsize=6, frameon=False, ncols=2)
    figure.suptitle(title, fontsize=10)
    return figure


TABLE10_JUDGES = (("win_rate_chatgpt", "ChatGPT (chatgpt_fn)"), ("win_rate_gpt4", "GPT-4 (alpaca_eval_gpt4)"))


@register_artifact(
    "neftune/table10",
    PAPER,
    "Table 10",
    "Decoding ablation: greedy and four top-p/temperature samplings, ± NEFTune",
    table="instruct",
)
def table10(frame: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("neftune/table10")
    # The paper's main judge is ChatGPT, GPT-4 in parentheses: one set of claims per distinct judge.
    judges = {}
    for metric, paper_judge in TABLE10_JUDGES:
        judge = _primary_judge(frame, context, metric)
        if judge is not None and judge not in {j for j, _ in judges.values()}:
            judges[metric] = (judge, paper_judge)
    if not judges:
        return not_run(spec, "no judged instruction-tuning runs (configure instruct.judges)")
    runs, baseline = _runs(frame), _context_value(context, "baseline", "finetune")
    sampled = {v: variant_arms(frame, runs, v) for v in TABLE10_DECODINGS if v != PLAIN}
    sampled = {v: arms for v, arms in sampled.items() if not arms.empty}
    if not sampled:
        names = ", ".join(v for v in TABLE10_DECODINGS if v)
        return not_run(spec, f"no run has a Table 10 generation variant ({names}). " + VARIANTS_HOW)
    arms = pd.concat([runs, *sampled.values()], ignore_index=True)
    # The cells whose both arms have a sampled variant: the greedy row of every other cell is Table 1's.
    covered = {
        (r.model, r.dataset, r.recipe, r.method.split(" + ", 1)[0])
        for r in pd.concat(sampled.values()).itertuples(index=False)
    }
    claims, proxies = [], set()
    for model, dataset, recipe, method in _method_comparisons(runs, baseline):
        if not {(model, dataset, recipe, method), (model, dataset, recipe, baseline)} <= covered:
            continue
        keys = {"model": model, "dataset": dataset, "recipe": recipe}
        paper_model, paper_dataset, same = _paper_cell(
            "Table 10", context.paper_model.get(model), paper_dataset_name(dataset, context)
        )
        for decoding, paper_decoding in TABLE10_DECODINGS.items():
            if decoding != PLAIN and decoding not in sampled:
                continue
            arm = (lambda m: m) if decoding == PLAIN else (lambda m, d=decoding: f"{m} + {d}")
            for metric, (judge, _) in judges.items():
                claim = _arm_claim(
                    arms,
                    frame,
                    context,
                    keys,
                    (arm(method), arm(baseline)),
                    ("neftune", "finetune"),
                    (method, baseline),
                    lambda folder, judge=judge: judge_preferences(folder, judge),
                    ("Table 10", paper_model, paper_dataset, metric, f"AlpacaEval|decoding={paper_decoding}"),
                    f"{paper_decoding}: {_cell_label(context, dataset, recipe)}, judge {judge}",
                )
                if claim is not None:
                    claims.append(claim)
                    proxies |= set() if same else {(model, dataset, paper_model, paper_dataset)}
    result = ArtifactResult(spec.key, spec.paper, spec.artifact, spec.title, claims=_claims_frame(claims))
    if result.claims.empty:
        return not_run(
            spec, "no NEFTune run with a matching baseline run has the Table 10 variants' judgements"
        )
    result.notes = [
        *(
            note
            for judge, paper_judge in judges.values()
            for note in _judge_notes(frame, judge, paper_judge)[:1]
        ),
        PROMPT_PAIRING,
        *_proxy_note("Table 10", proxies),
        "Each decoding pairs NEFTune's and plain SFT's outputs decoded the same way. The paper: NEFTune wins "
        "under every decoding (ChatGPT judge), by 1.7 to 4.9 points.",
    ]
    result.choices = [*TABLE10_CHOICES, *_variant_choices(frame, sampled)]
    result.figure = _winrate_figure(result.claims, spec.title, ", ".join(j for j, _ in judges.values()))
    result.caption = "AlpacaEval win rate ± NEFTune per decoding: ours (solid) beside the paper's (pale)."
    return result


TABLE10_CHOICES = [
    "Greedy is the runs' plain generation. The four other rows sample (do_sample) with the paper's top_p "
    "and temperature, the repetition penalty still on (the paper: every decoding uses 1.2); one sample per "
    "prompt, seeded per batch from the run's seed and the batch's prompts; top_k is transformers' default, "
    "50, as in the authors' script, which sets none. (The authors' released "
    "generation script passes top_p 0.1 and temperature 0.1 with sampling off, i.e. greedy; Table 10's "
    "rows are read as sampled.)",
]


# ------------------------------------------------------------------------------------------ Tables 11, 13

# Tables 11 and 13 compare runs that differ in one SFT setting (a recipe's `freeze`, its
# `sharegpt_chunk_tokens`). Arms are told apart by the settings each run recorded in sft/metrics.json, not
# by recipe names, and paired only when every other setting is the same.


def recorded_settings(run_dir: str) -> dict[str, Any]:
    """The SFT settings a run trained with (sft/metrics.json), the settings added since filled in with
    the defaults it trained with."""
    from robustft.train.sft import LATER_SETTINGS

    path = Path(run_dir) / "sft" / "metrics.json"
    recorded = (json.loads(path.read_text()).get("settings") or {}) if path.exists() else {}
    return {**LATER_SETTINGS, **recorded}


def setting_arms(
    runs: pd.DataFrame, setting: str, label: Callable[[str, Any], str], varies_with: tuple[str, ...] = ()
) -> pd.DataFrame:
    """`runs` as arms of one SFT `setting`: `value` (what each run recorded), `cell` (its other settings,
    less those `varies_with` it: runs in one cell differ in those and method alone), `run_method` (its
    method) and `method` relabelled label(method, value), so paired_claim pairs arms like runs."""
    rows = []
    for run in runs.to_dict("records"):
        settings = recorded_settings(run["run_dir"])
        value = settings.pop(setting)
        for other in varies_with:
            settings.pop(other, None)
        cell = json.dumps(settings, sort_keys=True, default=str)
        rows.append({**run, "value": value, "cell": cell, "run_method": run["method"]})
    arms = pd.DataFrame(rows, columns=[*runs.columns, "value", "cell", "run_method"])
    arms["method"] = [label(m, v) for m, v in zip(arms["run_method"], arms["value"], strict=True)]
    return arms


def _setting_claim(
    arms: pd.DataFrame,
    frame: pd.DataFrame,
    context: ArtifactContext,
    keys: dict[str, Any],
    pair: tuple[str, str],
    paper: tuple[str, str | None, str, str],
    paper_rows: tuple[tuple[str | None, str | None], tuple[str | None, str | None]],
    values_of: Callable[[str], pd.Series],
    task: str,
) -> dict[str, Any] | None:
    """Arm pair[0] against arm pair[1] in the cell `keys` (model, dataset, cell), paired over prompts;
    the paper's (method, split) rows `paper_rows` of `paper` (artifact, model, dataset, metric)."""

    def diverged() -> dict[str, int]:
        columns = ("n_diverged_method", "n_diverged_baseline")
        return {
            column: _diverged_arm_runs(frame, arms, keys, arm)
            for arm, column in zip(pair, columns, strict=True)
        }

    return _claim_of_arms(arms, context, keys, pair, values_of, diverged, paper, paper_rows, task)


def _diverged_arm_runs(frame: pd.DataFrame, arms: pd.DataFrame, keys: dict[str, Any], arm: str) -> int:
    """Diverged SFT runs of an arm: its model, dataset, recipe(s) and method (a diverged run wrote no
    settings to tell its arm by, so its recipe does)."""
    rows = arms[(arms["model"] == keys["model"]) & (arms["dataset"] == keys["dataset"])]
    rows = rows[(rows["cell"] == keys["cell"]) & (rows["method"] == arm)]
    return sum(
        diverged_counts(frame, {"model": keys["model"], "dataset": keys["dataset"], "recipe": recipe}, m, m)[
            "n_diverged_method"
        ]
        for recipe, m in set(zip(rows["recipe"], rows["run_method"], strict=True))
    )


def _parameter_notes(arms: pd.DataFrame, arm_names: Iterable[str]) -> list[str]:
    """How many parameters each arm trained (its sft/metrics.json), one line per arm."""
    lines = []
    for arm in arm_names:
        path = Path(arms.loc[arms["method"] == arm, "run_dir"].iloc[0]) / "sft" / "metrics.json"
        metrics = json.loads(path.read_text()) if path.exists() else {}
        trainable, total = metrics.get("trainable_parameters"), metrics.get("total_parameters")
        if trainable is not None and total:
            lines.append(
                f"{arm}: {trainable:,} of {total:,} parameters trained ({100 * trainable / total:.1f}%)."
            )
    return lines


TABLE11_PAPER_ROWS = {
    # our frozen part -> the paper's row of a NEFTune run with that part frozen
    "embeddings": "neftune + embedding frozen",
    "lm_head": "neftune + lm-head frozen",
    "attention": "neftune + attention blocks frozen",
}
TABLE11_HOW = "an SFT recipe with `freeze` (config/neftune.yaml's table11 grid)"


def _frozen_label(method: str, parts: list[str]) -> str:
    return f"{method} + {'/'.join(parts)} frozen" if parts else method


def _table11_comparisons(
    group: pd.DataFrame, cell: pd.DataFrame, baseline: str
) -> list[tuple[tuple[str, str], tuple[tuple[str | None, None], tuple[str | None, None]]]]:
    """(arms, the paper's rows) of one cell: each frozen arm against plain SFT and against its method
    trained with nothing frozen, and that method against plain SFT."""
    present = set(cell["method"])
    out = []
    for run in group.drop_duplicates("method").itertuples(index=False):
        method, parts = run.run_method, run.value
        neftune = _is_neftune(method) and "gauss" not in method
        paper_row = TABLE11_PAPER_ROWS.get(parts[0]) if neftune and len(parts) == 1 else None
        paper_method = "neftune" if neftune else None
        if baseline in present:
            if method != baseline and method in present:
                out.append(((method, baseline), ((paper_method, None), ("finetune", None))))
            out.append(((run.method, baseline), ((paper_row, None), ("finetune", None))))
        if method != baseline and method in present:
            out.append(((run.method, method), ((paper_row, None), (paper_method, None))))
    return list(dict.fromkeys(out))


def _setting_cell_claims(
    arms: pd.DataFrame,
    frame: pd.DataFrame,
    context: ArtifactContext,
    judge: str,
    artifact: str,
    cells: Iterable[tuple[tuple[str, str, str], pd.DataFrame]],
    comparisons: Callable[[dict[str, Any], pd.DataFrame], list[tuple[Any, Any, str]]],
) -> tuple[list[dict[str, Any]], set[tuple[str, str, str, str]]]:
    """The claims of a train-setting table (Tables 11 and 13): in each (model, dataset, cell) group of
    `cells`, each (arm pair, the paper's rows, what is compared) that `comparisons(keys, group)` names,
    paired over prompts with `judge`'s preferences against `artifact`'s ChatGPT-judged numbers; and the
    (model, dataset, paper model, paper dataset) cells that stand in for the paper's."""
    claims, proxies = [], set()
    for (model, dataset, cell_key), group in cells:
        keys = {"model": model, "dataset": dataset, "cell": cell_key}
        name = paper_dataset_name(dataset, context)
        paper_model, paper_dataset, same = _paper_cell(artifact, context.paper_model.get(model), name)
        for pair, paper_rows, compared in comparisons(keys, group):
            claim = _setting_claim(
                arms,
                frame,
                context,
                keys,
                pair,
                (artifact, paper_model, paper_dataset, "win_rate_chatgpt"),
                paper_rows,
                lambda folder: judge_preferences(folder, judge),
                f"{name}, {compared}" if compared else name,
            )
            if claim is not None:
                claims.append(claim)
                proxies |= set() if same else {(model, dataset, paper_model, paper_dataset)}
    return claims, proxies


@register_artifact(
    "neftune/table11",
    PAPER,
    "Table 11",
    "Which parameters train: NEFTune with the embeddings, the LM head or the attention frozen",
    table="instruct",
)
def table11(frame: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("neftune/table11")
    judge = _primary_judge(frame, context, "win_rate_chatgpt")
    if judge is None:
        return not_run(spec, "no judged instruction-tuning runs (configure instruct.judges)")
    runs, baseline = _runs(frame), _context_value(context, "baseline", "finetune")
    arms = setting_arms(runs, "freeze", _frozen_label)
    frozen = arms[arms["value"].map(bool)]
    if frozen.empty:
        return not_run(spec, f"no finished run froze any parameters: {TABLE11_HOW}")

    def comparisons(keys: dict[str, Any], group: pd.DataFrame):
        cell = arms[(arms["model"] == keys["model"]) & (arms["dataset"] == keys["dataset"])]
        cell = cell[cell["cell"] == keys["cell"]]
        return [(pair, rows, "") for pair, rows in _table11_comparisons(group, cell, baseline)]

    cells = frozen.groupby(["model", "dataset", "cell"], sort=False)
    claims, proxies = _setting_cell_claims(arms, frame, context, judge, "Table 11", cells, comparisons)
    result = ArtifactResult(spec.key, spec.paper, spec.artifact, spec.title, claims=_claims_frame(claims))
    if result.claims.empty:
        return not_run(
            spec, f"no frozen run has a judged run to pair with (plain SFT or its method): {TABLE11_HOW}"
        )
    shown = dict.fromkeys([*result.claims["method"], *result.claims["baseline"]])
    result.notes = [
        *_judge_notes(frame, judge, "ChatGPT (chatgpt_fn)"),
        *_proxy_note("Table 11", proxies),
        *_parameter_notes(arms, shown),
        "The paper: freezing the embeddings or the LM head costs NEFTune little (62.55 -> 61.06, 61.12), "
        "freezing the attention blocks loses all of its gain and of fine-tuning's (22.17, the base model's "
        "score). The paper's base-model row is not reproduced: the workflow judges fine-tuned runs only.",
    ]
    result.choices = list(TABLE11_CHOICES)
    result.figure = _winrate_figure(result.claims, spec.title, judge)
    result.caption = (
        f"AlpacaEval win rate ({_judge_description(frame, judge)}) with parts of the model frozen: ours "
        "(solid) beside the paper's ChatGPT-judged rows (pale)."
    )
    return result


TABLE11_CHOICES = [
    "Frozen parts are found generically: the input embeddings (get_input_embeddings), the LM head "
    "(get_output_embeddings) and each layer's self-attention module (q/k/v/o projections; the layer norms "
    "before it keep training). The paper does not say what its 'attention blocks' include.",
    "A model whose LM head is tied to its input embeddings (SmolLM2) has one matrix for both: freezing "
    "either freezes both, as run.json's `frozen` record says.",
    "NEFTune α = 5, the paper's α for Alpaca (Table 7); Table 11 does not name its α.",
]


CHUNK_DEFAULT = 512  # NEFTune App. A.1, the split length the other tables trained on


def _chunk_label(method: str, chunk_tokens: int) -> str:
    return f"{method} @ {chunk_tokens}"


def _table13_comparisons(
    cell: pd.DataFrame, baseline: str
) -> list[tuple[tuple[str, str], tuple[tuple[str, str], tuple[str, str]], str]]:
    """(arms, the paper's (method, split) rows, what is compared) of one cell with runs at two or more
    chunk lengths: NEFTune against plain SFT at each length, and each method at each length against
    itself at 512 tokens (else the shortest length)."""
    lengths = sorted(set(cell["value"]))
    at = {m: set(cell.loc[cell["run_method"] == m, "value"]) for m in set(cell["run_method"])}
    nefts = sorted(m for m, found in at.items() if _is_neftune(m) and "gauss" not in m and len(found) > 1)
    reference = CHUNK_DEFAULT if CHUNK_DEFAULT in lengths else lengths[0]

    def split(length: int) -> str:
        return f"AlpacaEval|split_len={length}"

    out = []
    for length in lengths:
        for method in nefts:
            if length in at[method] and length in at.get(baseline, set()):
                pair = (_chunk_label(method, length), _chunk_label(baseline, length))
                rows = (("neftune", split(length)), ("finetune", split(length)))
                out.append((pair, rows, f"{length}-token chunks"))
    for method in [baseline, *nefts]:
        paper_method = "finetune" if method == baseline else "neftune"
        for length in sorted(at.get(method, set()) - {reference}):
            if reference in at[method]:
                pair = (_chunk_label(method, length), _chunk_label(method, reference))
                rows = ((paper_method, split(length)), (paper_method, split(reference)))
                out.append((pair, rows, f"{length} vs {reference}-token chunks"))
    return out


@register_artifact(
    "neftune/table13",
    PAPER,
    "Table 13",
    "ShareGPT split length: conversations chunked at 512 and at 1,024 tokens, ± NEFTune",
    table="instruct",
)
def table13(frame: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("neftune/table13")
    judge = _primary_judge(frame, context, "win_rate_chatgpt")
    if judge is None:
        return not_run(spec, "no judged instruction-tuning runs (configure instruct.judges)")
    runs, baseline = _runs(frame), _context_value(context, "baseline", "finetune")
    runs = runs[[paper_dataset_name(d, context) == "ShareGPT" for d in runs["dataset"]]]
    # A longer chunk trains at a longer max length (FastChat's split length is its training length).
    arms = setting_arms(runs, "sharegpt_chunk_tokens", _chunk_label, varies_with=("max_seq_length",))

    def comparisons(keys: dict[str, Any], cell: pd.DataFrame):
        return _table13_comparisons(cell, baseline) if cell["value"].nunique() > 1 else []

    cells = arms.groupby(["model", "dataset", "cell"], sort=False)
    claims, proxies = _setting_cell_claims(arms, frame, context, judge, "Table 13", cells, comparisons)
    result = ArtifactResult(spec.key, spec.paper, spec.artifact, spec.title, claims=_claims_frame(claims))
    if result.claims.empty:
        return not_run(
            spec,
            "no ShareGPT runs at two chunk lengths with judged pairs: an SFT recipe with "
            "`sharegpt_chunk_tokens` (config/neftune.yaml's table13 grid); ShareGPT is not available offline",
        )
    result.notes = [
        *_judge_notes(frame, judge, "ChatGPT (chatgpt_fn)"),
        *_proxy_note("Table 13", proxies),
        "Rows '<method> @ N' are runs on ShareGPT chunked at N tokens. The paper: NEFTune helps at both "
        "lengths (+0.74 at 512, +2.67 at 1,024); longer chunks cost plain SFT 1.8 points and NEFTune none.",
    ]
    result.choices = list(TABLE13_CHOICES)
    result.figure = _winrate_figure(result.claims, spec.title, judge)
    result.caption = (
        f"AlpacaEval win rate ({_judge_description(frame, judge)}) by ShareGPT chunk length, ± NEFTune: ours "
        "(solid) beside the paper's ChatGPT-judged rows (pale)."
    )
    return result


TABLE13_CHOICES = [
    "Chunks close at turn boundaries, before the turn pair that would pass the length (FastChat's "
    "split_long_conversation), counted in the model's tokens with the Vicuna system prompt; each assistant "
    "turn is one example whose prompt is its chunk's earlier turns. Runs at two chunk lengths are paired "
    "when every other setting is the same, but for max_seq_length, which a recipe may raise with the "
    "chunk length (config/neftune.yaml's 1,024-token recipe trains at 1,024 tokens).",
    "NEFTune α = 10, the paper's α for ShareGPT (Table 7); Table 13 does not name its α.",
]


# ------------------------------------------------------------------------------------------ Table 12

TABLE12_FREELB = "freelb (after hparam tuning)"  # the paper's FreeLB row
TABLE12_HOW = "config/neftune.yaml's table12 grid trains one (LLaMA-1-7B, Evol-Instruct)"


def _is_freelb(method: str) -> bool:
    return "freelb" in method


def _table12_comparisons(
    methods: Iterable[str], baseline: str
) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """Table 12's comparisons in one cell, as (our arms, the paper's rows): each uniform NEFTune preset and
    each FreeLB preset against plain SFT, and each NEFTune preset against each FreeLB preset (the table's
    point: NEFTune's noise beats adversarial training of the same embeddings)."""
    methods = [m for m in methods if m != baseline]
    nefts = [m for m in methods if _is_neftune(m) and "gauss" not in m]
    freelbs = [m for m in methods if _is_freelb(m)]
    out = [((m, baseline), ("neftune", "finetune")) for m in nefts]
    out += [((f, baseline), (TABLE12_FREELB, "finetune")) for f in freelbs]
    out += [((m, f), ("neftune", TABLE12_FREELB)) for m in nefts for f in freelbs]
    return out


def _table12_missing(frame: pd.DataFrame, baseline: str) -> str:
    """Why Table 12 has no claim: its FreeLB runs are absent, unfinished or diverged, or have no partner."""
    sft = frame[(frame["source"] == "sft") & frame["method"].map(_is_freelb)]
    unfinished = sft[sft["status"] != "ok"].drop_duplicates(subset=RUN_KEYS)
    if not unfinished.empty:
        runs = "; ".join(
            f"{r.model}/{r.dataset}/{r.recipe}/{r.method}/seed{r.seed}: {r.status}"
            for r in unfinished.itertuples(index=False)
        )
        return f"no finished FreeLB run to pair ({runs})"
    if sft.empty:
        return f"no FreeLB run (a method named freelb*) in this config's grid; {TABLE12_HOW}"
    return f"no FreeLB run with a judged {baseline} run of the same model, dataset, recipe and seed"


@register_artifact(
    "neftune/table12",
    PAPER,
    "Table 12",
    "NEFTune against FreeLB (adversarial training of the input embeddings), ChatGPT judge",
    table="instruct",
)
def table12(frame: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("neftune/table12")
    judge = _primary_judge(frame, context, "win_rate_chatgpt")
    if judge is None:
        return not_run(spec, "no judged instruction-tuning runs (configure instruct.judges)")
    runs, baseline = _runs(frame), _context_value(context, "baseline", "finetune")
    claims, proxies = [], set()
    for (model, dataset, recipe), cell in runs.groupby(["model", "dataset", "recipe"], sort=False):
        methods = list(dict.fromkeys(cell["method"]))
        if baseline not in methods or not any(_is_freelb(m) for m in methods):
            continue
        keys = {"model": model, "dataset": dataset, "recipe": recipe}
        paper_model, paper_dataset, same = _paper_cell(
            "Table 12", context.paper_model.get(model), paper_dataset_name(dataset, context)
        )
        for arm_pair, paper_pair in _table12_comparisons(methods, baseline):
            claim = _arm_claim(
                runs,
                frame,
                context,
                keys,
                arm_pair,
                paper_pair,
                arm_pair,  # a diverged FreeLB run counts against FreeLB, also as the NEFTune row's baseline
                lambda folder: judge_preferences(folder, judge),
                ("Table 12", paper_model, paper_dataset, "win_rate_chatgpt", None),
                _cell_label(context, dataset, recipe),
            )
            if claim is not None:
                claims.append(claim)
                proxies |= set() if same else {(model, dataset, paper_model, paper_dataset)}
    result = ArtifactResult(spec.key, spec.paper, spec.artifact, spec.title, claims=_claims_frame(claims))
    if result.claims.empty:
        return not_run(spec, _table12_missing(frame, baseline))
    result.notes = [
        *_judge_notes(frame, judge, "ChatGPT (chatgpt_fn)"),
        *_proxy_note("Table 12", proxies),
        "The paper (LLaMA-1-7B, Evol-Instruct, ChatGPT judge): plain SFT 62.30, FreeLB after hyper-parameter "
        "tuning 63.48, NEFTune 67.45; rows 'neftune_* vs freelb*' test that NEFTune beats FreeLB.",
    ]
    result.choices = list(TABLE12_CHOICES)
    result.figure = _table12_figure(result.claims, spec.title)
    result.caption = (
        f"AlpacaEval win rate ({_judge_description(frame, judge)}) of NEFTune, FreeLB and plain SFT, per "
        "comparison: ours (solid) beside the paper's ChatGPT-judged numbers (pale)."
    )
    return result


TABLE12_CHOICES = [
    "FreeLB arms are the methods whose name contains 'freelb'; NEFTune arms every uniform-noise preset (the "
    "paper's Table 12 NEFTune row is α = 10, Table 8's for LLaMA-1-7B on Evol-Instruct).",
    "FreeLB on the SFT path: K ascent steps on a perturbation δ of the input embeddings, the loss the "
    "completion-only loss (response tokens), δ on every real token (prompt and response, NEFTune's support), "
    "none on padding, each sequence's δ scaled and normalised over its own tokens; no KL term. The paper "
    "prints no FreeLB hyper-parameters: ours are the config's preset (its report choices say which).",
]


def _table12_figure(claims: pd.DataFrame, title: str):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 2.8), layout="constrained")
    ax = figure.subplots()
    _bar_panel(ax, claims, "win rate vs reference (%)")
    ax.legend(fontsize=6, frameon=False, ncols=2)
    figure.suptitle(title, fontsize=10)
    return figure


# ------------------------------------------------------------------------------------------ embeddings

# Figures 6-8 need no training: robustft.evals.embedding_analysis measures the embedding matrices into
# embedding_flips.csv (Figures 6, 8) and embedding_spectra.csv (Figure 7). The paper prints no numbers
# for them, only what they show; each claim compares our measurement with α = 0 (no noise, no flip by
# construction) or with plain SFT, and the notes set the paper's statement beside ours.
NO_NOISE = "no noise (α = 0)"
FIGURE6_PAPER = "no token flips for α ≤ 15 and some for α ≥ 25"
FIGURE8_PAPER_PCT = 0.4  # "at most 0.4% of the tokens" flip
EMBEDDING_CHOICES = [
    "Nearest neighbours are Euclidean (as the paper), over the whole vocabulary (every row of the input "
    "embedding matrix E). A token flipped when another row is strictly nearer to its noisy vector than "
    "its own: a tie with a duplicate row is not a flip.",
    "The noise is the package's NEFTune implementation in paper mode (uniform in [-1, 1] times "
    "α/√(L·d)), with the same uniform draws at every α, so flips grow with α by construction.",
]


def _embedding_rows(frame: pd.DataFrame, figure: str) -> pd.DataFrame:
    """The rows of embedding_flips.csv that measure `figure` (figure6 or figure8), every column there."""
    from robustft.evals.embedding_analysis import FLIP_COLUMNS

    frame = frame.reindex(columns=list(dict.fromkeys([*frame.columns, *FLIP_COLUMNS])))
    return frame[frame["figure"] == figure]


def _flip_claim(
    context: ArtifactContext,
    model: str,
    task: str,
    alpha: float,
    stats: dict[str, Any],
) -> dict[str, Any]:
    """A claim "NEFTune noise at α flips tokens", against no noise: Δ is the % flipped."""
    return claim_row(
        stats,
        model=model,
        paper_model=context.paper_model.get(model),
        task=task,
        method=f"neftune α={alpha:g}",
        paper_method=f"neftune(alpha={alpha:g})",
        baseline=NO_NOISE,
        paper_value=None,
        paper_baseline=None,
    )


def _percent_stats(
    n: int, mean: float, ci: tuple[float, float], p_value: float | None, p_kind: str
) -> dict[str, Any]:
    """The statistics of a claim on a % (flipped tokens) against 0, the no-noise value."""
    return {
        "n_pairs": n,
        "mean_method": mean,
        "mean_baseline": 0.0,
        "delta": mean,
        "ci_low": ci[0],
        "ci_high": ci[1],
        "p_value": p_value,
        "p_kind": p_kind,
        "min_seeds_for_significance": None,
    }


def _alpha_list(alphas: list[float]) -> str:
    """ "α ∈ {25, 50}", or "no α" for none."""
    return "α ∈ {" + ", ".join(f"{alpha:g}" for alpha in sorted(alphas)) + "}" if alphas else "no α"


@register_artifact(
    "neftune/figure6",
    PAPER,
    "Figure 6",
    "Tokens of training samples that NEFTune noise moves to another nearest neighbour, vs α",
    table="embedding_flips",
)
def figure6(frame: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("neftune/figure6")
    rows = _embedding_rows(frame, "figure6")
    if rows.empty:
        return not_run(spec, "embedding_flips.csv holds no Figure 6 measurements (instruct.embeddings)")
    rows = rows.assign(pct=100.0 * rows["n_flipped"] / rows["n_tokens"])
    claims, notes = [], []
    for model, per_model in rows.groupby("model", sort=False):
        dataset = paper_dataset_name(str(per_model["dataset"].iloc[0]), context)
        for alpha, group in per_model.groupby("alpha", sort=True):
            values = group["pct"].to_numpy(dtype=float)
            stats = _percent_stats(
                len(values),
                float(values.mean()),
                mean_bootstrap_ci(values, n_boot=context.n_boot),
                paired_ttest(values, np.zeros_like(values)) if len(values) > 1 else None,
                "paired t over samples, against no flips",
            )
            task = f"% tokens flipped per {dataset} sample"
            claims.append(_flip_claim(context, str(model), task, float(alpha), stats))
        notes.append(_figure6_note(str(model), per_model))
    result = ArtifactResult(spec.key, spec.paper, spec.artifact, spec.title, claims=_claims_frame(claims))
    result.notes = [
        *notes,
        "The paper prints no numbers for this figure: each claim compares our % with no noise (α = 0), "
        "and its 95% CI is a percentile bootstrap over samples.",
    ]
    result.choices = [*EMBEDDING_CHOICES, _sample_choice(rows)]
    result.figure = _figure6_plot(result.claims, spec.title)
    result.caption = (
        "Mean % of each training sample's tokens whose noisy embedding is nearer another vocabulary row "
        f"than its own, with 95% CIs over samples. The paper: {FIGURE6_PAPER}."
    )
    return result


def _figure6_note(model: str, rows: pd.DataFrame) -> str:
    """Where our flips start, beside the paper's statement (none for α ≤ 15, some for α ≥ 25)."""
    flipped = rows.groupby("alpha")["n_flipped"].sum()
    some = [alpha for alpha, n in flipped.items() if n > 0]
    none = [alpha for alpha, n in flipped.items() if n == 0]
    agrees = all(alpha > 15 for alpha in some) and all(alpha < 25 for alpha in none)
    tokens = int(rows.groupby("item")["n_tokens"].first().sum())
    return (
        f"{model}: tokens flipped at {_alpha_list(some)}, none at {_alpha_list(none)} "
        f"({rows['item'].nunique()} samples, {tokens} tokens); the paper (LLaMA-2-7B, qualitative): "
        f"{FIGURE6_PAPER}. " + ("Ours agrees." if agrees else "Ours differs.")
    )


def _sample_choice(rows: pd.DataFrame) -> str:
    first = rows.iloc[0]
    return (
        f"Samples: {rows['item'].nunique()} training examples per model drawn with seed {int(first['seed'])} "
        f"from {first['source']}, prompt and response as one text (the model's tokenizer, its special "
        "tokens), cut at the configured max_length; L is each sample's length, as in training."
    )


def _figure6_plot(claims: pd.DataFrame, title: str):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 2.8), layout="constrained")
    ax = figure.subplots()
    for k, (model, rows) in enumerate(claims.groupby("model", sort=False)):
        alphas = rows["method"].str.extract(r"α=([\d.]+)")[0].astype(float)
        low = (rows["delta"] - rows["ci_low"]).clip(lower=0).to_numpy(dtype=float)
        high = (rows["ci_high"] - rows["delta"]).clip(lower=0).to_numpy(dtype=float)
        ax.errorbar(
            alphas, rows["delta"], yerr=[low, high], fmt="o-", ms=3, capsize=2, color=f"C{k}", label=model
        )
    ax.axvspan(0, 15, color="grey", alpha=0.15, label="paper: no flips (α ≤ 15)")
    ax.set_xlabel("α")
    ax.set_ylabel("tokens flipped per sample (%)")
    ax.legend(fontsize=6, frameon=False)
    figure.suptitle(title, fontsize=9)
    return figure


@register_artifact(
    "neftune/figure8",
    PAPER,
    "Figure 8",
    "Vocabulary embeddings that NEFTune noise moves to another nearest neighbour, vs α and L",
    table="embedding_flips",
)
def figure8(frame: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    from statsmodels.stats.proportion import proportion_confint

    spec = get_artifact("neftune/figure8")
    rows = _embedding_rows(frame, "figure8")
    if rows.empty:
        return not_run(spec, "embedding_flips.csv holds no Figure 8 measurements (instruct.embeddings)")
    claims = []
    by_model = [group.sort_values(["alpha", "length"]) for _, group in rows.groupby("model", sort=False)]
    for r in pd.concat(by_model).itertuples(index=False):
        n, flipped = int(r.n_tokens), int(r.n_flipped)
        low, high = proportion_confint(flipped, n, alpha=0.05, method="wilson")
        stats = _percent_stats(
            n, 100.0 * flipped / n, (max(100 * low, 0.0), 100 * high), None, "none: Wilson 95% CI over rows"
        )
        task = f"% vocabulary rows flipped, L = {int(r.length)}"
        claims.append(_flip_claim(context, str(r.model), task, float(r.alpha), stats))
    result = ArtifactResult(spec.key, spec.paper, spec.artifact, spec.title, claims=_claims_frame(claims))
    result.notes = [
        *(_figure8_note(str(model), group) for model, group in rows.groupby("model", sort=False)),
        "The paper prints no numbers per cell: each claim compares our % with no noise (α = 0), with a "
        "Wilson 95% CI over the rows noised.",
    ]
    result.choices = [
        *EMBEDDING_CHOICES,
        "Each row of E is noised as a member of a length-L sequence (scale α/√(L·d)): the rows are laid "
        "out as consecutive length-L sequences and passed through the training noise function.",
    ]
    result.figure = _figure8_plot(rows, spec.title)
    result.caption = (
        "% of vocabulary embeddings whose noisy copy is nearer another row than its own, per sequence length "
        f"L and α. The paper: at most {FIGURE8_PAPER_PCT}% (dashed)."
    )
    return result


def _figure8_note(model: str, rows: pd.DataFrame) -> str:
    """Our largest flip rate over the grid, beside the paper's bound (at most 0.4% of the tokens)."""
    pct = 100.0 * rows["n_flipped"] / rows["n_tokens"]
    worst = rows.loc[pct.idxmax()]
    n, vocab_size = int(worst["n_tokens"]), int(worst["vocab_size"])
    sampled = (
        f" A seeded sample of {n} of the {vocab_size} rows (max_vocab) was noised; their neighbours were "
        "searched among all rows."
        if n < vocab_size
        else ""
    )
    return (
        f"{model}: at most {pct.max():.3g}% of {n} rows flipped (α = {worst['alpha']:g}, "
        f"L = {int(worst['length'])}); the paper (LLaMA-2-7B): at most {FIGURE8_PAPER_PCT}% of the tokens. "
        + ("Ours agrees." if pct.max() <= FIGURE8_PAPER_PCT else "Ours exceeds it.")
        + sampled
    )


def _figure8_plot(rows: pd.DataFrame, title: str):
    from matplotlib.figure import Figure

    models = list(dict.fromkeys(rows["model"]))
    figure = Figure(figsize=(max(6.5, 3.6 * len(models) + 0.5), 2.8), layout="constrained")
    axes = figure.subplots(1, len(models), squeeze=False)[0]
    for ax, model in zip(axes, models, strict=True):
        per_model = rows[rows["model"] == model]
        for k, (alpha, group) in enumerate(per_model.groupby("alpha", sort=True)):
            group = group.sort_values("length")
            pct = 100.0 * group["n_flipped"] / group["n_tokens"]
            ax.plot(group["length"], pct, "o-", ms=3, color=f"C{k}", label=f"α = {alpha:g}")
        ax.axhline(FIGURE8_PAPER_PCT, color="black", ls="--", lw=0.8, label="paper: at most")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length L")
        ax.set_ylabel("vocabulary rows flipped (%)")
        ax.set_title(model, fontsize=9)
        ax.legend(fontsize=6, frameon=False)
    figure.suptitle(title, fontsize=9)
    return figure


FIGURE7_PAPER = "NEFTune leaves the spectrum of E·Eᵀ as it is (like plain fine-tuning)"
SPECTRUM_TASK = "top singular values of E·Eᵀ, % change from the base model"


@register_artifact(
    "neftune/figure7",
    PAPER,
    "Figure 7",
    "Top singular values of the embedding similarity E·Eᵀ: base model, plain SFT, NEFTune",
    table="embedding_spectra",
)
def figure7(frame: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    from robustft.evals.embedding_analysis import SPECTRUM_COLUMNS

    spec = get_artifact("neftune/figure7")
    frame = frame.reindex(columns=list(dict.fromkeys([*frame.columns, *SPECTRUM_COLUMNS])))
    if not (frame["arm"] == "base").any():
        return not_run(spec, "embedding_spectra.csv holds no spectrum (instruct.embeddings)")
    ok = frame[frame["status"] == "ok"]
    diverged = ok["sft_status"] == "diverged"
    tuned = ok[(ok["arm"] != "base") & ~diverged]
    claims, notes = [], []
    for model in dict.fromkeys(ok.loc[ok["arm"] == "base", "model"]):
        base = ok[(ok["model"] == model) & (ok["arm"] == "base")].set_index("rank")["singular_value"]
        mine = tuned[tuned["model"] == model]
        rows, note = _spectrum_claims(frame, context, str(model), base, mine)
        claims += rows
        notes.append(note)
    result = ArtifactResult(spec.key, spec.paper, spec.artifact, spec.title, claims=_claims_frame(claims))
    result.notes = [
        *notes,
        "Each claim pairs the % change of the k-th singular value (NEFTune run against plain SFT run, both "
        "from the base model's) over the ranks, within matched seeds: a paired bootstrap CI and t-test over "
        "ranks, which are not independent items, so the interval is a description, not a test of the "
        "paper's qualitative statement.",
    ]
    if diverged.any():
        left_out = ok.loc[diverged].drop_duplicates(subset=RUN_KEYS)
        result.notes.append(f"{len(left_out)} run(s) whose SFT diverged are left out.")
    result.choices = [
        "The singular values of E·Eᵀ are the squares of E's (E = UΣVᵀ), from the SVD of E in float64: no "
        "V × V matrix. The runs are the config's SFT runs of the analysed model on the analysed training "
        "set, default recipe: the report's baseline (plain SFT) and every uniform-noise NEFTune preset."
    ]
    result.figure = _figure7_plot(ok, tuned, spec.title)
    result.caption = (
        "Top singular values of E·Eᵀ (top) and their % change from the base model (bottom), per model: "
        f"base, plain SFT and NEFTune runs. The paper (qualitative): {FIGURE7_PAPER}."
    )
    return result


def _spectrum_claims(
    frame: pd.DataFrame, context: ArtifactContext, model: str, base: pd.Series, tuned: pd.DataFrame
) -> tuple[list[dict[str, Any]], str]:
    """Figure 7's claims for one model ("NEFTune changes the spectrum no more than plain SFT"), or a
    "not run" row with the reasons the table gives, and the note that sets ours beside the paper's."""
    runs = tuned.drop_duplicates(subset=RUN_KEYS)[[*RUN_KEYS, "run_dir", "arm"]].reset_index(drop=True)

    def change(run_dir: str) -> pd.Series:
        values = tuned[tuned["run_dir"] == run_dir].set_index("rank")["singular_value"]
        shared = values.index.intersection(base.index)
        return pd.Series(100.0 * (values[shared] / base[shared] - 1.0), dtype=float)

    baselines = list(dict.fromkeys(runs.loc[runs["arm"] == "baseline", "method"]))
    methods = list(dict.fromkeys(runs.loc[runs["arm"] == "neftune", "method"]))
    baseline = baselines[0] if baselines else _context_value(context, "baseline", "finetune")
    rows = []
    for method in methods:
        keys = {"model": model, "recipe": "default"}
        stats = paired_claim(runs, keys, method, baseline, change, context.n_boot) if baselines else None
        if stats is not None:
            stats["min_seeds_for_significance"] = None  # its pairs are ranks, not seeds
            rows.append(
                claim_row(
                    stats,
                    model=model,
                    paper_model=context.paper_model.get(model),
                    task=SPECTRUM_TASK,
                    method=method,
                    paper_method="neftune",
                    baseline=baseline,
                    paper_value=None,
                    paper_baseline=None,
                )
            )
    largest = {
        arm: max((change(d).abs().max() for d in runs.loc[runs["arm"] == arm, "run_dir"]), default=None)
        for arm in ("baseline", "neftune")
    }
    measured = "; ".join(
        f"largest change from the base model with {name}: {value:.3g}%"
        for name, value in (("plain SFT", largest["baseline"]), ("NEFTune", largest["neftune"]))
        if value is not None
    )
    if rows:
        return rows, f"{model}: {measured}. The paper (LLaMA-2-7B, qualitative): {FIGURE7_PAPER}."
    reasons = frame.loc[(frame["model"] == model) & (frame["status"] == "not run"), "reason"].dropna()
    reason = "; ".join(dict.fromkeys(reasons)) or "no NEFTune and plain SFT runs with a matching seed"
    row = {
        "model": model,
        "paper_model": context.paper_model.get(model),
        "task": SPECTRUM_TASK,
        "method": methods[0] if methods else "neftune",
        "paper_method": "neftune",
        "baseline": baseline,
        "n_pairs": 0,
        "verdict": NOT_RUN,
    }
    return [row], f"{model}: the runs' spectra are not run: {reason}." + (
        f" Measured: {measured}." if measured else ""
    )


def _figure7_plot(ok: pd.DataFrame, tuned: pd.DataFrame, title: str):
    from matplotlib.figure import Figure

    models = list(dict.fromkeys(ok.loc[ok["arm"] == "base", "model"]))
    figure = Figure(figsize=(max(6.5, 3.6 * len(models) + 0.5), 4.6), layout="constrained")
    axes = figure.subplots(2, len(models), squeeze=False, sharex="col")
    colours = {"baseline": "C0", "neftune": "C1"}
    for column, model in enumerate(models):
        base = ok[(ok["model"] == model) & (ok["arm"] == "base")].set_index("rank")["singular_value"]
        top, bottom = axes[0, column], axes[1, column]
        top.plot(base.index, base.to_numpy(), color="black", lw=1.2, label="base")
        bottom.axhline(0, color="black", lw=0.8)
        for (method, seed, arm), run in tuned[tuned["model"] == model].groupby(
            ["method", "seed", "arm"], sort=False
        ):
            values = run.set_index("rank")["singular_value"]
            label = f"{method} (seed {int(seed)})"
            top.plot(values.index, values.to_numpy(), color=colours[arm], lw=0.9, ls="--", label=label)
            change = 100.0 * (values / base.reindex(values.index) - 1.0)
            bottom.plot(change.index, change.to_numpy(), color=colours[arm], lw=0.9, label=label)
        top.set_yscale("log")
        top.set_title(model, fontsize=9)
        top.set_ylabel("singular value of E·Eᵀ")
        bottom.set_xlabel("rank")
        bottom.set_ylabel("% change from base")
        top.legend(fontsize=6, frameon=False)
    figure.suptitle(title, fontsize=9)
    return figure
