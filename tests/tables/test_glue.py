"""Tables from a hand-made runs tree whose means, t statistics and Holm adjustments are worked out below."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from robustft.tables import (
    COMPARISON_COLUMNS,
    SUMMARY_COLUMNS,
    average_tasks,
    collect_curves,
    collect_runs,
    compare,
    summarize,
    write_tables,
)

MODEL = "bert-base"
PRIMARY = {"RTE": "accuracy", "CoLA": "mcc"}

# (task, method, seed) -> primary metric as a fraction, or a non-ok status.
GRID = {
    ("RTE", "finetune", 1): 0.60,
    ("RTE", "finetune", 2): 0.62,
    ("RTE", "finetune", 3): 0.64,
    ("RTE", "noisytune", 1): 0.63,
    ("RTE", "noisytune", 2): 0.64,
    ("RTE", "noisytune", 3): 0.66,
    ("RTE", "noisytune", 4): "diverged",
    ("CoLA", "finetune", 1): 0.50,
    ("CoLA", "finetune", 2): 0.55,
    ("CoLA", "finetune", 3): 0.52,
    ("CoLA", "finetune", 4): "failed",
    ("CoLA", "noisytune", 1): 0.52,
    ("CoLA", "noisytune", 2): 0.56,
    ("CoLA", "noisytune", 3): 0.55,
    ("CoLA", "noisytune", 4): 0.60,  # its baseline failed, so it is never paired
}


def write_run(root: Path, task: str, method: str, seed: int, result: float | str) -> Path:
    run_dir = root / MODEL / task / method / f"seed{seed}"
    run_dir.mkdir(parents=True)
    ok = not isinstance(result, str)
    metrics = {PRIMARY[task]: result, "eval_loss": 0.7} if ok else {"eval_loss": 12.5}
    record = {
        "status": "ok" if ok else result,
        "model": MODEL,
        "task": task,
        "method": method,
        "seed": seed,
        "primary_metric": PRIMARY[task],
        "metrics": metrics,
        "epoch": 3.0,
        "n_train": 2490,
        "n_eval": 277,
        "train_runtime_s": 100.0,
        "train_samples_per_second": 74.7,
    }
    (run_dir / "metrics.json").write_text(json.dumps(record))
    run_info = {"git_commit": "abc123", "config_hash": f"h{seed}", "wall_time_s": 120.5, "slurm_job_id": None}
    # One run of the grid trained in bf16, so a test can tell the column is read per run.
    used = "bf16" if (task, method, seed) == ("RTE", "noisytune", 2) else "fp32"
    run_info["precision"] = {"requested": "auto", "used": used, "why": f"auto: {used}, test"}
    (run_dir / "run.json").write_text(json.dumps(run_info))
    return run_dir


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "results" / "runs"
    for (task, method, seed), result in GRID.items():
        write_run(root, task, method, seed, result)
    # Started but not finished: only run.json exists, so it must not be counted anywhere.
    unfinished = root / MODEL / "CoLA" / "noisytune" / "seed5"
    unfinished.mkdir(parents=True)
    (unfinished / "run.json").write_text(json.dumps({"git_commit": "abc123"}))
    return root


def row(table: pd.DataFrame, **keys) -> pd.Series:
    match = table.loc[np.logical_and.reduce([table[k] == v for k, v in keys.items()])]
    assert len(match) == 1, f"expected one row for {keys}, found {len(match)}"
    return match.iloc[0]


# --- collect_runs ------------------------------------------------------------------------------------------


def test_collect_runs_columns_and_rows(runs_root):
    runs = collect_runs(runs_root)
    assert list(runs.columns) == [
        *["model", "task", "method", "seed", "status", "metric", "score"],
        *["m_accuracy", "m_eval_loss", "m_mcc"],
        *["n_train", "n_eval", "epoch", "train_runtime_s", "train_samples_per_second"],
        *["degenerate", "diverged_because"],
        *["wall_time_s", "finished_at", "git_commit", "config_hash", "slurm_job_id"],
        *["precision", "precision_why", "run_dir"],
    ]
    assert len(runs) == len(GRID)  # the unfinished seed5 is not there
    assert 5 not in set(runs["seed"])
    assert list(runs[["task", "method", "seed"]].itertuples(index=False, name=None))[:4] == [
        ("CoLA", "finetune", 1),
        ("CoLA", "finetune", 2),
        ("CoLA", "finetune", 3),
        ("CoLA", "finetune", 4),
    ]


def test_collect_runs_scales_to_points_except_losses(runs_root):
    runs = collect_runs(runs_root)
    rte = row(runs, task="RTE", method="noisytune", seed=1)
    assert rte["score"] == pytest.approx(63.0)
    assert rte["m_accuracy"] == pytest.approx(63.0)
    assert rte["m_eval_loss"] == pytest.approx(0.7)
    assert math.isnan(rte["m_mcc"])
    assert rte["metric"] == "accuracy"
    assert (rte["git_commit"], rte["config_hash"], rte["wall_time_s"]) == ("abc123", "h1", 120.5)
    assert rte["run_dir"] == str(runs_root / MODEL / "RTE" / "noisytune" / "seed1")


def test_collect_runs_carries_the_precision_each_run_used(runs_root):
    runs = collect_runs(runs_root)
    assert row(runs, task="RTE", method="noisytune", seed=2)["precision"] == "bf16"
    assert row(runs, task="RTE", method="noisytune", seed=2)["precision_why"] == "auto: bf16, test"
    assert (runs["precision"] == "fp32").sum() == len(runs) - 1


def test_collect_runs_keeps_non_ok_runs_without_a_score(runs_root):
    runs = collect_runs(runs_root)
    diverged = row(runs, task="RTE", method="noisytune", seed=4)
    assert diverged["status"] == "diverged"
    assert math.isnan(diverged["score"])
    assert diverged["m_eval_loss"] == pytest.approx(12.5)
    assert row(runs, task="CoLA", method="finetune", seed=4)["status"] == "failed"


def test_collect_runs_expected_restricts_to_grid_without_reading_others(runs_root):
    (runs_root / MODEL / "CoLA" / "noisytune" / "seed1" / "metrics.json").write_text("{broken")
    expected = [(MODEL, "RTE", "finetune", 1), (MODEL, "RTE", "noisytune", 4), (MODEL, "RTE", "smart", 1)]
    runs = collect_runs(runs_root, expected=expected)
    assert list(runs[["method", "seed"]].itertuples(index=False, name=None)) == [
        ("finetune", 1),
        ("noisytune", 4),
    ]


def test_empty_root_gives_empty_tables_with_headers(tmp_path):
    runs = collect_runs(tmp_path / "runs")
    summary, comparisons = summarize(runs), compare(runs)
    assert runs.empty and "score" in runs.columns
    assert summary.empty and list(summary.columns) == SUMMARY_COLUMNS
    assert comparisons.empty and list(comparisons.columns) == COMPARISON_COLUMNS
    write_tables(runs, summary, comparisons, tmp_path / "tables")
    assert (tmp_path / "tables" / "comparisons.csv").read_text().startswith("model,task,method,baseline,")
    assert "\\toprule" in (tmp_path / "tables" / "summary.tex").read_text()


def test_malformed_metrics_json_names_the_file(runs_root):
    bad = runs_root / MODEL / "RTE" / "finetune" / "seed2" / "metrics.json"
    bad.write_text('{"status": "ok", "model": ')
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        collect_runs(runs_root)


def test_metrics_json_missing_keys_names_the_file_and_keys(runs_root):
    bad = runs_root / MODEL / "RTE" / "finetune" / "seed2" / "metrics.json"
    record = json.loads(bad.read_text())
    del record["primary_metric"], record["metrics"]
    bad.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=re.escape(str(bad)) + r".*primary_metric.*metrics"):
        collect_runs(runs_root)


def test_metrics_json_in_the_wrong_directory_is_an_error(runs_root):
    moved = runs_root / MODEL / "RTE" / "finetune" / "seed2" / "metrics.json"
    record = json.loads(moved.read_text())
    moved.write_text(json.dumps({**record, "seed": 7}))
    with pytest.raises(ValueError, match=re.escape(str(moved)) + ".*directory"):
        collect_runs(runs_root)


def test_ok_run_with_nan_score_is_an_error(runs_root):
    bad = runs_root / MODEL / "RTE" / "finetune" / "seed2" / "metrics.json"
    record = json.loads(bad.read_text())
    bad.write_text(json.dumps({**record, "metrics": {"accuracy": None, "eval_loss": 0.7}}))
    with pytest.raises(ValueError, match=re.escape(str(bad)) + ".*accuracy is None"):
        collect_runs(runs_root)


# --- summarize ---------------------------------------------------------------------------------------------


def test_summarize_counts_and_moments(runs_root):
    summary = summarize(collect_runs(runs_root))
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert len(summary) == 6  # 2 tasks x 2 methods + one average per method

    rte = row(summary, task="RTE", method="noisytune")
    assert (rte["metric"], rte["n"], rte["n_diverged"], rte["n_failed"]) == ("accuracy", 3, 1, 0)
    assert rte["mean"] == pytest.approx(193 / 3)  # the diverged seed is not averaged in
    assert rte["std"] == pytest.approx(math.sqrt((16 / 9 + 1 / 9 + 25 / 9) / 2))

    cola = row(summary, task="CoLA", method="finetune")
    assert (cola["metric"], cola["n"], cola["n_diverged"], cola["n_failed"]) == ("mcc", 3, 0, 1)
    assert cola["mean"] == pytest.approx(157 / 3)
    assert row(summary, task="CoLA", method="noisytune")["n"] == 4


def test_summarize_average_uses_only_seeds_complete_on_every_task(runs_root):
    summary = summarize(collect_runs(runs_root))
    assert list(summary["task"]) == ["CoLA", "CoLA", "RTE", "RTE", "GLUE-avg", "GLUE-avg"]
    avg = row(summary, task="GLUE-avg", method="noisytune")
    # Seed 4 diverged on RTE, so only seeds 1-3: (63+52)/2, (64+56)/2, (66+55)/2.
    assert (avg["metric"], avg["n"], avg["n_diverged"]) == ("average", 3, 1)
    assert avg["mean"] == pytest.approx((57.5 + 60.0 + 60.5) / 3)
    assert avg["std"] == pytest.approx(np.std([57.5, 60.0, 60.5], ddof=1))
    assert row(summary, task="GLUE-avg", method="finetune")["mean"] == pytest.approx((55 + 58.5 + 58) / 3)


def test_task_variants_on_part_of_the_data_are_compared_but_never_averaged(runs_root, monkeypatch):
    monkeypatch.setitem(PRIMARY, "RTE@0.5", "accuracy")
    for seed, (base, noisy) in enumerate([(0.40, 0.45), (0.42, 0.43)], start=1):
        write_run(runs_root, "RTE@0.5", "finetune", seed, base)
        write_run(runs_root, "RTE@0.5", "noisytune", seed, noisy)
    runs = collect_runs(runs_root)
    summary, comparisons = summarize(runs), compare(runs, n_boot=200)
    assert row(summary, task="RTE@0.5", method="finetune")["mean"] == pytest.approx(41.0)
    # The averages are exactly those of the full-data tasks alone (see the test above).
    assert row(summary, task="GLUE-avg", method="finetune")["mean"] == pytest.approx((55 + 58.5 + 58) / 3)
    assert row(comparisons, task="RTE@0.5")["delta"] == pytest.approx(3.0)
    assert row(comparisons, task="GLUE-avg")["delta"] == pytest.approx(13 / 6)


def test_other_benchmarks_and_variants_stay_out_of_the_average_and_its_holm_family(runs_root, monkeypatch):
    monkeypatch.setitem(PRIMARY, "snli", "accuracy")
    monkeypatch.setitem(PRIMARY, "RTE@0.5", "accuracy")
    for seed, (base, noisy) in enumerate([(0.80, 0.90), (0.81, 0.95), (0.79, 0.90)], start=1):
        write_run(runs_root, "snli", "finetune", seed, base)
        write_run(runs_root, "snli", "noisytune", seed, noisy)
        write_run(runs_root, "RTE@0.5", "finetune", seed, base - 0.2)
        write_run(runs_root, "RTE@0.5", "noisytune", seed, noisy - 0.2)
    runs = collect_runs(runs_root)
    summary, comparisons = summarize(runs), compare(runs, n_boot=200)
    # Exactly the averages of RTE and CoLA alone (see the tests above).
    assert row(summary, task="GLUE-avg", method="finetune")["mean"] == pytest.approx((55 + 58.5 + 58) / 3)
    assert row(comparisons, task="GLUE-avg")["delta"] == pytest.approx(13 / 6)
    # RTE's and CoLA's Holm-adjusted p are those of their own two-task family.
    assert row(comparisons, task="RTE")["p_holm"] == pytest.approx(0.0396079, abs=1e-6)
    assert row(comparisons, task="CoLA")["p_holm"] == pytest.approx(0.0741799, abs=1e-6)
    # The others (snli, RTE@0.5) form a second family of two: Holm multiplies the smaller p by 2.
    others = comparisons[comparisons["task"].isin(["snli", "RTE@0.5"])].sort_values("p_ttest")
    smaller, larger = others["p_ttest"].tolist()
    assert others["p_holm"].tolist() == pytest.approx([min(1, 2 * smaller), max(min(1, 2 * smaller), larger)])


def _with_mrpc_and_mixout(runs_root: Path) -> pd.DataFrame:
    """finetune and mixout also ran MRPC, noisytune did not; mixout is finetune + 1 point (+5 on MRPC)."""
    for seed, value in enumerate([0.80, 0.82, 0.84], start=1):
        write_run(runs_root, "MRPC", "finetune", seed, value)
        write_run(runs_root, "MRPC", "mixout", seed, value + 0.05)
        write_run(runs_root, "RTE", "mixout", seed, GRID[("RTE", "finetune", seed)] + 0.01)
        write_run(runs_root, "CoLA", "mixout", seed, GRID[("CoLA", "finetune", seed)] + 0.01)
    return collect_runs(runs_root)


def test_a_table_of_methods_averages_the_tasks_every_one_of_them_ran(runs_root, monkeypatch):
    """A table showing all three methods: every average row covers CoLA and RTE only, and says so,
    rather than mix 2-task and 3-task averages; a table of finetune and mixout keeps MRPC."""
    monkeypatch.setitem(PRIMARY, "MRPC", "accuracy")
    runs = _with_mrpc_and_mixout(runs_root)
    assert average_tasks(runs) == {MODEL: ["CoLA", "RTE"]}
    assert average_tasks(runs, ["finetune", "mixout"]) == {MODEL: ["CoLA", "MRPC", "RTE"]}
    # A method with no run of the model does not empty the set.
    assert average_tasks(runs, ["finetune", "mixout", "smart"]) == {MODEL: ["CoLA", "MRPC", "RTE"]}

    shared = average_tasks(runs)
    summary = summarize(runs, average_over=shared)
    comparisons = compare(runs, n_boot=200, average_over=shared)
    averages = summary[summary["task"] == "GLUE-avg"]
    assert sorted(averages["method"]) == ["finetune", "mixout", "noisytune"]
    assert set(averages["average_over"]) == {"CoLA;RTE"}
    # finetune's average is over CoLA and RTE alone (as in the two-task tests above), MRPC left out.
    assert row(summary, task="GLUE-avg", method="finetune")["mean"] == pytest.approx((55 + 58.5 + 58) / 3)
    assert row(summary, task="GLUE-avg", method="mixout")["mean"] == pytest.approx((56 + 59.5 + 59) / 3)
    assert row(summary, task="MRPC", method="finetune")["n"] == 3  # still reported as a task

    compared = comparisons[comparisons["task"] == "GLUE-avg"]
    assert sorted(compared["method"]) == ["mixout", "noisytune"]
    assert set(compared["average_over"]) == {"CoLA;RTE"}
    assert row(comparisons, task="GLUE-avg", method="mixout")["delta"] == pytest.approx(1.0)
    assert row(comparisons, task="MRPC", method="mixout")["delta"] == pytest.approx(5.0)
    assert summary.loc[summary["task"] != "GLUE-avg", "average_over"].isna().all()


def test_csv_average_rows_stand_alone_so_a_method_run_on_fewer_tasks_shrinks_no_other(runs_root, monkeypatch):
    """summary.csv: each method's average over the tasks it ran; comparisons.csv: over those it and the
    baseline both ran. noisytune's 2 tasks never shrink finetune's or mixout's 3-task average."""
    monkeypatch.setitem(PRIMARY, "MRPC", "accuracy")
    runs = _with_mrpc_and_mixout(runs_root)
    summary, comparisons = summarize(runs), compare(runs, n_boot=200)
    named = summary[summary["task"] == "GLUE-avg"].set_index("method")["average_over"].to_dict()
    assert named == {"finetune": "CoLA;MRPC;RTE", "mixout": "CoLA;MRPC;RTE", "noisytune": "CoLA;RTE"}
    # Seeds 1-3 of finetune: (50+60+80)/3, (55+62+82)/3, (52+64+84)/3.
    assert row(summary, task="GLUE-avg", method="finetune")["mean"] == pytest.approx((190 + 199 + 200) / 9)
    compared = comparisons[comparisons["task"] == "GLUE-avg"].set_index("method")
    assert compared["average_over"].to_dict() == {"mixout": "CoLA;MRPC;RTE", "noisytune": "CoLA;RTE"}
    assert compared.loc["mixout", "delta"] == pytest.approx((1 + 1 + 5) / 3)
    assert compared.loc["noisytune", "delta"] == pytest.approx(13 / 6)  # its pair shares CoLA and RTE only


