"""Learning-curve figures of the GLUE and XTREME tracks, one per model x task (x setting), for the report.

Each figure has two panels: the training loss against the optimizer step, and the evaluation metric (in
points, as in the tables) against the epoch, with the evaluation loss on a second axis where the runs
logged one (GLUE: every dev evaluation; XTREME runs evaluate once, after training, and log no loss). A
line per method is the mean over its seeds that finished ok, its band ± one standard deviation (ddof=1;
a single evaluation gets a bar). Nothing is smoothed: every point is what the runs logged at that step
(a training loss is the Trainer's mean over its logging window). On a GLUE metric panel a dashed line
marks the score of predicting the training split's majority class (regression: a constant) for every
dev example, where the runs recorded it.

The tables stage writes the data: curves.csv (tables.glue.collect_curves) and xtreme_curves.csv
(tables.xtreme.collect_xtreme_curves); tables.curves.seed_bands computes the bands. Figures are written
as PNG and PDF into a folder of their own (`<report>/curves/`), and the PDF is embedded in the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import offset_copy

from robustft.io import write_bytes_atomic
from robustft.reference import paper_task_name
from robustft.report.typeset import Block, figure_block, heading, paragraph
from robustft.tables.curves import seed_bands
from robustft.tables.xtreme import PAPER_NAME, XTREME_CURVE_COLUMNS, XTREME_CURVES

OK_STATUS = "ok"
REGRESSION_METRICS = ("pearson", "spearman")
# Fixed metadata: the same curves give the same bytes. parse_math off: a "$" in a name is text.
_STYLE = {"text.parse_math": False, "font.size": 7, "pdf.fonttype": 42}
_SAVE_OPTIONS: dict[str, dict[str, Any]] = {
    "pdf": {"metadata": {"CreationDate": None}},
    "png": {"metadata": {"Software": None}, "dpi": 150},
}


@dataclass(frozen=True)
class CurveCell:
    """The data of one figure: the curve rows of one model x task (x setting), every status."""

    name: str  # the file stem, unique in a report: "glue_<model>_<task>", "xtreme_<model>_<setting>_<task>"
    title: str
    points: pd.DataFrame  # step, epoch, train_loss, score and, where logged, dev_loss, per method and seed
    score_label: str
    baselines: tuple[float, ...] = ()  # dev scores of a constant prediction (normally one value)
    baseline_label: str = ""
    note: str = ""  # said after the caption's seed counts (e.g. that earlier points score a dev subset)


# ---------------------------------------------------------------- the cells of each track


def glue_cells(
    curves: pd.DataFrame, models: Sequence[str], tasks: Sequence[str], title: Callable[[str], str] = str
) -> list[CurveCell]:
    """One cell per model x task of curves.csv (in the given orders) that has a row; `title(model)` names
    the model (the report adds "(proxy)")."""
    cells = []
    for model in models:
        for task in tasks:
            rows = curves.loc[(curves["model"] == model) & (curves["task"] == task)]
            if rows.empty:
                continue
            metrics = sorted(rows["metric"].dropna().astype(str).unique())
            metric = "/".join(metrics) or "score"
            baselines = (
                rows["baseline_score"].dropna() if "baseline_score" in rows else pd.Series([], dtype=float)
            )
            regression = bool(metrics) and all(m in REGRESSION_METRICS for m in metrics)
            cells.append(
                CurveCell(
                    name=file_stem("glue", model, task),
                    title=f"{title(model)} · {paper_task_name(task)}",
                    points=rows.rename(columns={"dev_score": "score"}),
                    score_label=f"dev {metric} (points)",
                    baselines=tuple(sorted({round(float(v), 9) for v in baselines})),
                    baseline_label="constant prediction" if regression else "majority class",
                    note=_dev_subset_note(rows),
                )
            )
    return cells


def _dev_subset_note(rows: pd.DataFrame) -> str:
    """Where the earlier evaluations scored fewer dev examples than the last (train.curve_eval_samples),
    the caption says how many, since those points are on a subset."""
    if "dev_examples" not in rows:
        return ""
    counts = rows["dev_examples"].dropna()
    if counts.nunique() <= 1:
        return ""
    fewest, whole = int(counts.min()), int(counts.max())
    return f"dev points before the last epoch score a seeded {fewest:,} of the {whole:,} dev examples"


def xtreme_cells(curves: pd.DataFrame, models: Sequence[str] | None = None) -> list[CurveCell]:
    """One cell per model x setting x task of xtreme_curves.csv, tasks in NoisyTune Table 3's order."""
    models = list(models) if models is not None else sorted(curves["model"].astype(str).unique())
    order = {task: i for i, task in enumerate(PAPER_NAME)}
    cells = []
    for model in models:
        in_model = curves.loc[curves["model"] == model]
        for setting in sorted(in_model["setting"].astype(str).unique()):
            in_setting = in_model.loc[in_model["setting"] == setting]
            for task in sorted(in_setting["task"].unique(), key=lambda t: (order.get(t, len(order)), t)):
                rows = in_setting.loc[in_setting["task"] == task]
                evaluated = rows.dropna(subset=["eval_score"])
                split = "/".join(sorted(evaluated["eval_split"].astype(str).unique())) or "eval"
                metric = "/".join(sorted(evaluated["metric"].astype(str).unique())) or "score"
                languages = sorted({int(n) for n in evaluated["n_languages"].dropna()})
                across = f"\nmean of {'/'.join(map(str, languages))} languages" if languages else ""
                cells.append(
                    CurveCell(
                        name=file_stem("xtreme", model, setting, task),
                        title=f"{model} · {PAPER_NAME.get(task, task)} · {setting}",
                        points=rows.rename(columns={"eval_score": "score"}),
                        score_label=f"{split} {metric}{across} (points)",
                    )
                )
    return cells


