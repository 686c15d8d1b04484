"""NoisyTune (Wu et al., ACL 2022): Table 2 and Figures 2-6 as functions of the runs table.

Our method names are the presets of config/noisytune.yaml; each artifact maps them to the paper's names
in paper_results.csv. An artifact whose runs are absent is "not run", with the presets it needs.
"""

from __future__ import annotations

import pandas as pd

from robustft.artifacts.base import (
    ArtifactContext,
    ArtifactResult,
    PaperKey,
    comparison_claims,
    curve_figure,
    effects_figure,
    get_artifact,
    not_run,
    paper_dataset,
    register_artifact,
    seed_notes,
)
from robustft.data.base import split_task_variant
from robustft.reference import GLUE_AVG
from robustft.tables import average_tasks

PAPER = "NoisyTune"
PROTOCOL = "the mean of 5 seeds"

# Figure 2: our preset -> the paper's noise variant.
NOISE_VARIANTS = {
    "noisytune_global_gaussian": "global-gaussian",
    "noisytune_global_uniform": "global-uniform",
    "noisytune_matrix_gaussian": "matrix-gaussian",
    "noisytune": "matrix-uniform",
}
# Figure 3: (baseline preset, with-NoisyTune preset) -> the paper's names.
COMPLEMENTS = {
    ("recadam", "noisytune+recadam"): ("recadam", "recadam+noisytune"),
    ("mixout", "noisytune+mixout"): ("mixout", "mixout+noisytune"),
}
# Figure 6: λ -> our preset (λ = 0.15 is the `noisytune` preset of Table 2, λ = 0 is plain fine-tuning).
LAMBDA_SWEEP = {0.05: "noisytune_l0.05", 0.10: "noisytune_l0.10", 0.15: "noisytune", 0.20: "noisytune_l0.20"}
LAMBDA_SWEEP |= {0.25: "noisytune_l0.25", 0.30: "noisytune_l0.30"}


def _present(runs: pd.DataFrame, methods: list[str]) -> bool:
    return set(methods) <= set(runs.loc[runs["status"] == "ok", "method"])


def _finish(result: ArtifactResult, claims: pd.DataFrame, notes: list[str]) -> ArtifactResult:
    result.claims = claims
    result.notes = [*notes, *seed_notes(claims, PROTOCOL)]
    return result


def _label(row) -> str:
    return f"{paper_dataset(row.task)}: {row.method}"