def test_compare_average_over_sets_the_task_set(runs_root):
    """A table assembled from several compare calls passes one task set to all of them."""
    runs = collect_runs(runs_root)
    shared = row(compare(runs, n_boot=200, average_over={MODEL: ["CoLA", "RTE"]}), task="GLUE-avg")
    assert shared["average_over"] == "CoLA;RTE" and shared["delta"] == pytest.approx(13 / 6)
    assert "GLUE-avg" not in set(compare(runs, n_boot=200, average_over={MODEL: ["RTE"]})["task"])


def test_summarize_single_task_has_no_average_and_single_seed_has_no_std(tmp_path):
    write_run(tmp_path, "RTE", "finetune", 1, 0.6)
    summary = summarize(collect_runs(tmp_path), avg_name="avg")
    assert list(summary["task"]) == ["RTE"]
    assert summary.loc[0, "n"] == 1 and math.isnan(summary.loc[0, "std"])


# --- compare -----------------------------------------------------------------------------------------------


def test_compare_pins_paired_statistics(runs_root):
    comparisons = compare(collect_runs(runs_root), n_boot=2000)
    assert list(comparisons.columns) == COMPARISON_COLUMNS
    assert list(comparisons["task"]) == ["CoLA", "RTE", "GLUE-avg"]
    assert set(comparisons["method"]) == {"noisytune"} and set(comparisons["baseline"]) == {"finetune"}

    # RTE differences 3, 2, 2: mean 7/3, sd 1/sqrt(3), so t = (7/3) / (1/3) = 7 on 2 df.
    rte = row(comparisons, task="RTE")
    assert rte["n_pairs"] == 3 and rte["metric"] == "accuracy"
    assert rte["delta"] == pytest.approx(7 / 3)
    assert rte["delta"] == pytest.approx(rte["mean_method"] - rte["mean_baseline"])
    assert rte["sd_diff"] == pytest.approx(1 / math.sqrt(3))
    assert rte["p_ttest"] == pytest.approx(2 * sps.t.sf(7.0, 2), rel=1e-6)
    assert rte["p_wilcoxon"] == pytest.approx(0.25)  # 3 positive pairs: 2 / 2**3
    assert 2.0 <= rte["ci_low"] <= rte["delta"] <= rte["ci_high"] <= 3.0

    # CoLA: seed 4 is unpaired (baseline failed); differences 2, 1, 3 give t = 2 / (1/sqrt(3)).
    cola = row(comparisons, task="CoLA")
    assert cola["n_pairs"] == 3 and cola["metric"] == "mcc"
    assert cola["mean_method"] == pytest.approx((52 + 56 + 55) / 3)
    assert cola["p_ttest"] == pytest.approx(2 * sps.t.sf(2 * math.sqrt(3), 2), rel=1e-6)

    # Holm over the two tasks: 2 * 0.019804 = 0.039608, then max(0.074180, 0.039608).
    assert rte["p_holm"] == pytest.approx(0.0396079, abs=1e-6)
    assert cola["p_holm"] == pytest.approx(0.0741799, abs=1e-6)


