"""Learning curves over seeds: curves.csv from hand-made run logs, then the mean and std per step."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest

from robustft.tables import collect_curves, collect_runs
from robustft.tables.curves import seed_bands

MODEL = "bert-base"
# (method, seed) -> training loss at steps 1, 10, 20 and dev accuracy (fraction) at epochs 1 and 2.
LOSSES = {
    ("finetune", 1): [0.70, 0.60, 0.50],
    ("finetune", 2): [0.72, 0.58, 0.41],
    ("finetune", 3): [0.69, 0.65, 0.47],
    ("noisytune", 1): [0.71, 0.55, 0.45],
    ("noisytune", 2): [0.75, 0.61, 0.52],
}
DEV = {
    ("finetune", 1): [0.60, 0.64],
    ("finetune", 2): [0.58, 0.66],
    ("finetune", 3): [0.61, 0.62],
    ("noisytune", 1): [0.63, 0.67],
    ("noisytune", 2): [0.59, 0.70],
}
STEPS = [1, 10, 20]
MAJORITY = 0.527  # dev accuracy of predicting the training split's majority class


def write_run(root: Path, method: str, seed: int, baseline: bool = True) -> Path:
    """A finished RTE run as train_run leaves it: metrics.json and the Trainer's log in history.jsonl."""
    run_dir = root / MODEL / "RTE" / method / f"seed{seed}"
    run_dir.mkdir(parents=True)
    dev = DEV[(method, seed)]
    record = {
        "status": "ok",
        "model": MODEL,
        "task": "RTE",
        "method": method,
        "seed": seed,
        "primary_metric": "accuracy",
        "metrics": {"accuracy": dev[-1], "eval_loss": 0.6},
    }
    if baseline:
        record["constant_baseline"] = {"prediction": 1, "metrics": {"accuracy": MAJORITY}}
    (run_dir / "metrics.json").write_text(json.dumps(record))
    history = [
        {"step": step, "epoch": step / 10, "loss": loss, "learning_rate": 1e-5}
        for step, loss in zip(STEPS, LOSSES[(method, seed)], strict=True)
    ]
    history += [
        {"step": 10 * epoch, "epoch": float(epoch), "eval_dev_accuracy": value, "eval_dev_loss": 1.0 - value}
        for epoch, value in zip((1, 2), dev, strict=True)
    ]
    history.append({"step": 20, "epoch": 2.0, "train_loss": 0.55, "train_runtime": 10.0})
    (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    return run_dir


@pytest.fixture
def curves(tmp_path: Path) -> pd.DataFrame:
    for method, seed in LOSSES:
        write_run(tmp_path, method, seed, baseline=(method, seed) != ("noisytune", 2))
    return collect_curves(collect_runs(tmp_path))


def band_of(bands: pd.DataFrame, method: str, x: str, value: float) -> pd.Series:
    match = bands.loc[(bands["method"] == method) & (bands[x] == value)]
    assert len(match) == 1, (method, x)
    return match.iloc[0]


def test_train_loss_mean_and_std_per_step_are_those_of_the_seeds(curves: pd.DataFrame) -> None:
    bands = seed_bands(curves, "step", "train_loss", by=("model", "task", "method"))
    assert list(bands.columns) == ["model", "task", "method", "step", "mean", "std", "n"]
    assert len(bands) == 2 * len(STEPS)  # no row for the dev evaluations, which log no training loss
    for method in ("finetune", "noisytune"):
        for i, step in enumerate(STEPS):
            logged = [losses[i] for (m, _), losses in LOSSES.items() if m == method]
            band = band_of(bands, method, "step", step)
            assert band["mean"] == pytest.approx(statistics.mean(logged))
            assert band["std"] == pytest.approx(statistics.stdev(logged))  # ddof=1, as in summary.csv
            assert band["n"] == len(logged)


def test_dev_score_and_loss_per_epoch_are_in_points_and_loss_units(curves: pd.DataFrame) -> None:
    scores = seed_bands(curves, "epoch", "dev_score")
    losses = seed_bands(curves, "epoch", "dev_loss")
    for method in ("finetune", "noisytune"):
        for i, epoch in enumerate((1.0, 2.0)):
            logged = [values[i] for (m, _), values in DEV.items() if m == method]
            score = band_of(scores, method, "epoch", epoch)
            assert score["mean"] == pytest.approx(100 * statistics.mean(logged))
            assert score["std"] == pytest.approx(100 * statistics.stdev(logged))
            assert band_of(losses, method, "epoch", epoch)["mean"] == pytest.approx(
                1 - statistics.mean(logged)
            )


def test_curves_carry_the_majority_class_score_of_runs_that_recorded_it(curves: pd.DataFrame) -> None:
    per_run = curves.groupby(["method", "seed"])["baseline_score"].agg(["min", "max", "count"])
    recorded = per_run.drop(("noisytune", 2))
    assert recorded["min"].tolist() == pytest.approx([100 * MAJORITY] * len(recorded))
    assert (recorded["max"] == recorded["min"]).all() and (recorded["count"] == len(STEPS) + 2).all()
    assert per_run.loc[("noisytune", 2), "count"] == 0  # a run from before it was recorded: empty


def test_a_single_seed_has_no_std_and_a_repeated_step_counts_once() -> None:
    rows = [
        {"method": "a", "seed": 1, "step": 1, "train_loss": 0.4},
        {"method": "a", "seed": 1, "step": 1, "train_loss": 0.6},  # logged twice by a resumed run
        {"method": "a", "seed": 2, "step": 1, "train_loss": 0.9},
        {"method": "b", "seed": 1, "step": 1, "train_loss": 0.3},
        {"method": "b", "seed": 2, "step": 1, "train_loss": math.nan},  # diverged: not a point
    ]
    bands = seed_bands(pd.DataFrame(rows), "step", "train_loss")
    a, b = bands.iloc[0], bands.iloc[1]
    assert (a["mean"], a["n"]) == (pytest.approx(0.7), 2)  # (mean(0.4, 0.6) + 0.9) / 2
    assert a["std"] == pytest.approx(statistics.stdev([0.5, 0.9]))
    assert (b["mean"], b["n"]) == (pytest.approx(0.3), 1) and math.isnan(b["std"])


def test_no_points_give_an_empty_table_with_the_columns() -> None:
    empty = pd.DataFrame({"method": ["a"], "seed": [1], "step": [1], "train_loss": [None]})
    assert list(seed_bands(empty, "step", "train_loss").columns) == ["method", "step", "mean", "std", "n"]
    assert seed_bands(empty, "step", "train_loss").empty
