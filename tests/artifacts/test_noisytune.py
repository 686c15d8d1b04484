"""Paper artifacts from hand-made runs tables: the claims, paper lookups and not-run reasons they give."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from robustft.artifacts import ARTIFACTS, ArtifactContext, read_result, write_result
from robustft.artifacts.base import CLAIM_COLUMNS

CONTEXT = ArtifactContext(paper_model={"minilm-l6": "bert-base"}, n_boot=2000)


def runs_table(scores: dict[tuple[str, str], list[float]], model: str = "minilm-l6") -> pd.DataFrame:
    """(task, method) -> one score per seed (points), as runs.csv lays them out."""
    rows = []
    for (task, method), values in scores.items():
        for seed, score in enumerate(values, start=1):
            rows.append(
                {
                    "model": model,
                    "task": task,
                    "method": method,
                    "seed": seed,
                    "status": "ok",
                    "metric": "accuracy",
                    "score": score,
                    "train_runtime_s": 360.0 if method == "finetune" else 720.0,
                    "train_samples_per_second": 50.0 if method == "finetune" else 25.0,
                    "run_dir": f"results/runs/{model}/{task}/{method}/seed{seed}",
                }
            )
    return pd.DataFrame(rows)


# NoisyTune is 2 points better on RTE and 1 on MRPC on every seed, give or take 0.1.
TABLE2_RUNS = {
    ("rte", "finetune"): [60.0, 61.0, 62.0, 63.0],
    ("rte", "noisytune"): [62.0, 63.1, 63.9, 65.0],
    ("mrpc", "finetune"): [80.0, 81.0, 82.0, 83.0],
    ("mrpc", "noisytune"): [81.1, 81.9, 83.0, 84.0],
}


def test_table2_claims_put_our_paired_effect_beside_the_papers() -> None:
    result = ARTIFACTS["noisytune/table2"].build(runs_table(TABLE2_RUNS), CONTEXT)
    claims = result.claims.set_index("task")
    assert list(result.claims.columns) == CLAIM_COLUMNS
    assert claims.loc["rte", "delta"] == pytest.approx(2.0)
    assert claims.loc["mrpc", "delta"] == pytest.approx(1.0)
    # Paper (bert-base, Table 2): RTE 67.7 -> 68.8, MRPC 87.1 -> 88.0.
    assert claims.loc["rte", "paper_delta"] == pytest.approx(1.1)
    assert claims.loc["mrpc", "paper_value"] == pytest.approx(88.0)
    # The average over RTE and MRPC: ours 1.5; the paper's recomputed over the same two tasks.
    assert claims.loc["GLUE-avg", "delta"] == pytest.approx(1.5)
    assert claims.loc["GLUE-avg", "paper_delta"] == pytest.approx((1.1 + 0.9) / 2)
    assert claims.loc["GLUE-avg", "p_kind"] == "t-test" and claims.loc["rte", "p_kind"] == "Holm"
    # Our Δs (1.0, 2.0, 1.5) agree in sign but their narrow CIs lie above the paper's: not a match.
    assert set(claims["verdict"]) == {"direction only"}
    assert set(claims["magnitude"]) == {"ours larger"}
    assert result.figure is not None


def test_an_effect_of_the_papers_size_is_reproduced() -> None:
    # Differences 1.0, 1.3, 1.0, 1.1: mean 1.1, the paper's RTE Δ, inside a CI well away from 0.
    sized = {**TABLE2_RUNS, ("rte", "noisytune"): [61.0, 62.3, 63.0, 64.1]}
    claims = ARTIFACTS["noisytune/table2"].build(runs_table(sized), CONTEXT).claims.set_index("task")
    assert claims.loc["rte", "magnitude"] == "paper Δ in CI"
    assert claims.loc["rte", "verdict"] == "reproduced"


def test_artifact_verdicts_use_the_configured_seed_floor() -> None:
    """Four seeds: enough under the default floor of 3, too few under report.min_seeds = 5."""
    strict = ArtifactContext(paper_model=CONTEXT.paper_model, n_boot=CONTEXT.n_boot, min_seeds=5)
    result = ARTIFACTS["noisytune/table2"].build(runs_table(TABLE2_RUNS), strict)
    assert set(result.claims["verdict"]) == {"too few seeds"} and result.min_seeds == 5
    lenient = ArtifactContext(paper_model=CONTEXT.paper_model, n_boot=CONTEXT.n_boot, min_seeds=3)
    two_seeds = runs_table({key: values[:2] for key, values in TABLE2_RUNS.items()})
    assert set(ARTIFACTS["noisytune/table2"].build(two_seeds, lenient).claims["verdict"]) == {"too few seeds"}


def test_a_diverged_seed_is_counted_beside_the_claim() -> None:
    runs = runs_table(TABLE2_RUNS)
    hit = (runs["task"] == "rte") & (runs["method"] == "noisytune") & (runs["seed"] == runs["seed"].max())
    runs.loc[hit, "status"], runs.loc[hit, "score"] = "diverged", float("nan")
    claims = ARTIFACTS["noisytune/table2"].build(runs, CONTEXT).claims.set_index("task")
    assert claims.loc["rte", "n_pairs"] == 3
    assert (claims.loc["rte", "n_diverged_method"], claims.loc["rte", "n_diverged_baseline"]) == (1, 0)
    assert claims.loc["mrpc", "n_diverged_method"] == 0
    assert claims.loc["GLUE-avg", "n_diverged_method"] == 1  # the average's seeds lose it too
    # A diverged seed counts against its method: RTE's survivors show the paper's direction, but the
    # claim is unstable; MRPC, where nothing diverged, keeps its verdict.
    assert claims.loc["rte", "verdict"] == "unstable"
    assert claims.loc["GLUE-avg", "verdict"] == "unstable"
    assert claims.loc["mrpc", "verdict"] == "direction only"


def test_finish_claims_marks_every_artifacts_claims_unstable() -> None:
    """Whatever artifact drew a reproduced or direction-only claim, a method that diverged on more
    seeds than its baseline makes it unstable; unknown counts (pd.NA) do not."""
    from robustft.artifacts.base import finish_claims

    claim = {"n_pairs": 4, "paper_delta": 1.0, "ci_low": 0.5, "ci_high": 1.5, "p_value": 0.01}
    claims = pd.DataFrame(
        [
            {**claim, "verdict": "reproduced", "n_diverged_method": 2, "n_diverged_baseline": 0},
            {**claim, "verdict": "direction only", "n_diverged_method": 1, "n_diverged_baseline": pd.NA},
            {**claim, "verdict": "reproduced", "n_diverged_method": 1, "n_diverged_baseline": 1},
            {**claim, "verdict": "within noise", "n_diverged_method": 3, "n_diverged_baseline": 0},
            {**claim, "verdict": "reproduced", "n_diverged_method": pd.NA, "n_diverged_baseline": pd.NA},
        ]
    )
    finished = finish_claims(claims, min_seeds=3)
    assert list(finished["verdict"]) == ["unstable", "unstable", "reproduced", "within noise", "reproduced"]
    # Without the count columns at all (an artifact that does not know), nothing changes.
    bare = finish_claims(claims.drop(columns=["n_diverged_method", "n_diverged_baseline"]), min_seeds=3)
    assert list(bare["verdict"]) == list(claims["verdict"])


def test_an_effect_against_the_paper_is_contradicted() -> None:
    flipped = {**TABLE2_RUNS, ("rte", "noisytune"): [58.0, 59.1, 59.9, 61.0]}
    claims = ARTIFACTS["noisytune/table2"].build(runs_table(flipped), CONTEXT).claims.set_index("task")
    assert claims.loc["rte", "verdict"] == "contradicted"


def test_figure2_maps_presets_to_the_papers_noise_variants() -> None:
    runs = runs_table(
        {
            **TABLE2_RUNS,
            ("rte", "noisytune_global_uniform"): [59.0, 60.1, 60.9, 62.0],
            ("mrpc", "noisytune_global_uniform"): [79.0, 80.1, 80.9, 82.0],
        }
    )
    result = ARTIFACTS["noisytune/figure2"].build(runs, CONTEXT)
    claims = result.claims.set_index("method")
    assert list(claims.index) == ["noisytune", "noisytune_global_uniform"]  # average rows only
    assert claims.loc["noisytune_global_uniform", "paper_method"] == "global-uniform"
    # Figure 2 prints only the 9-task average: 78.9 - 79.6 for global uniform.
    assert claims.loc["noisytune_global_uniform", "paper_delta"] == pytest.approx(-0.7)
    assert claims.loc["noisytune_global_uniform", "verdict"] == "direction only"  # ours −1.0, CI ∌ −0.7
    assert any("global" in choice for choice in result.choices)


def test_figure4_reads_the_papers_value_at_each_data_fraction() -> None:
    runs = runs_table(
        {
            ("mrpc@0.2", "finetune"): [70.0, 71.0, 72.0],
            ("mrpc@0.2", "noisytune"): [71.0, 72.0, 73.0],
            ("mrpc", "finetune"): TABLE2_RUNS["mrpc", "finetune"][:3],
            ("mrpc", "noisytune"): TABLE2_RUNS["mrpc", "noisytune"][:3],
        }
    )
    claims = ARTIFACTS["noisytune/figure4"].build(runs, CONTEXT).claims.set_index("task")
    assert claims.loc["mrpc@0.2", "paper_value"] == pytest.approx(83.48)
    assert claims.loc["mrpc@0.2", "paper_baseline"] == pytest.approx(82.4)
    assert claims.loc["mrpc", "paper_baseline"] == pytest.approx(87.11)
    assert "GLUE-avg" not in claims.index


def test_missing_runs_are_not_run_with_the_presets_they_need() -> None:
    runs = runs_table(TABLE2_RUNS)
    for key, needs in [
        ("noisytune/figure2", "noisytune_global_gaussian"),
        ("noisytune/figure3", "noisytune+recadam"),
        ("noisytune/figure4", "mrpc@0.2"),
        ("noisytune/figure6", "noisytune_l0.05"),
    ]:
        result = ARTIFACTS[key].build(runs, CONTEXT)
        assert result.status == "not run" and needs in result.reason, key
        assert result.claims is None


def test_figure5_says_which_setting_it_needs(tmp_path: Path) -> None:
    runs = runs_table({("mrpc", "finetune"): [80.0, 81.0], ("mrpc", "noisytune"): [81.0, 82.0]})
    runs["run_dir"] = [str(tmp_path / f"run{i}") for i in range(len(runs))]
    for run_dir in runs["run_dir"]:
        Path(run_dir).mkdir()
        record = {"point": "start", "step": 0, "epoch": 0.0, "groups": {"all": {"l1": 10.0, "numel": 4}}}
        Path(run_dir, "norms.jsonl").write_text(json.dumps(record) + "\n")
    result = ARTIFACTS["noisytune/figure5"].build(runs, CONTEXT)
    assert result.status == "not run" and "norm_checkpoints" in result.reason


def test_crossmethod_costs_and_points_per_extra_hour() -> None:
    result = ARTIFACTS["crossmethod/table"].build(runs_table(TABLE2_RUNS), CONTEXT)
    average = result.claims.set_index("task").loc["GLUE-avg"]
    # 12 vs 6 minutes per run: 0.1 extra hours buys 1.5 points, i.e. 15 points per extra hour.
    assert average["hours_per_run"] == pytest.approx(0.2)
    assert average["baseline_hours_per_run"] == pytest.approx(0.1)
    assert average["points_per_extra_hour"] == pytest.approx(15.0)
    assert average["samples_per_s"] == pytest.approx(25.0)
    assert pd.isna(average["paper_delta"]) and average["verdict"] == "clear gain"


def test_written_result_round_trips(tmp_path: Path) -> None:
    result = ARTIFACTS["noisytune/table2"].build(runs_table(TABLE2_RUNS), CONTEXT)
    record = write_result(result, tmp_path / "table2")
    assert (tmp_path / "table2" / "figure.svg").read_text().startswith("<?xml")
    assert "\\begin{tabular}" in (tmp_path / "table2" / "claims.tex").read_text()
    loaded, claims = read_result(tmp_path / "table2")
    assert loaded == json.loads(json.dumps(record)) and len(claims) == len(result.claims)


def _shifted(base: dict[str, list[float]], method: str, shift: dict[str, float]) -> dict:
    """`method`'s runs: the base scores of each task in `shift`, moved by its shift on every seed."""
    return {(task, method): [v + shift[task] for v in base[task]] for task in shift}