def test_compare_average_row(runs_root):
    avg = row(compare(collect_runs(runs_root), n_boot=2000), task="GLUE-avg")
    # Per-seed averages 57.5, 60, 60.5 vs 55, 58.5, 58: differences 2.5, 1.5, 2.5, t = (13/6) / (1/3) = 6.5.
    assert avg["metric"] == "average" and avg["n_pairs"] == 3
    assert avg["delta"] == pytest.approx(13 / 6)
    assert avg["p_ttest"] == pytest.approx(2 * sps.t.sf(6.5, 2), rel=1e-6)
    assert math.isnan(avg["p_holm"])  # not part of the per-task family
    # Effect size d_z = (13/6) / (1/sqrt(3)) = 3.75: a power calculation gives 3 seeds.
    assert avg["min_seeds_for_significance"] == 3


def test_compare_is_deterministic_and_handles_unpaired_tasks(tmp_path):
    write_run(tmp_path, "RTE", "finetune", 1, 0.6)
    write_run(tmp_path, "RTE", "smart", 2, 0.7)  # no seed in common
    first, second = compare(collect_runs(tmp_path)), compare(collect_runs(tmp_path))
    pd.testing.assert_frame_equal(first, second)
    only = first.iloc[0]
    assert only["n_pairs"] == 0
    assert only[["delta", "ci_low", "ci_high", "p_ttest", "p_wilcoxon", "p_holm"]].isna().all()
    assert pd.isna(only["min_seeds_for_significance"])