@register_artifact("noisytune/table2", PAPER, "Table 2", "GLUE dev, each model with and without NoisyTune")
def table2(runs: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("noisytune/table2")
    full = runs[~runs["task"].str.contains("@", regex=False)]
    if not _present(full, ["finetune", "noisytune"]):
        return not_run(spec, "needs runs of the presets `finetune` and `noisytune` (λ = 0.15)")
    claims, notes = comparison_claims(
        full,
        context,
        PaperKey(PAPER, "Table 2"),
        {"finetune": "finetune", "noisytune": "noisytune"},
        "finetune",
    )
    result = ArtifactResult(spec.key, PAPER, spec.artifact, spec.title)
    result.figure = effects_figure(
        claims, lambda r: paper_dataset(r.task), "NoisyTune Table 2: Δ (NoisyTune − finetune)"
    )
    result.caption = (
        "Per task and on the average: our Δ with its 95% paired bootstrap CI; crosses: the paper's Δ."
    )
    return _finish(result, claims, notes)


@register_artifact("noisytune/figure2", PAPER, "Figure 2", "Noise distribution and scale (GLUE average)")
def figure2(runs: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("noisytune/figure2")
    variants = [m for m in NOISE_VARIANTS if _present(runs, [m])]
    if not _present(runs, ["finetune"]) or len(variants) < 2:
        return not_run(spec, f"needs `finetune` and the presets {sorted(NOISE_VARIANTS)}")
    full = runs[~runs["task"].str.contains("@", regex=False)]
    names = {"finetune": "finetune", **{m: NOISE_VARIANTS[m] for m in variants}}
    claims, notes = comparison_claims(full, context, PaperKey(PAPER, "Figure 2"), names, "finetune")
    claims = claims[claims["task"] == GLUE_AVG].reset_index(drop=True)
    result = ArtifactResult(spec.key, PAPER, spec.artifact, spec.title)
    result.figure = effects_figure(
        claims, lambda r: NOISE_VARIANTS[r.method], "NoisyTune Figure 2: Δ GLUE average vs no noise"
    )
    result.caption = "GLUE average of each noise variant minus fine-tuning without noise; crosses: the paper."
    missing = sorted(set(NOISE_VARIANTS) - set(variants))
    if missing:
        notes.append(f"Variants not run: {missing}.")
    result.choices = [
        "`global` scale: one std over all pretrained parameters (the paper does not say which scale).",
        "`gaussian`: σ = λ·std/√12, the variance of the uniform noise (the paper does not say).",
    ]
    return _finish(result, claims, notes)


@register_artifact(
    "noisytune/figure3", PAPER, "Figure 3", "NoisyTune on top of RecAdam and Mixout (GLUE average)"
)
def figure3(runs: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("noisytune/figure3")
    full = runs[~runs["task"].str.contains("@", regex=False)]
    parts, notes = [], []
    # One task set for every average in the figure, whichever pair it compares.
    present = [m for pair in COMPLEMENTS if _present(full, list(pair)) for m in pair]
    shared = average_tasks(full, present)
    for (base, combined), (paper_base, paper_combined) in COMPLEMENTS.items():
        if not _present(full, [base, combined]):
            notes.append(
                f"{paper_combined} vs {paper_base}: not run (needs presets `{base}` and `{combined}`)."
            )
            continue
        claims, more = comparison_claims(
            full,
            context,
            PaperKey(PAPER, "Figure 3"),
            {base: paper_base, combined: paper_combined},
            base,
            average_over=shared,
        )
        parts.append(claims[claims["task"] == GLUE_AVG])
        notes += more
    if not parts:
        return not_run(spec, " ".join(notes))
    claims = pd.concat(parts, ignore_index=True)
    result = ArtifactResult(spec.key, PAPER, spec.artifact, spec.title)
    result.figure = effects_figure(claims, lambda r: f"{r.paper_method} − {r.baseline}", "NoisyTune Figure 3")
    result.caption = "GLUE average gained by adding NoisyTune to RecAdam and to Mixout; crosses: the paper."
    result.choices = [
        "RecAdam and Mixout settings are not given by NoisyTune: their own papers' defaults are used.",
        "RecAdam: γ 5000, sigmoid annealing with t0 and the sigmoid's width as fractions of each run (1% and "
        "0.008%: the code's 250 and 2 steps at a 25,000-step run, between the authors' 9k and 61k), so its "
        "backbone trains at 3 epochs. The recall still depends on the run's length: the share of the "
        "starting offset from θ* the pull leaves (run.json `initial_offset_remaining`) is about 0.99 at "
        "RTE's 234 steps and 0.16 at MNLI's 36,816 (lr 2e-5, 10% warm-up), and under ~100 steps t0 is below "
        "one step, so RecAdam is AdamW there. θ* is the unperturbed checkpoint in NoisyTune+RecAdam, as the "
        "RecAdam code loads a separate pretrained copy.",
        "Mixout: p 0.9 with the authors' backward (`gradient: reference`, (1 − p)× the true gradient, as "
        "the paper's numbers were made), mixout in place of dropout in the pretrained layers, and no "
        "regularisation on the new task head (neither dropout nor mixout), as in the Mixout paper's main "
        "GLUE runs.",
    ]
    return _finish(result, claims, notes)


@register_artifact("noisytune/figure4", PAPER, "Figure 4", "MRPC with 20-100% of the training data")
def figure4(runs: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("noisytune/figure4")
    mrpc = runs[runs["task"].map(lambda t: split_task_variant(t)[0]) == "mrpc"]
    if len(set(mrpc["task"])) < 2 or not _present(mrpc, ["finetune", "noisytune"]):
        return not_run(spec, "needs `finetune` and `noisytune` on MRPC task variants, e.g. mrpc@0.2 ... mrpc")

    def split(task: str) -> str:
        fraction = split_task_variant(task)[1] or 1.0
        return f"dev|train_frac={round(100 * fraction)}%"

    claims, notes = comparison_claims(
        mrpc,
        context,
        PaperKey(PAPER, "Figure 4", "accuracy", split),
        {"finetune": "finetune", "noisytune": "noisytune"},
        "finetune",
    )
    claims = claims[claims["task"] != GLUE_AVG].reset_index(drop=True)
    result = ArtifactResult(spec.key, PAPER, spec.artifact, spec.title)
    result.figure = curve_figure(
        claims,
        lambda r: 100 * (split_task_variant(r.task)[1] or 1.0),
        "% of MRPC training data",
        "NoisyTune Figure 4",
    )
    result.caption = (
        "MRPC dev accuracy (mean over seeds) against the share of training data; black: the paper."
    )
    result.choices = [
        "Subsets: floor(n·fraction) training examples drawn once per data seed, nested across "
        "fractions; dev is never subsampled."
    ]
    return _finish(result, claims, notes)


@register_artifact(
    "noisytune/figure6", PAPER, "Figure 6", "Sensitivity to the noise intensity λ (GLUE average)"
)
def figure6(runs: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    spec = get_artifact("noisytune/figure6")
    swept = {lam: m for lam, m in LAMBDA_SWEEP.items() if _present(runs, [m])}
    if not _present(runs, ["finetune"]) or len(swept) < 2:
        return not_run(
            spec, f"needs `finetune` and at least two of the presets {sorted(LAMBDA_SWEEP.values())}"
        )
    full = runs[~runs["task"].str.contains("@", regex=False)]
    names = {"finetune": "finetune", **{m: f"noisytune(lambda={lam:.2f})" for lam, m in swept.items()}}
    claims, notes = comparison_claims(full, context, PaperKey(PAPER, "Figure 6"), names, "finetune")
    claims = claims[claims["task"] == GLUE_AVG].reset_index(drop=True)
    lam_of = {m: lam for lam, m in swept.items()}
    result = ArtifactResult(spec.key, PAPER, spec.artifact, spec.title)
    result.figure = curve_figure(claims, lambda r: lam_of[r.method], "λ", "NoisyTune Figure 6: GLUE average")
    result.caption = (
        "GLUE average against λ (ours: mean over seeds; dashed: fine-tuning, λ = 0); black: the paper."
    )
    return _finish(result, claims, notes)


@register_artifact(
    "noisytune/figure5", PAPER, "Figure 5", "Parameter L1-norm drift while fine-tuning on MRPC"
)
def figure5(runs: pd.DataFrame, context: ArtifactContext) -> ArtifactResult:
    import robustft.artifacts.drift as drift  # imports matplotlib: only when the figure is built

    spec = get_artifact("noisytune/figure5")
    ok = runs[
        (runs["status"] == "ok") & (runs["task"] == "mrpc") & runs["method"].isin(["finetune", "noisytune"])
    ]
    models = [m for m, paper in context.paper_model.items() if paper == "bert-base" and m in set(ok["model"])]
    models = models or sorted(set(ok["model"]))
    if not models or set(ok.loc[ok["model"] == models[0], "method"]) != {"finetune", "noisytune"}:
        return not_run(spec, "needs `finetune` and `noisytune` runs on MRPC")
    model = models[0]
    records = {
        (r.method, int(r.seed)): drift.load_norm_records(r.run_dir)
        for r in ok[ok["model"] == model].itertuples(index=False)
    }
    without = sorted(
        f"{method} seed {seed}"
        for (method, seed), f in records.items()
        if not (f["point"] == "checkpoint").any()
    )
    if without:
        # One run without checkpoints would pull every claim back to checkpoint 0.
        return not_run(
            spec,
            f"MRPC runs without norm checkpoints ({', '.join(without)}): "
            "set train_by_task.mrpc.norm_checkpoints: 9",
        )
    table = drift.drift_table(records)
    paper = drift.paper_drift()
    result = ArtifactResult(spec.key, PAPER, spec.artifact, spec.title)
    result.figure = drift.drift_figure(table, paper, title=f"NoisyTune Figure 5: {model} on MRPC")
    result.caption = (
        "Drift of the L1 norm of each parameter group from its value at the start of fine-tuning: raw "
        "(change of the mean |w|) and relative (×1e-6, the paper's unit); markers: the paper."
    )
    result.claims = _drift_claims(records, paper, model, context)
    result.choices = [
        "Relative drift = |‖W_t‖₁ − ‖W_0‖₁| / ‖W_0‖₁ per group (summed over its tensors), W_0 = the weights "
        "when fine-tuning starts (after the NoisyTune perturbation); raw drift divides by the parameter "
        "count instead. The paper defines neither.",
        "Checkpoints: the start plus train.norm_checkpoints evenly spaced optimizer steps (the last at the "
        "end of training); the paper does not give its spacing.",
        "`dense` = the attention-output, intermediate and output dense layers of every encoder layer.",
    ]
    result.notes = seed_notes(result.claims, PROTOCOL)
    last = int(table["checkpoint"].max())
    if last != 9:
        result.notes.append(
            f"Our last checkpoint is {last}; the claims compare it with the paper's checkpoint 9."
        )
    return result


def _drift_claims(
    records: dict[tuple[str, int], pd.DataFrame], paper: pd.DataFrame, model: str, context: ArtifactContext
) -> pd.DataFrame:
    """Per group at the last checkpoint: relative drift with NoisyTune minus without, paired over seeds."""
    import robustft.artifacts.drift as drift
    from robustft.artifacts.base import CLAIM_COLUMNS
    from robustft.stats import holm, paired_bootstrap_ci, paired_ttest, seeds_needed, verdict

    per_run = {key: drift.run_drift(frame) for key, frame in records.items()}
    last = min(int(frame["checkpoint"].max()) for frame in per_run.values())
    paper_last = int(paper["checkpoint"].max()) if not paper.empty else None
    rows = []
    for group in drift.GROUPS:
        values: dict[str, dict[int, float]] = {"finetune": {}, "noisytune": {}}
        for (method, seed), frame in per_run.items():
            hit = frame[(frame["checkpoint"] == last) & (frame["group"] == group)]
            if not hit.empty:
                values[method][seed] = float(hit["rel_drift"].iloc[0]) / drift.PAPER_UNIT
        seeds = sorted(set(values["finetune"]) & set(values["noisytune"]))
        if not seeds:
            continue
        a = [values["noisytune"][s] for s in seeds]
        b = [values["finetune"][s] for s in seeds]
        differences = pd.Series(a) - pd.Series(b)
        ci_low, ci_high = paired_bootstrap_ci(a, b, n_boot=context.n_boot)
        paper_of = {
            m: paper.loc[
                (paper["method"] == m) & (paper["group"] == group) & (paper["checkpoint"] == paper_last),
                "value",
            ]
            for m in ("finetune", "noisytune")
        }
        paper_value = float(paper_of["noisytune"].iloc[0]) if len(paper_of["noisytune"]) else None
        paper_base = float(paper_of["finetune"].iloc[0]) if len(paper_of["finetune"]) else None
        rows.append(
            {
                "model": model,
                "paper_model": context.paper_model.get(model, ""),
                "task": f"MRPC {group} (checkpoint {last})",
                "method": "noisytune",
                "paper_method": "noisytune",
                "baseline": "finetune",
                "n_pairs": len(seeds),
                "mean_method": sum(a) / len(a),
                "mean_baseline": sum(b) / len(b),
                "delta": float(differences.mean()),
                "ci_low": ci_low,
                "ci_high": ci_high,
                "p_value": paired_ttest(a, b),
                "p_kind": "Holm",
                "paper_value": paper_value,
                "paper_baseline": paper_base,
                "paper_delta": None
                if paper_value is None or paper_base is None
                else paper_value - paper_base,
                "min_seeds_for_significance": seeds_needed(
                    float(differences.mean()),
                    float(differences.std(ddof=1)) if len(seeds) > 1 else float("nan"),
                ),
            }
        )
    claims = pd.DataFrame(rows)
    if claims.empty:
        return pd.DataFrame(columns=CLAIM_COLUMNS)
    claims["p_value"] = holm(claims["p_value"].to_numpy())  # one family: the five groups
    claims["verdict"] = [
        verdict(r.paper_delta, r.ci_low, r.ci_high, r.n_pairs, r.p_value)
        for r in claims.itertuples(index=False)
    ]
    return claims.reindex(columns=CLAIM_COLUMNS)  # the columns it has no data for stay empty
