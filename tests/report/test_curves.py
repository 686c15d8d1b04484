"""Learning-curve figures: one per model x task, a line per method at the mean over seeds, ± std bands."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PolyCollection

from robustft.report.curves import (
    caption,
    curve_figure,
    file_stem,
    glue_cells,
    write_curve_figures,
    xtreme_cells,
)

METHODS = ["finetune", "noisytune"]
SEEDS = [1, 2, 3]
STEPS = [1, 5, 10]
EPOCHS = [1.0, 2.0]
MAJORITY = 52.7


def _loss(method: str, seed: int, step: int) -> float:
    return 0.7 - 0.02 * step - 0.01 * seed - (0.005 if method == "noisytune" else 0.0)


def _score(method: str, seed: int, epoch: float) -> float:
    return 60.0 + 2 * epoch + 0.5 * seed**2 + (1.0 if method == "noisytune" else 0.0)


def glue_curves(diverged: tuple[str, int] | None = None) -> pd.DataFrame:
    """curves.csv as tables.collect_curves writes it: RTE and STS-B of one model, three seeds a method."""
    rows = []
    for task, metric in (("rte", "accuracy"), ("stsb", "pearson")):
        for method in METHODS:
            for seed in SEEDS:
                status = "diverged" if (method, seed) == diverged else "ok"
                run = {"model": "minilm-l6", "task": task, "method": method, "seed": seed, "status": status}
                run |= {"metric": metric, "baseline_score": MAJORITY if task == "rte" else 0.0}
                for step in STEPS:
                    loss = 1e6 if status == "diverged" else _loss(method, seed, step)
                    rows.append({**run, "step": step, "epoch": step / 10, "train_loss": loss})
                for epoch in EPOCHS:
                    score = _score(method, seed, epoch)
                    rows.append(
                        {**run, "step": 10 * epoch, "epoch": epoch, "dev_score": score, "dev_loss": 0.6}
                    )
    return pd.DataFrame(rows)


def _lines(ax) -> dict[str, object]:
    return {line.get_label(): line for line in ax.lines}


def test_glue_figure_has_a_loss_and_a_dev_panel_with_one_line_per_method_at_the_seed_mean() -> None:
    cells = glue_cells(glue_curves(), ["minilm-l6"], ["rte", "stsb", "cola"])
    assert [cell.name for cell in cells] == ["glue_minilm-l6_rte", "glue_minilm-l6_stsb"]  # CoLA: no runs
    figure = curve_figure(cells[0], METHODS)
    loss_ax, score_ax, dev_loss_ax = figure.axes  # the dev loss on a second axis of the right panel
    assert figure.get_suptitle() == "minilm-l6 · RTE"

    loss_lines = _lines(loss_ax)
    assert list(loss_lines) == METHODS
    for method in METHODS:
        line = loss_lines[method]
        assert list(line.get_xdata()) == STEPS
        expected = [statistics.mean(_loss(method, seed, step) for seed in SEEDS) for step in STEPS]
        assert list(line.get_ydata()) == pytest.approx(expected)
    bands = [c for c in loss_ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == len(METHODS)
    # The band is ± one std (ddof=1): its top edge at the first step is the mean plus the std.
    first = [_loss("finetune", seed, 1) for seed in SEEDS]
    edges = bands[0].get_paths()[0].vertices[:, 1]
    for edge in (
        statistics.mean(first) + statistics.stdev(first),
        statistics.mean(first) - statistics.stdev(first),
    ):
        assert np.isclose(edges, edge).any()

    score_lines = _lines(score_ax)
    assert list(score_lines) == [*METHODS, f"majority class ({MAJORITY:.1f})"]
    assert list(score_lines["noisytune"].get_xdata()) == EPOCHS
    expected = [statistics.mean(_score("noisytune", seed, epoch) for seed in SEEDS) for epoch in EPOCHS]
    assert list(score_lines["noisytune"].get_ydata()) == pytest.approx(expected)
    majority = score_lines[f"majority class ({MAJORITY:.1f})"]
    assert majority.get_linestyle() == "--" and list(majority.get_ydata()) == [MAJORITY, MAJORITY]
    assert "accuracy" in score_ax.get_ylabel()
    assert list(_lines(dev_loss_ax)) == [f"{method} (dev loss)" for method in METHODS]
    assert all(line.get_linestyle() == ":" for line in dev_loss_ax.lines)


def test_a_regression_task_gets_the_constant_prediction_line() -> None:
    stsb = glue_cells(glue_curves(), ["minilm-l6"], ["stsb"])[0]
    assert stsb.baselines == (0.0,) and stsb.baseline_label == "constant prediction"
    score_ax = curve_figure(stsb, METHODS).axes[1]
    assert "constant prediction (0.0)" in _lines(score_ax)


def test_a_diverged_run_is_left_out_of_the_lines_and_counted_in_the_caption() -> None:
    cell = glue_cells(glue_curves(diverged=("noisytune", 3)), ["minilm-l6"], ["rte"])[0]
    noisytune = _lines(curve_figure(cell, METHODS).axes[0])["noisytune"]
    expected = [statistics.mean(_loss("noisytune", seed, step) for seed in (1, 2)) for step in STEPS]
    assert list(noisytune.get_ydata()) == pytest.approx(expected)  # no 1e6 from the diverged seed
    text = caption(cell, METHODS)
    assert text == "minilm-l6 · RTE: seeds: finetune 3, noisytune 2; 1 run that diverged or failed left out."
    assert caption(glue_cells(glue_curves(), ["minilm-l6"], ["rte"])[0], METHODS).endswith(
        "3 seeds per method."
    )


def test_the_caption_says_when_earlier_dev_points_score_a_subset() -> None:
    curves = glue_curves()
    evaluated = curves["dev_score"].notna()
    last = curves["epoch"] == max(EPOCHS)
    curves.loc[evaluated, "dev_examples"] = 300.0
    curves.loc[evaluated & last, "dev_examples"] = 1500.0
    text = caption(glue_cells(curves, ["minilm-l6"], ["stsb"])[0], METHODS)
    assert text.endswith("dev points before the last epoch score a seeded 300 of the 1,500 dev examples.")
    curves.loc[evaluated, "dev_examples"] = 1500.0  # every evaluation on the whole split: nothing to say
    assert caption(glue_cells(curves, ["minilm-l6"], ["stsb"])[0], METHODS).endswith("3 seeds per method.")


def xtreme_curves() -> pd.DataFrame:
    """xtreme_curves.csv as tables.xtreme.collect_xtreme_curves writes it: two seeds a method, XNLI."""
    rows = []
    for k, method in enumerate(METHODS):
        for seed in (1, 2):
            run = {"model": "xlm-r-base", "task": "xnli", "setting": "zero-shot", "method": method}
            run |= {"seed": seed, "status": "ok"}
            for step in (1, 10):
                rows.append(
                    {**run, "step": step, "epoch": step / 10, "train_loss": 1.0 - step / 20 + seed / 10}
                )
            score = 70.0 + k + 2 * seed
            rows.append(
                {**run, "step": 10, "epoch": 1.0, "metric": "accuracy", "eval_split": "test"}
                | {"n_languages": 15, "eval_score": score}
            )
    return pd.DataFrame(rows)


def test_xtreme_figure_shows_the_one_evaluation_as_a_point_with_a_std_bar() -> None:
    cells = xtreme_cells(xtreme_curves())
    assert [cell.name for cell in cells] == ["xtreme_xlm-r-base_zero-shot_xnli"]
    figure = curve_figure(cells[0], METHODS)
    loss_ax, score_ax = figure.axes  # no evaluation loss is logged: no second axis
    assert list(_lines(loss_ax)) == METHODS
    assert list(_lines(loss_ax)["finetune"].get_ydata()) == pytest.approx([1.1, 0.65])  # seeds 1, 2
    score_lines = _lines(score_ax)
    assert list(score_lines) == METHODS  # no majority line: XTREME runs record none
    for k, method in enumerate(METHODS):
        assert list(score_lines[method].get_xdata()) == [1.0]
        assert list(score_lines[method].get_ydata()) == pytest.approx([70.0 + k + 3.0])
    bars = [c for c in score_ax.collections if isinstance(c, LineCollection)]
    assert len(bars) == len(METHODS)
    low, high = bars[0].get_segments()[0][:, 1]
    assert (low, high) == pytest.approx(
        (73.0 - statistics.stdev([72.0, 74.0]), 73.0 + statistics.stdev([72, 74]))
    )
    assert "test accuracy" in score_ax.get_ylabel() and "15 languages" in score_ax.get_ylabel()


def test_figures_are_written_as_png_and_pdf_and_the_pdf_is_embedded(tmp_path: Path) -> None:
    cells = glue_cells(glue_curves(), ["minilm-l6"], ["rte", "stsb"])
    curves_dir, embed_dir = tmp_path / "report" / "curves", tmp_path / "figures"
    embedded = write_curve_figures(cells, METHODS, curves_dir, embed_dir, "report_curves_")
    assert [path for path, _ in embedded] == [
        "/report_curves_glue_minilm-l6_rte.pdf",
        "/report_curves_glue_minilm-l6_stsb.pdf",
    ]
    assert embedded[0][1] == "minilm-l6 · RTE: 3 seeds per method."
    for cell in cells:
        assert (curves_dir / f"{cell.name}.png").read_bytes().startswith(b"\x89PNG")
        pdf = (curves_dir / f"{cell.name}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF") and (embed_dir / f"report_curves_{cell.name}.pdf").read_bytes() == pdf
    first = (curves_dir / "glue_minilm-l6_rte.pdf").read_bytes()
    write_curve_figures(cells, METHODS, curves_dir, embed_dir, "report_curves_")
    assert (curves_dir / "glue_minilm-l6_rte.pdf").read_bytes() == first  # same curves, same bytes


def test_file_stems_keep_only_safe_characters() -> None:
    assert file_stem("glue", "org/model name", "mrpc@0.2") == "glue_org-model-name_mrpc@0.2"