# --- write_tables ------------------------------------------------------------------------------------------


def test_write_tables_csv_is_lossless_and_latex_is_formatted(runs_root, tmp_path):
    runs = collect_runs(runs_root)
    summary, comparisons = summarize(runs), compare(runs, n_boot=500)
    out = tmp_path / "tables"
    write_tables(runs, summary, comparisons, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "comparisons.csv",
        "comparisons.tex",
        "runs.csv",
        "summary.csv",
        "summary.tex",
    ]  # no temporary files left behind

    back = pd.read_csv(out / "summary.csv")
    assert list(back.columns) == SUMMARY_COLUMNS
    np.testing.assert_array_equal(back["mean"].to_numpy(), summary["mean"].to_numpy())  # not rounded
    back = pd.read_csv(out / "comparisons.csv")
    np.testing.assert_array_equal(back["p_ttest"].to_numpy(), comparisons["p_ttest"].to_numpy())
    assert len(pd.read_csv(out / "runs.csv")) == len(runs)

    summary_tex = (out / "summary.tex").read_text()
    assert "\\toprule" in summary_tex and "\\bottomrule" in summary_tex
    assert "64.33" in summary_tex and "64.333" not in summary_tex  # RTE noisytune mean, 2 decimals
    assert "n\\_diverged" in summary_tex  # headers are LaTeX-escaped

    comparisons_tex = (out / "comparisons.tex").read_text()
    assert "0.0198" in comparisons_tex and "0.01980" not in comparisons_tex  # p-values, 3 significant
    assert "2.33" in comparisons_tex
    assert "--" in comparisons_tex  # the average row has no Holm p-value


