"""NoisyTune Figure 5 drift: arithmetic on hand-made norms.jsonl files, the paper's rows, the figure."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
import pytest

from robustft.artifacts.drift import (
    GROUPS,
    PAPER_UNIT_LABEL,
    drift_figure,
    drift_table,
    load_norm_records,
    paper_drift,
    run_drift,
)


def _record(point: str, step: int, groups: dict[str, tuple[float, int]], checkpoint: int | None) -> dict:
    record: dict[str, Any] = {"point": point, "step": step, "epoch": step / 10}
    if checkpoint is not None:
        record["checkpoint"] = checkpoint
    record["groups"] = {g: {"l1": l1, "numel": n} for g, (l1, n) in groups.items()}
    return record


def _write_run(root: Path, name: str, records: list[dict]) -> Path:
    run = root / name
    run.mkdir()
    (run / "norms.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return run


@pytest.fixture
def runs(tmp_path: Path) -> dict[tuple[str, int], Path]:
    """Two finetune seeds with checkpoints at steps 5 and 10 (and an eval that must be ignored), and one
    noisytune seed whose start record carries no checkpoint number (files written before norm_checkpoints)."""
    ft1 = [
        _record("start", 0, {"query": (100.0, 10), "all": (400.0, 40)}, 0),
        _record("checkpoint", 5, {"query": (101.0, 10), "all": (398.0, 40)}, 1),
        _record("eval", 5, {"query": (999.0, 10), "all": (999.0, 40)}, None),
        _record("checkpoint", 10, {"query": (97.0, 10), "all": (404.0, 40)}, 2),
    ]
    ft2 = [
        _record("start", 0, {"query": (200.0, 10), "all": (400.0, 40)}, 0),
        _record("checkpoint", 5, {"query": (202.0, 10), "all": (400.0, 40)}, 1),
        _record("checkpoint", 10, {"query": (195.0, 10), "all": (410.0, 40)}, 2),
    ]
    nt1 = [
        _record("start", 0, {"query": (50.0, 10)}, None),
        _record("checkpoint", 5, {"query": (50.5, 10)}, 1),
    ]
    return {
        ("finetune", 1): _write_run(tmp_path, "ft1", ft1),
        ("finetune", 2): _write_run(tmp_path, "ft2", ft2),
        ("noisytune", 1): _write_run(tmp_path, "nt1", nt1),
    }


def _table(runs: dict[tuple[str, int], Path]) -> pd.DataFrame:
    return drift_table({key: load_norm_records(path) for key, path in runs.items()})


def _cell(table: pd.DataFrame, method: str, checkpoint: int, group: str) -> pd.Series:
    (index,) = table.index[
        (table["method"] == method) & (table["checkpoint"] == checkpoint) & (table["group"] == group)
    ]
    return table.loc[index]


def test_load_norm_records(runs) -> None:
    records = load_norm_records(runs[("finetune", 1)])
    assert len(records) == 8  # 4 records x 2 groups
    assert records["checkpoint"].tolist()[::2] == [0, 1, pd.NA, 2]
    assert records["point"].tolist()[::2] == ["start", "checkpoint", "eval", "checkpoint"]
    assert records["step"].tolist()[::2] == [0, 5, 5, 10]
    assert records["l1"].tolist()[:2] == [100.0, 400.0] and records["numel"].tolist()[:2] == [10, 40]
    # A start record without a number is checkpoint 0.
    assert load_norm_records(runs[("noisytune", 1)])["checkpoint"].tolist() == [0, 1]


def test_run_drift_by_hand(runs) -> None:
    drift = run_drift(load_norm_records(runs[("finetune", 1)]))
    assert drift["checkpoint"].tolist() == [0, 0, 1, 1, 2, 2]  # the eval at step 5 is not a checkpoint
    assert drift["group"].tolist() == ["all", "query"] * 3
    # |398 - 400| = 2 over 40 weights / of 400; |101 - 100| = 1 over 10 / of 100; |404-400|=4; |97-100|=3
    assert drift["raw_drift"].tolist() == pytest.approx([0, 0, 0.05, 0.1, 0.1, 0.3])
    assert drift["rel_drift"].tolist() == pytest.approx([0, 0, 0.005, 0.01, 0.01, 0.03])
    assert drift["step"].tolist() == [0, 0, 5, 5, 10, 10]


def test_drift_table_by_hand(runs) -> None:
    table = _table(runs)
    # finetune query, checkpoint 2: seed 1 raw 3/10 rel 3/100, seed 2 raw 5/10 rel 5/200
    cell = _cell(table, "finetune", 2, "query")
    assert cell["step"] == 10 and cell["n_seeds"] == 2
    assert cell["raw_mean"] == pytest.approx(0.4)
    assert cell["raw_std"] == pytest.approx(math.sqrt(2 * 0.1**2))  # sample std (ddof 1)
    assert cell["rel_mean"] == pytest.approx(0.0275)
    assert cell["rel_std"] == pytest.approx(math.sqrt(2 * 0.0025**2))
    # finetune all, checkpoint 1: seed 1 rel 2/400, seed 2 rel 0
    cell = _cell(table, "finetune", 1, "all")
    assert cell["rel_mean"] == pytest.approx(0.0025) and cell["raw_mean"] == pytest.approx(0.025)
    # finetune query, checkpoint 1: 1/100 and 2/200, the same relative drift, different raw drift
    cell = _cell(table, "finetune", 1, "query")
    assert cell["rel_std"] == pytest.approx(0.0) and cell["raw_mean"] == pytest.approx(0.15)
    # one noisytune seed: |50.5 - 50| = 0.5 -> raw 0.05, rel 0.01, no std
    cell = _cell(table, "noisytune", 1, "query")
    assert cell["n_seeds"] == 1 and cell["raw_mean"] == pytest.approx(0.05)
    assert cell["rel_mean"] == pytest.approx(0.01) and math.isnan(cell["rel_std"])
    assert (table.loc[table["checkpoint"] == 0, ["raw_mean", "rel_mean"]] == 0).all().all()
    assert len(table) == 3 * 2 + 2  # finetune: 3 checkpoints x 2 groups; noisytune: 2 x 1


def test_drift_rejects_inconsistent_records(tmp_path: Path) -> None:
    start = _record("start", 0, {"all": (10.0, 4)}, 0)
    repeated = _write_run(tmp_path, "repeated", [start, _record("checkpoint", 5, {"all": (11.0, 4)}, 1)] * 2)
    with pytest.raises(ValueError, match="more than once"):
        run_drift(load_norm_records(repeated))
    no_start = _write_run(tmp_path, "no-start", [_record("checkpoint", 5, {"all": (11.0, 4)}, 1)])
    with pytest.raises(ValueError, match="no start record"):
        run_drift(load_norm_records(no_start))
    resized = _write_run(tmp_path, "resized", [start, _record("checkpoint", 5, {"all": (11.0, 5)}, 1)])
    with pytest.raises(ValueError, match="parameter count"):
        run_drift(load_norm_records(resized))
    other_step = _write_run(tmp_path, "other-step", [start, _record("checkpoint", 6, {"all": (11.0, 4)}, 1)])
    good = _write_run(tmp_path, "good", [start, _record("checkpoint", 5, {"all": (11.0, 4)}, 1)])
    with pytest.raises(ValueError, match="checkpoint 1 at different steps"):
        drift_table(
            {("finetune", 1): load_norm_records(good), ("finetune", 2): load_norm_records(other_step)}
        )


def test_paper_drift() -> None:
    paper = paper_drift()
    assert len(paper) == 100  # 2 methods x 5 groups x checkpoints 0..9
    assert set(paper["method"]) == {"finetune", "noisytune"}
    assert set(paper["group"]) == set(GROUPS)
    assert sorted(set(paper["checkpoint"])) == list(range(10))
    assert (paper.loc[paper["checkpoint"] == 0, "value"] == 0).all()

    def value(method: str, group: str, checkpoint: int) -> float:
        rows = paper[
            (paper["method"] == method) & (paper["group"] == group) & (paper["checkpoint"] == checkpoint)
        ]
        (result,) = rows["value"]
        return result

    assert value("finetune", "key", 9) == 1.23
    assert value("noisytune", "value", 4) == 0.81  # one of the interpolated points
    assert (
        "interpolated"
        in paper.loc[
            (paper["method"] == "noisytune") & (paper["group"] == "value") & (paper["checkpoint"] == 4),
            "confidence",
        ].item()
    )


def test_drift_figure(runs) -> None:
    table = _table(runs)
    figure = drift_figure(table, paper_drift())
    raw, rel = figure.axes[:2]
    ours = {"query finetune", "all finetune", "query noisytune"}  # groups in GROUPS order, per method
    assert {line.get_label() for line in raw.get_lines()} == ours
    labels = [line.get_label() for line in rel.get_lines()]
    assert set(labels) == ours | {f"{g} {m} (paper)" for g in GROUPS for m in ("finetune", "noisytune")}
    assert PAPER_UNIT_LABEL in rel.get_ylabel()
    lines = {line.get_label(): line for line in rel.get_lines()}
    # the relative panel is in units of 1e-6: 0.0275 -> 27500
    assert list(lines["query finetune"].get_ydata()) == pytest.approx([0.0, 10000.0, 27500.0])
    assert lines["query finetune"].get_linestyle() == "--" and lines["query noisytune"].get_linestyle() == "-"
    assert list(lines["key finetune (paper)"].get_ydata())[-1] == 1.23
    assert lines["key finetune (paper)"].get_linestyle() == "None"
    assert list(lines["query finetune"].get_xdata()) == [0, 1, 2]
    assert len(raw.collections) == 2  # ±std bands: finetune query and all (noisytune has one seed)
    # Without the paper there are no markers; the figure renders to SVG.
    plain = drift_figure(table, None)
    assert {line.get_label() for line in plain.axes[1].get_lines()} == ours
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "test", "svg.fonttype": "path", "text.parse_math": False}):
        plain.savefig(buffer, format="svg", metadata={"Date": None})
    assert b"<svg" in buffer.getvalue()