FINETUNE = {"rte": [60.0, 61.0, 62.0], "mrpc": [80.0, 81.0, 82.5], "cola": [30.0, 31.5, 32.0]}


def test_figure6_averages_every_lambda_over_the_tasks_all_of_them_ran() -> None:
    # λ = 0.05 also ran CoLA (+10 there), λ = 0.10 did not: both averages must cover MRPC and RTE only.
    scores = {(task, "finetune"): values for task, values in FINETUNE.items()}
    scores |= _shifted(FINETUNE, "noisytune_l0.05", {"rte": 1.0, "mrpc": 1.0, "cola": 10.0})
    scores |= _shifted(FINETUNE, "noisytune_l0.10", {"rte": 2.0, "mrpc": 2.0})
    result = ARTIFACTS["noisytune/figure6"].build(runs_table(scores), CONTEXT)
    delta = result.claims.set_index("method")["delta"]
    assert delta["noisytune_l0.05"] == pytest.approx(1.0)  # 4.0 with CoLA in its average
    assert delta["noisytune_l0.10"] == pytest.approx(2.0)
    assert "minilm-l6: GLUE-avg is the average over MRPC, RTE, for every method alike." in result.notes


def test_figure3_averages_both_pairs_over_one_task_set() -> None:
    scores = {(task, "recadam"): values for task, values in FINETUNE.items()}
    scores |= _shifted(FINETUNE, "noisytune+recadam", {"rte": 1.0, "mrpc": 1.0, "cola": 10.0})
    scores |= {(task, "mixout"): FINETUNE[task] for task in ("rte", "mrpc")}
    scores |= _shifted(FINETUNE, "noisytune+mixout", {"rte": 2.0, "mrpc": 2.0})
    result = ARTIFACTS["noisytune/figure3"].build(runs_table(scores), CONTEXT)
    delta = result.claims.set_index("method")["delta"]
    assert delta["noisytune+recadam"] == pytest.approx(1.0)  # 4.0 if its own pair's CoLA counted
    assert delta["noisytune+mixout"] == pytest.approx(2.0)
    assert "minilm-l6: GLUE-avg is the average over MRPC, RTE, for every method alike." in result.notes