def _mark_degenerate(root: Path, task: str, method: str, seeds: list[int]) -> None:
    """Record in metrics.json, as the trainer does, that these runs predicted one class for all of dev."""
    for seed in seeds:
        path = root / MODEL / task / method / f"seed{seed}" / "metrics.json"
        record = json.loads(path.read_text())
        record["degenerate"] = True
        path.write_text(json.dumps(record))


def test_degenerate_runs_stay_averaged_and_are_counted(runs_root):
    _mark_degenerate(runs_root, "RTE", "finetune", [1, 2, 3])
    _mark_degenerate(runs_root, "CoLA", "noisytune", [2])
    runs = collect_runs(runs_root)
    assert row(runs, task="RTE", method="finetune", seed=1)["degenerate"] == True  # noqa: E712
    assert pd.isna(row(runs, task="RTE", method="noisytune", seed=1)["degenerate"])  # not recorded
    summary = summarize(runs)
    rte = row(summary, task="RTE", method="finetune")
    assert (rte["n"], rte["n_degenerate"]) == (3, 3)
    assert rte["mean"] == pytest.approx(62.0)  # a real outcome: still in the mean
    assert row(summary, task="CoLA", method="noisytune")["n_degenerate"] == 1
    assert row(summary, task="RTE", method="noisytune")["n_degenerate"] == 0
    # The average's seeds 1-3 of finetune each have a degenerate task run; noisytune's seed 2 has one.
    assert row(summary, task="GLUE-avg", method="finetune")["n_degenerate"] == 3
    assert row(summary, task="GLUE-avg", method="noisytune")["n_degenerate"] == 1