def file_stem(*parts: str) -> str:
    """A file name from names that may hold any character: only letters, digits and ".@+-" are kept."""
    return "_".join("".join(c if c.isalnum() or c in ".@+-" else "-" for c in str(part)) for part in parts)


def load_xtreme_curves(tables_dir: Path) -> pd.DataFrame | None:
    """xtreme_curves.csv (every status); None when it is absent (tables collected before it was written)
    or empty."""
    path = Path(tables_dir) / XTREME_CURVES
    if not path.exists():
        return None
    curves = pd.read_csv(path, keep_default_na=False, na_values=[""])
    missing = sorted(set(XTREME_CURVE_COLUMNS) - set(curves.columns))
    if missing:
        raise ValueError(f"{path} lacks columns {missing}")
    for column in ("model", "task", "setting", "method", "status"):
        curves[column] = curves[column].astype(str)
    return curves if len(curves) else None


# ---------------------------------------------------------------- one figure


def curve_figure(cell: CurveCell, methods: Sequence[str]) -> Figure:
    """The two panels of `cell`: training loss against the step; the metric (and dev loss, right axis)
    against the epoch, with the constant-prediction line dashed. Runs that did not finish ok are left
    out; a method without points draws nothing, and an empty panel says so."""
    figure = Figure(figsize=(7.0, 2.5), layout="constrained")
    loss_ax, score_ax = figure.subplots(1, 2)
    points = cell.points.loc[cell.points["status"] == OK_STATUS]
    has_dev_loss = "dev_loss" in points and points["dev_loss"].notna().any()
    dev_loss_ax = score_ax.twinx() if has_dev_loss else None
    for k, method in enumerate(methods):
        runs = points.loc[points["method"] == method]
        # A single evaluation per method would hide the others' behind it: drawn apart by a few points
        # (the plotted x stays the logged one).
        dodge = 5.0 * (k - (len(methods) - 1) / 2)
        _draw_band(loss_ax, seed_bands(runs, "step", "train_loss", by=()), "step", f"C{k}", "-", method)
        _draw_band(score_ax, seed_bands(runs, "epoch", "score", by=()), "epoch", f"C{k}", "-", method, dodge)
        if dev_loss_ax is not None:
            bands = seed_bands(runs, "epoch", "dev_loss", by=())
            _draw_band(dev_loss_ax, bands, "epoch", f"C{k}", ":", f"{method} (dev loss)", dodge)
    loss_ax.set(xlabel="optimizer step", ylabel="training loss")
    score_ax.set(xlabel="epoch", ylabel=cell.score_label)
    if dev_loss_ax is not None:
        dev_loss_ax.set_ylabel("dev loss")
    for ax in (loss_ax, score_ax):
        if not ax.lines:
            ax.text(0.5, 0.5, "nothing logged", ha="center", va="center", transform=ax.transAxes)
        steps = {float(x) for line in ax.lines for x in line.get_xdata()}
        if len(steps) == 1:
            ax.set_xticks(sorted(steps))  # one evaluation: its epoch, not a scale around it
    for value in cell.baselines:
        score_ax.axhline(value, color="black", ls="--", lw=0.8, label=f"{cell.baseline_label} ({value:.1f})")
    figure.suptitle(cell.title)
    handles = _legend(
        methods, has_dev_loss, [line for line in score_ax.lines if line.get_linestyle() == "--"]
    )
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    return figure


def _draw_band(
    ax: Axes, band: pd.DataFrame, x: str, color: str, style: str, label: str, dodge: float = 0.0
) -> None:
    """The mean as one line with markers (a single evaluation stays visible), ± one std around it: a band,
    or a bar where the line has a single point, drawn `dodge` typographic points to the side. Points of
    one seed have no std and no band."""
    if band.empty:
        return
    steps = band[x].to_numpy(dtype=float)
    mean, std = band["mean"].to_numpy(dtype=float), band["std"].to_numpy(dtype=float)
    marker = "o" if style == "-" else "s"
    drawn: list[Any] = ax.plot(steps, mean, color=color, ls=style, lw=1, marker=marker, ms=2.5, label=label)
    if len(band) == 1:
        if not math.isnan(std[0]):
            drawn.append(ax.vlines(steps, mean - std, mean + std, color=color, lw=1))
        # Shifted once drawn, so the axis limits still follow the data.
        for artist in drawn:
            artist.set_transform(offset_copy(ax.transData, fig=ax.figure, x=dodge, units="points"))
    else:
        ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2 if style == "-" else 0.1, lw=0)


