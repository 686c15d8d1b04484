"""Collect the instruction-tuning runs into one long table, `results/tables/<config name>/instruct.csv`.

One row per (run, source, metric): the SFT losses and cost, each judge's win rate with its CI, each
leaderboard task, and the text statistics. Every row keeps its run directory, so each number in a report
leads back to the files it came from. A run whose SFT has no metrics.json is listed with status "missing";
it never gets a number.

A run's generation variants (NEFTune Tables 5 and 10: <run>/variants/<name>-<key>/, laid out as a run's
generations/ and judge/) add rows with source "variant:<name>" (the generations' mean character length,
token length and outputs cut at max_new_tokens) and "variant:<name>:judge:<judge>" (the win rate), each
with the variant's folder in `detail`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from robustft.io import read_jsonl
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
# A run's generation variants: <run>/VARIANTS_DIR/<name>-<key>/{generations,judge}/.
VARIANTS_DIR = "variants"
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


def _rows_of_run(run_dir: Path, variants: Sequence[str] = ()) -> list[dict[str, Any]]:
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
        _add_judge(add, path, "judge:")

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
    for folder in variants:
        if (run_dir / VARIANTS_DIR / folder).is_dir():
            _add_variant(add, run_dir / VARIANTS_DIR / folder)
    return rows


def _add_judge(add: Callable[..., None], path: Path, prefix: str, **extra_detail: Any) -> None:
    """The rows of one judge/<judge>.json: its win rate with CI (and a length-controlled one if any)."""
    result = _read_json(path) or {}
    judge = result.get("judge", {})
    detail = {"judge": judge, "reference": result.get("reference_generator"), **extra_detail}
    common = {"status": "ok", "n": result.get("n"), "detail": json.dumps(detail, sort_keys=True)}
    add(f"{prefix}{path.stem}", "win_rate", result.get("win_rate"), **common, **_ci(result))
    lc = result.get("length_controlled_win_rate")
    if lc is not None:
        add(f"{prefix}{path.stem}", "length_controlled_win_rate", lc, **common)


def variant_name(folder: str) -> str:
    """long-0123abcd -> long: a variant's folder is <name>-<8 hex digits of its settings>."""
    return folder.rsplit("-", 1)[0]


def _add_variant(add: Callable[..., None], folder: Path) -> None:
    """The rows of one generation variant of a run: its generations' lengths, then each judge's win rate."""
    name = variant_name(folder.name)
    summary = _read_json(folder / "generations" / "alpaca_eval.summary.json")
    generations = folder / "generations" / "alpaca_eval.jsonl"
    if summary is None or not generations.exists():
        add(f"variant:{name}", "status", None, status="missing", detail=json.dumps({"dir": str(folder)}))
        return
    outputs = [record["output"] for record in read_jsonl(generations)]
    detail = json.dumps({"dir": str(folder), "settings": summary.get("settings", {})}, sort_keys=True)
    common = {"status": "ok", "n": len(outputs), "detail": detail}
    if outputs:
        add(f"variant:{name}", "mean_char_length", sum(map(len, outputs)) / len(outputs), **common)
    for metric in ("mean_output_tokens", "n_hit_max_new_tokens"):
        if summary.get(metric) is not None:
            add(f"variant:{name}", metric, summary[metric], **common)
    for path in sorted((folder / "judge").glob("*.json")):
        _add_judge(add, path, f"variant:{name}:judge:", dir=str(folder))


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


def collect_instruct(run_dirs: list[Path], variants: Sequence[str] = ()) -> pd.DataFrame:
    """instruct.csv of `run_dirs`; `variants` names the generation variants' folders (<name>-<key>) to
    read in each run's variants/ where present (the config's: a folder of other settings is left out)."""
    rows = [row for run_dir in run_dirs for row in _rows_of_run(Path(run_dir), variants)]
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