def test_compare_counts_diverged_runs_beside_the_pairs(runs_root):
    comparisons = compare(collect_runs(runs_root), n_boot=200)
    rte = row(comparisons, task="RTE", method="noisytune")
    assert rte["n_pairs"] == 3 and (rte["n_diverged_method"], rte["n_diverged_baseline"]) == (1, 0)
    cola = row(comparisons, task="CoLA", method="noisytune")
    assert (cola["n_diverged_method"], cola["n_diverged_baseline"]) == (0, 0)  # a failed run is not diverged
    assert row(comparisons, task="GLUE-avg", method="noisytune")["n_diverged_method"] == 1


# --- curves.csv --------------------------------------------------------------------------------------------


def _write_history(run_dir: Path, lines: list[str]) -> None:
    (run_dir / "history.jsonl").write_text("".join(line + "\n" for line in lines))


def _history(metric: str, dev: float) -> list[str]:
    """A run's history as the Trainer logs it: two training logs, one dev evaluation, the closing record."""
    records = [
        {"epoch": 0.05, "grad_norm": 1.5, "learning_rate": 0.0, "loss": 0.70, "step": 1},
        {"epoch": 0.5, "grad_norm": 0.8, "learning_rate": 5e-5, "loss": 0.65, "step": 10},
        {
            "epoch": 1.0,
            f"eval_dev_{metric}": dev,
            "eval_dev_loss": 0.66,
            "eval_dev_examples": 277,
            "eval_dev_runtime": 1.2,
            "step": 20,
        },
        {"epoch": 1.0, "step": 20, "train_loss": 0.67, "train_runtime": 44.0, "total_flos": 1.0},
    ]
    return [json.dumps(record) for record in records]