def _legend(methods: Sequence[str], dev_loss: bool, baselines: Sequence[Line2D]) -> list[Line2D]:
    """The methods (colours), then what the other line styles drawn mean."""
    handles = [Line2D([], [], color=f"C{k}", lw=1, label=method) for k, method in enumerate(methods)]
    if dev_loss:
        handles.append(
            Line2D([], [], color="grey", ls=":", marker="s", ms=2.5, lw=1, label="dev loss (right)")
        )
    handles += [Line2D([], [], color="black", ls="--", lw=0.8, label=line.get_label()) for line in baselines]
    return handles


def caption(cell: CurveCell, methods: Sequence[str]) -> str:
    """The figure's title and the seeds behind each line, and how many runs were left out."""
    seeds = cell.points.groupby("method")["seed"].nunique()
    ok = cell.points.loc[cell.points["status"] == OK_STATUS].groupby("method")["seed"].nunique()
    counts = {method: int(ok.get(method, 0)) for method in methods if method in seeds.index}
    if len(set(counts.values())) == 1:
        behind = f"{next(iter(counts.values()))} seeds per method"
    else:
        behind = "seeds: " + ", ".join(f"{method} {count}" for method, count in counts.items())
    left_out = sum(int(seeds.get(method, 0)) - count for method, count in counts.items())
    if left_out:
        behind += f"; {left_out} run{'s' if left_out > 1 else ''} that diverged or failed left out"
    if cell.note:
        behind += f"; {cell.note}"
    return f"{cell.title}: {behind}."


# ---------------------------------------------------------------- files and the report section


def write_curve_figures(
    cells: Sequence[CurveCell], methods: Sequence[str], curves_dir: Path, embed_dir: Path, prefix: str
) -> list[tuple[str, str]]:
    """Write each cell's figure as `<curves_dir>/<name>.png` and `.pdf`, copy the PDF into `embed_dir`
    (the typst root) as `<prefix><name>.pdf`; [(path from the typst root, caption)] in order."""
    curves_dir.mkdir(parents=True, exist_ok=True)
    embed_dir.mkdir(parents=True, exist_ok=True)
    embedded = []
    with matplotlib.rc_context(_STYLE):
        for cell in cells:
            figure = curve_figure(cell, methods)
            for extension, options in _SAVE_OPTIONS.items():
                figure.savefig(curves_dir / f"{cell.name}.{extension}", format=extension, **options)
            name = f"{prefix}{cell.name}.pdf"
            write_bytes_atomic(embed_dir / name, (curves_dir / f"{cell.name}.pdf").read_bytes())
            embedded.append(("/" + name, caption(cell, methods)))
    return embedded


def remove_curve_figures(curves_dir: Path, track: str) -> None:
    """Remove a track's figures of an earlier report, so a cell that is gone leaves no stale file."""
    for path in Path(curves_dir).glob(f"{track}_*"):
        if path.suffix in (".png", ".pdf"):
            path.unlink()


def curves_section(title: str, intro: str, figures: Sequence[tuple[str, str]]) -> list[Block]:
    """A section of the report: `title`, `intro`, then each (path, caption) figure."""
    if not figures:
        return []
    return [heading(title), paragraph(intro)] + [
        figure_block(path, text, max_height_cm=7) for path, text in figures
    ]


GLUE_INTRO = (
    "Per model and task: left, the training loss of each logging window (the Trainer's mean over its "
    "steps) against the optimizer step; right, the dev primary metric in points (solid) and the dev loss "
    "(dotted, right axis) at each evaluation against the epoch. Line: the mean over the seeds of a method "
    "that finished ok; band: ± one standard deviation (ddof=1) over them. No smoothing: every point is what "
    "the runs logged. Dashed: the dev score of predicting the training split's majority class (for "
    "regression, a constant: 0 correlation) for every example, as the runs recorded it."
)
XTREME_INTRO = (
    "Per model, task and setting: left, the training loss of each logging window against the optimizer "
    "step; right, the run's one evaluation, made after training, on the evaluation split: the primary "
    "metric averaged over the task's languages, in points. Line and dot: the mean over the seeds of a "
    "method that finished ok; band and bar: ± one standard deviation (ddof=1). No smoothing. XTREME runs "
    "log no evaluation loss and are not evaluated during training; BUCC and Tatoeba train nothing and have "
    "no curve."
)
