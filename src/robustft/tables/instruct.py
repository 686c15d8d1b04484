"""Collect the instruction-tuning runs into one long table, `results/tables/<config name>/instruct.csv`.

One row per (run, source, metric): the SFT losses and cost, each judge's win rate with its CI, each
leaderboard task, and the text statistics. Every row keeps its run directory, so each number in a report
leads back to the files it came from. A run whose SFT has no metrics.json is listed with status "missing";
it never gets a number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from robustft.runs import parse_run_dir

INSTRUCT_COLUMNS = [
    "model",
    "dataset",
    "recipe",
    "method",
    "seed",
    "source",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "status",
    "detail",
    "run_dir",
]
# SFT metrics carried into the table (others stay in sft/metrics.json).
SFT_METRICS = (
    "final_train_loss",
    "final_heldout_loss",
    "train_loss",
    "train_runtime",
    "train_samples_per_second",
    "tokens_per_second",
)


def run_dir_key(run_dir: Path) -> tuple[str, str, str, str, int]:
    """results/instruct/<model>/<dataset>/<recipe>/<method>/seed<S> -> its five keys."""
    run = parse_run_dir(run_dir, track="instruct")
    return run.model, run.dataset, run.recipe, run.method, run.seed


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def _rows_of_run(run_dir: Path) -> list[dict[str, Any]]:
    model, dataset, recipe, method, seed = run_dir_key(run_dir)
    base = {"model": model, "dataset": dataset, "recipe": recipe, "method": method, "seed": seed}
    base["run_dir"] = str(run_dir)
    rows: list[dict[str, Any]] = []

    def add(source: str, metric: str, value: Any, **extra: Any) -> None:
        rows.append({**base, "source": source, "metric": metric, "value": value, **extra})

    sft = _read_json(run_dir / "sft" / "metrics.json")
    if sft is None:
        add("sft", "status", None, status="missing", detail="sft/metrics.json absent")
        return rows
    status = sft.get("status", "ok")
    for key in SFT_METRICS:
        if sft.get(key) is not None:
            add("sft", key, sft[key], status=status)
    if status != "ok":
        add("sft", "status", None, status=status, detail=str(sft.get("error", "")))

    for path in sorted((run_dir / "judge").glob("*.json")):
        result = _read_json(path) or {}
        judge = result.get("judge", {})
        detail = json.dumps({"judge": judge, "reference": result.get("reference_generator")}, sort_keys=True)
        common = {"status": "ok", "n": result.get("n"), "detail": detail}
        add(f"judge:{path.stem}", "win_rate", result.get("win_rate"), **common, **_ci(result))
        lc = result.get("length_controlled_win_rate")
        if lc is not None:
            add(f"judge:{path.stem}", "length_controlled_win_rate", lc, **common)

    for path in sorted((run_dir / "leaderboard").glob("*.json")):
        result = _read_json(path) or {}
        ok = result.get("status") == "ok"
        detail = {k: result.get(k) for k in ("metric", "num_fewshot", "limit", "reason", "lm_eval_version")}
        add(
            f"leaderboard:{result.get('task', path.stem)}",
            "score",
            result.get("value") if ok else None,
            status=result.get("status", "ok"),
            n=result.get("n"),
            detail=json.dumps(detail, sort_keys=True),
            **(_stderr_ci(result) if ok else {}),
        )

    for name in ("text_stats", "overlap"):
        stats = _read_json(run_dir / f"{name}.json")
        for metric, value in _numbers(stats or {}):
            add(name, metric, value, status="ok")
    return rows


def _ci(result: dict[str, Any]) -> dict[str, Any]:
    return {"ci_low": result.get("ci_low"), "ci_high": result.get("ci_high")}


def _stderr_ci(result: dict[str, Any]) -> dict[str, Any]:
    stderr = result.get("stderr")
    if stderr is None or result.get("value") is None:
        return {}
    return {"ci_low": result["value"] - 1.96 * stderr, "ci_high": result["value"] + 1.96 * stderr}


def _numbers(stats: dict[str, Any], prefix: str = "") -> list[tuple[str, float]]:
    """Flatten a stats JSON to (dotted key, number) pairs; text and lists are left in the file."""
    out: list[tuple[str, float]] = []
    for key, value in stats.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out.append((name, float(value)))
        elif isinstance(value, dict):
            out.extend(_numbers(value, prefix=f"{name}."))
    return out


def collect_instruct(run_dirs: list[Path]) -> pd.DataFrame:
    rows = [row for run_dir in run_dirs for row in _rows_of_run(Path(run_dir))]
    frame = pd.DataFrame(rows)
    for column in INSTRUCT_COLUMNS:
        if column not in frame:
            frame[column] = None
    return frame[INSTRUCT_COLUMNS]


def read_instruct(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    missing = sorted(set(INSTRUCT_COLUMNS) - set(frame.columns))
    if missing:
        raise ValueError(f"{path}: not an instruct table (missing columns {missing})")
    return frame