def test_collect_curves_has_one_row_per_logged_point_of_each_counted_run(runs_root):
    rte = runs_root / MODEL / "RTE" / "finetune" / "seed1"
    _write_history(rte, _history("accuracy", 0.61))
    cola = runs_root / MODEL / "CoLA" / "noisytune" / "seed2"
    # A fragment left by a writer killed mid-line, closed by the next append: skipped, not an error.
    _write_history(cola, ['{"epoch": 0.3, "lo', *_history("mcc", 0.25)])
    diverged = runs_root / MODEL / "RTE" / "noisytune" / "seed4"
    _write_history(diverged, [json.dumps({"epoch": 0.05, "loss": float("nan"), "step": 1})])
    # An unfinished run (no metrics.json) is not in the tables, so its history is not either.
    _write_history(runs_root / MODEL / "CoLA" / "noisytune" / "seed5", _history("mcc", 0.9))

    curves = collect_curves(collect_runs(runs_root))

    assert list(curves.columns) == [
        *["model", "task", "method", "seed", "status", "step", "epoch"],
        *["train_loss", "metric", "dev_score", "dev_loss", "baseline_score", "dev_examples"],
    ]
    assert curves["baseline_score"].isna().all()  # these runs predate metrics.json's constant_baseline
    # Runs without history.jsonl have no rows; the closing record of each run is not a point.
    assert len(curves) == 3 + 3 + 1
    first = curves.loc[(curves["task"] == "RTE") & (curves["method"] == "finetune")]
    assert first["seed"].tolist() == [1, 1, 1]
    assert first["step"].tolist() == [1, 10, 20]
    assert first["epoch"].tolist() == pytest.approx([0.05, 0.5, 1.0])
    assert first["train_loss"].iloc[:2].tolist() == pytest.approx([0.70, 0.65])
    assert first["train_loss"].iloc[2:].isna().all()
    assert first["dev_score"].iloc[:2].isna().all() and first["dev_loss"].iloc[:2].isna().all()
    assert first["dev_score"].iloc[2] == pytest.approx(61.0)  # points, as runs.csv's score
    assert first["dev_loss"].iloc[2] == pytest.approx(0.66)  # a loss stays a loss
    assert first["dev_examples"].iloc[2] == 277 and first["dev_examples"].iloc[:2].isna().all()
    mcc = row(curves, task="CoLA", method="noisytune", step=20)
    assert (mcc["metric"], mcc["seed"], mcc["status"]) == ("mcc", 2, "ok")
    assert mcc["dev_score"] == pytest.approx(25.0)
    blown = row(curves, task="RTE", method="noisytune")
    assert blown["status"] == "diverged" and math.isnan(blown["train_loss"])


def test_collect_curves_of_runs_without_history_is_empty_with_headers(runs_root):
    curves = collect_curves(collect_runs(runs_root))
    assert curves.empty
    assert "dev_score" in curves.columns


def test_aggregate_writes_the_curves_of_exactly_the_runs_it_reads(runs_root, tmp_path):
    from robustft.cli import main

    ours = runs_root / MODEL / "RTE" / "finetune" / "seed1"
    other = runs_root / MODEL / "RTE" / "finetune" / "seed2"
    _write_history(ours, _history("accuracy", 0.61))
    _write_history(other, _history("accuracy", 0.99))
    out = tmp_path / "tables"
    args = ["aggregate", "--runs", str(runs_root), "--out", str(out), str(ours / "metrics.json")]
    assert main(args) == 0
    curves = pd.read_csv(out / "curves.csv")
    assert curves["seed"].tolist() == [1, 1, 1]
    assert curves["dev_score"].dropna().tolist() == pytest.approx([61.0])
