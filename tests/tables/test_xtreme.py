"""xtreme.csv from hand-written run directories, and XTREME's per-task and overall averages."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from robustft.tables.xtreme import (
    AVERAGE_METRICS,
    PAPER_NAME,
    XTREME_AVG,
    XTREME_COLUMNS,
    collect_xtreme,
    paper_average_check,
    read_xtreme,
    write_xtreme_table,
    xtreme_average,
    xtreme_run_scores,
)

KIND = {"xnli": "classification", "xquad": "qa", "bucc2018": "retrieval"}


def write_run(
    root: Path,
    task: str,
    languages: dict[str, dict[str, float]] | None,
    method: str = "noisytune",
    seed: int = 1,
    status: str = "ok",
    metrics_names: list[str] | None = None,
    **extra: Any,
) -> Path:
    """A run directory as train-xtreme leaves it; languages=None: only run.json with `status`."""
    run_dir = root / "xlm-r-base" / task / "zero-shot" / method / f"seed{seed}"
    run_dir.mkdir(parents=True)
    if languages is None:
        (run_dir / "run.json").write_text(json.dumps({"status": status, "error": "RuntimeError: boom"}))
        return run_dir
    first = next(iter(languages.values()), {})
    record = {
        "status": status,
        "model": "xlm-r-base",
        "task": task,
        "setting": "zero-shot",
        "method": method,
        "seed": seed,
        "kind": KIND.get(task, "classification"),
        "metrics_names": metrics_names or [k for k in first if k != "n"],
        "eval_split": "test",
        "train_languages": ["en"],
        "languages": languages,
        "layer": None,
        **extra,
    }
    (run_dir / "metrics.json").write_text(json.dumps(record))
    return run_dir


def test_collect_lists_every_language_and_metric_and_counts_failures(tmp_path: Path) -> None:
    write_run(tmp_path, "xnli", {"en": {"accuracy": 0.85, "n": 5010}, "de": {"accuracy": 0.77, "n": 5010}})
    write_run(tmp_path, "xquad", {"en": {"f1": 0.8, "em": 0.7, "n": 1190}})
    bucc = {"de": {"f1": 0.9, "precision": 0.92, "recall": 0.88, "threshold": 0.61, "n": 9580}}
    write_run(tmp_path, "bucc2018", bucc, metrics_names=["f1", "precision", "recall"], layer=7)
    write_run(tmp_path, "xnli", None, method="finetune", status="failed")
    write_run(tmp_path, "xnli", None, method="finetune", seed=2, status="running")  # unfinished: absent
    write_run(tmp_path, "xquad", {}, method="finetune", status="diverged")

    frame = collect_xtreme(tmp_path)
    assert list(frame.columns) == XTREME_COLUMNS
    ok = frame[frame["status"] == "ok"].set_index(["task", "language", "metric"])
    assert ok.loc[("xnli", "de", "accuracy"), "value"] == pytest.approx(0.77)
    assert ok.loc[("xnli", "de", "accuracy"), "n"] == 5010
    assert ok.loc[("xquad", "en", "em"), "value"] == pytest.approx(0.7)
    assert sorted(ok.loc["bucc2018"].index.get_level_values("metric")) == ["f1", "precision", "recall"]
    assert len(ok) == 2 + 2 + 3

    failed = frame[frame["status"] != "ok"].set_index("method")
    assert failed.loc["finetune"].shape[0] == 2  # the failed xnli run and the diverged xquad run
    assert set(failed["status"]) == {"failed", "diverged"} and failed["value"].isna().all()
    assert 2 not in set(frame["seed"])  # the running run is not in the table

    path = write_xtreme_table(frame, tmp_path / "tables")
    assert path == tmp_path / "tables" / "xtreme.csv"
    back = read_xtreme(path)
    assert len(back) == len(frame) and back["language"].notna().sum() == 7
    # The same table from the run directories listed one by one.
    listed = collect_xtreme(sorted(p for p in tmp_path.glob("xlm-r-base/*/*/*/seed*")))
    pd.testing.assert_frame_equal(listed, frame)


def test_collect_refuses_a_run_filed_under_the_wrong_directory(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "xnli", {"en": {"accuracy": 0.8, "n": 10}})
    record = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").write_text(json.dumps({**record, "method": "finetune"}))
    with pytest.raises(ValueError, match="its directory says"):
        collect_xtreme(tmp_path)


def test_collect_refuses_an_ok_run_with_a_missing_score(tmp_path: Path) -> None:
    write_run(tmp_path, "xnli", {"en": {"accuracy": None, "n": 10}}, metrics_names=["accuracy"])
    with pytest.raises(ValueError, match="status is 'ok'"):
        collect_xtreme(tmp_path)


# One run's per-task scores (fractions): task -> metric -> {language: value}.
NINE_TASKS: dict[str, dict[str, dict[str, float]]] = {
    "xnli": {"accuracy": {"en": 0.9, "de": 0.7}},  # mean 0.8
    "pawsx": {"accuracy": {"en": 0.9}},
    "udpos": {"f1": {"en": 0.8, "de": 0.6, "fr": 0.7}},  # mean 0.7
    "panx": {"f1": {"en": 0.6}},
    "bucc2018": {"f1": {"de": 0.5}, "precision": {"de": 0.1}},  # precision never enters the average
    "tatoeba": {"accuracy": {"de": 0.4}},
    "xquad": {"f1": {"en": 0.8}, "em": {"en": 0.6}},
    "mlqa": {"f1": {"en": 0.7}, "em": {"en": 0.5}},
    "tydiqa": {"f1": {"en": 0.6}, "em": {"en": 0.4}},
}
# Categories: pair (0.8 + 0.9)/2 = 0.85, structured (0.7 + 0.6)/2 = 0.65,
# QA ((0.8+0.6)/2 + (0.7+0.5)/2 + (0.6+0.4)/2)/3 = 0.6, retrieval (0.5 + 0.4)/2 = 0.45.
NINE_TASKS_AVERAGE = (0.85 + 0.65 + 0.6 + 0.45) / 4


def table(runs: dict[tuple[str, int], dict[str, dict[str, dict[str, float]]]]) -> pd.DataFrame:
    """(method, seed) -> task -> metric -> language -> value, laid out as xtreme.csv."""
    rows = []
    for (method, seed), tasks in runs.items():
        for task, metrics in tasks.items():
            for metric, languages in metrics.items():
                for language, value in languages.items():
                    rows.append(
                        {
                            "model": "xlm-r-base",
                            "task": task,
                            "setting": "zero-shot",
                            "method": method,
                            "seed": seed,
                            "status": "ok",
                            "language": language,
                            "metric": metric,
                            "value": value,
                            "n": 100,
                            "eval_split": "test",
                            "run_dir": f"results/xtreme/xlm-r-base/{task}/zero-shot/{method}/seed{seed}",
                        }
                    )
    return pd.DataFrame(rows, columns=XTREME_COLUMNS)


def test_run_scores_average_languages_then_tasks_by_category() -> None:
    scores = xtreme_run_scores(table({("finetune", 1): NINE_TASKS}))
    by = scores.set_index(["task", "metric"])
    assert by.loc[("xnli", "accuracy"), "value"] == pytest.approx(0.8)
    assert by.loc[("xnli", "accuracy"), "n_languages"] == 2
    assert by.loc[("udpos", "f1"), "value"] == pytest.approx(0.7)
    assert by.loc[("udpos", "f1"), "languages"] == "de,en,fr"
    assert by.loc[("bucc2018", "precision"), "value"] == pytest.approx(0.1)
    average = by.loc[(XTREME_AVG, "average")]
    assert average["value"] == pytest.approx(NINE_TASKS_AVERAGE)
    assert average["tasks"] == ",".join(PAPER_NAME)


def test_a_run_missing_a_task_gets_no_average() -> None:
    partial = {task: metrics for task, metrics in NINE_TASKS.items() if task != "tatoeba"}
    scores = xtreme_run_scores(table({("finetune", 1): NINE_TASKS, ("finetune", 2): partial}))
    averages = scores[scores["task"] == XTREME_AVG]
    assert list(averages["seed"]) == [1]


def test_average_over_a_subset_keeps_the_category_rule() -> None:
    two = {"xnli": {"accuracy": {"en": 0.8}}, "xquad": {"f1": {"en": 0.8}, "em": {"en": 0.6}}}
    scores = xtreme_run_scores(table({("finetune", 1): two}))
    average = scores.set_index("task").loc[XTREME_AVG]
    assert average["value"] == pytest.approx((0.8 + 0.7) / 2) and average["tasks"] == "xnli,xquad"
    assert xtreme_average({"xnli": {"accuracy": 80.0}, "pawsx": {"accuracy": 90.0}}) == pytest.approx(85.0)


def test_the_rule_reproduces_the_papers_average_column() -> None:
    check = paper_average_check()
    assert len(check) == 8  # 2 models x 2 settings x 2 methods
    # Within half a unit of the printed digit; 70.45 (base, zero-shot, noisytune) is a tie printed as 70.5.
    assert (check["recomputed"] - check["paper_average"]).abs().max() <= 0.05 + 1e-9
    first = check.set_index(["paper_model", "split", "method"]).loc[
        ("xlm-r-base", "test/zero-shot-cross-lingual", "finetune")
    ]
    assert first["recomputed"] == pytest.approx(69.954, abs=1e-3) and first["paper_average"] == 70.0
    # The plain mean of the nine primary metrics (QA by F1) misses the printed 70.0 by more than a point.
    nine = (74.8 + 84.8 + 75.5 + 61.6 + 77.6 + 73.8 + 71.9 + 65.2 + 55.5) / 9
    assert abs(nine - 70.0) > 1.0


def test_task_names_agree_with_the_data_registry() -> None:
    xtreme = pytest.importorskip("robustft.data.xtreme")
    for key, paper_name in PAPER_NAME.items():
        task = xtreme.XTREME_TASKS[key]
        assert task.paper_name == paper_name
        assert task.primary_metric == AVERAGE_METRICS[key][0]
        assert set(AVERAGE_METRICS[key]) <= set(task.metrics)
    assert math.isclose(NINE_TASKS_AVERAGE, 0.6375)


# --- xtreme_curves.csv -------------------------------------------------------------------------------------


def write_history(run_dir: Path, losses: list[float], steps: list[int]) -> None:
    """history.jsonl as the Trainer logs an XTREME run: training logs, then the closing record."""
    records = [
        {"step": step, "epoch": step / steps[-1], "loss": loss, "learning_rate": 1e-5}
        for step, loss in zip(steps, losses, strict=True)
    ]
    records.append({"step": steps[-1], "epoch": 1.0, "train_loss": 0.5, "train_runtime": 3.0})
    (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_curves_hold_each_training_log_and_the_one_evaluation_after_training(tmp_path: Path) -> None:
    from robustft.tables.curves import seed_bands
    from robustft.tables.xtreme import XTREME_CURVE_COLUMNS, collect_xtreme_curves

    # XNLI, two seeds per method; the score of a run is its primary metric averaged over its languages.
    scores = {("finetune", 1): (0.80, 0.60), ("finetune", 2): (0.84, 0.70), ("noisytune", 1): (0.82, 0.66)}
    losses = {("finetune", 1): [1.1, 0.9], ("finetune", 2): [1.0, 0.7], ("noisytune", 1): [1.2, 0.8]}
    for (method, seed), (en, de) in scores.items():
        languages = {"en": {"accuracy": en, "n": 10}, "de": {"accuracy": de, "n": 10}}
        run_dir = write_run(tmp_path, "xnli", languages, method=method, seed=seed, primary_metric="accuracy")
        write_history(run_dir, losses[(method, seed)], [1, 8])
    failed = write_run(tmp_path, "xnli", None, method="noisytune", seed=2, status="failed")
    write_history(failed, [1.3, float("nan")], [1, 8])
    write_run(tmp_path, "bucc2018", {"de": {"f1": 0.9, "n": 5}})  # trains nothing: no history, no curve

    curves = collect_xtreme_curves(collect_xtreme(tmp_path))

    assert list(curves.columns) == XTREME_CURVE_COLUMNS
    assert set(curves["task"]) == {"xnli"}
    evaluations = curves.dropna(subset=["eval_score"])
    assert len(evaluations) == 3  # one per ok run; the failed run has its training logs only
    first = evaluations.loc[(evaluations["method"] == "finetune") & (evaluations["seed"] == 1)].iloc[0]
    assert (first["step"], first["epoch"]) == (8, 1.0)  # where training ended
    assert (first["metric"], first["eval_split"], first["n_languages"]) == ("accuracy", "test", 2)
    assert first["eval_score"] == pytest.approx(70.0)  # (80 + 60) / 2, in points
    failed_rows = curves.loc[curves["status"] == "failed"]
    assert len(failed_rows) == 2 and math.isnan(failed_rows["train_loss"].iloc[1])

    ok = curves.loc[curves["status"] == "ok"]
    loss_bands = seed_bands(ok, "step", "train_loss")
    finetune_end = loss_bands.loc[(loss_bands["method"] == "finetune") & (loss_bands["step"] == 8)].iloc[0]
    assert finetune_end["mean"] == pytest.approx(0.8) and finetune_end["n"] == 2
    assert finetune_end["std"] == pytest.approx(math.sqrt(0.02))  # sample std of 0.9 and 0.7
    score_bands = seed_bands(ok, "epoch", "eval_score")
    finetune_score = score_bands.loc[score_bands["method"] == "finetune"].iloc[0]
    assert finetune_score["mean"] == pytest.approx((70.0 + 77.0) / 2)
    assert finetune_score["std"] == pytest.approx(math.sqrt(2 * 3.5**2))


def test_collect_xtreme_command_writes_the_curves_beside_the_table(tmp_path: Path) -> None:
    from robustft.cli import main

    run_dir = write_run(
        tmp_path / "runs", "xnli", {"en": {"accuracy": 0.5, "n": 4}}, primary_metric="accuracy"
    )
    write_history(run_dir, [1.0, 0.8], [1, 4])
    out = tmp_path / "tables" / "xtreme.csv"
    assert main(["collect-xtreme", "--out", str(out), str(run_dir)]) == 0
    curves = pd.read_csv(out.parent / "xtreme_curves.csv")
    assert curves["train_loss"].dropna().tolist() == pytest.approx([1.0, 0.8])
    assert curves["eval_score"].dropna().tolist() == pytest.approx([50.0])
