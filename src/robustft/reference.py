"""The papers' published numbers, as transcribed in `reference/paper_results.csv`.

Values are in points (84.4 means 84.4 %). Every row carries its source and a confidence, so a
report can cite where each paper number came from.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from robustft.errors import AmbiguousPaperValue

if TYPE_CHECKING:
    import pandas as pd

# Our GLUE task keys (lowercase, as in the datasets library) -> the names the papers print.
PAPER_TASK_NAME: dict[str, str] = {
    "cola": "CoLA",
    "sst2": "SST-2",
    "mrpc": "MRPC",
    "stsb": "STS-B",
    "qqp": "QQP",
    "mnli": "MNLI",
    "qnli": "QNLI",
    "rte": "RTE",
    "wnli": "WNLI",
}

# Tasks whose primary score some paper prints under another name than PAPER_TASK_NAME's, in the order
# tried: SMART's Tables 1 and 2 split MNLI into "MNLI-m" and "MNLI-mm" columns, and our primary MNLI
# metric is the matched dev set's accuracy.
PAPER_DATASET_ALIASES: dict[str, tuple[str, ...]] = {"mnli": ("MNLI-m",)}

# Name of the GLUE average, both as a "task" in our summary tables and as a dataset in the papers.
GLUE_AVG = "GLUE-avg"

# Column order of NoisyTune Table 2 (the average comes last).
GLUE_TABLE_ORDER: tuple[str, ...] = ("MNLI", "QNLI", "QQP", "RTE", "SST-2", "MRPC", "CoLA", "STS-B", "WNLI")

# Full sizes of the GLUE splits (train, validation) in the `nyu-mll/glue` dataset, used to say
# whether a run trained or evaluated on a subset. MNLI validation is the matched split.
GLUE_SPLIT_SIZES: dict[str, tuple[int, int]] = {
    "cola": (8551, 1043),
    "sst2": (67349, 872),
    "mrpc": (3668, 408),
    "stsb": (5749, 1500),
    "qqp": (363846, 40430),
    "mnli": (392702, 9815),
    "qnli": (104743, 5463),
    "rte": (2490, 277),
    "wnli": (635, 71),
}


@dataclass(frozen=True)
class PaperNumber:
    """One published number and where it came from."""

    value: float
    metric: str
    split: str
    source: str
    confidence: str


def paper_task_name(task: str) -> str:
    """The paper's name for one of our task keys; unknown tasks (and the average) pass through."""
    return PAPER_TASK_NAME.get(task, task)


def paper_dataset_name(paper: str, artifact: str, task: str) -> str:
    """The dataset name under which `paper`'s `artifact` prints our task's primary score: the paper's
    usual name (paper_task_name) if the artifact uses it, else the first alias it uses (SMART Table 1:
    "MNLI-m" for mnli), else the usual name. Unknown tasks and the average pass through."""
    names = (paper_task_name(task), *PAPER_DATASET_ALIASES.get(task, ()))
    frame = _load()
    used = set(frame.loc[(frame["paper"] == paper) & (frame["artifact"] == artifact), "dataset"])
    return next((name for name in names if name in used), names[0])


@functools.cache
def _load() -> pd.DataFrame:
    # pandas only here: the workflow reads this module's tables (task names, split sizes) at parse time.
    import pandas as pd

    text = resources.files("robustft").joinpath("reference", "paper_results.csv").read_text(encoding="utf-8")
    # keep_default_na=False: an empty note stays "" and no name (e.g. "NA") is read as missing.
    frame = pd.read_csv(io.StringIO(text), dtype={"value": float}, keep_default_na=False)
    # The transcription repeats some rows verbatim (e.g. a number quoted in both a table and the text).
    return frame.drop_duplicates(ignore_index=True)


def load_paper_results() -> pd.DataFrame:
    """All transcribed paper numbers, exact duplicate rows dropped (a copy: callers may modify it)."""
    return _load().copy()


def paper_lookup(
    paper: str,
    artifact: str,
    model: str,
    dataset: str,
    method: str,
    metric: str | None = None,
    *,
    split: str | None = None,
) -> PaperNumber | None:
    """The published number for one cell of a paper's artifact, or None if the paper has no such cell.

    Raises KeyError if (paper, artifact) is not transcribed at all, so a misspelt artifact fails
    loudly instead of reading as "the paper reports nothing", and AmbiguousPaperValue if the key
    matches several different numbers (e.g. SMART Table 6 reports two training settings).
    """
    frame = _load()
    in_artifact = frame[(frame["paper"] == paper) & (frame["artifact"] == artifact)]
    if in_artifact.empty:
        known = sorted(frame.loc[frame["paper"] == paper, "artifact"].unique())
        raise KeyError(f"no transcribed numbers for {paper!r} {artifact!r}; known artifacts: {known}")
    mask = (
        (in_artifact["model"] == model)
        & (in_artifact["dataset"] == dataset)
        & (in_artifact["method"] == method)
    )
    if metric is not None:
        mask &= in_artifact["metric"] == metric
    if split is not None:
        mask &= in_artifact["split"] == split
    rows = in_artifact[mask]
    if rows.empty:
        return None
    # Rows that agree on the number, metric and split (differing only in notes) are one fact.
    distinct = rows.drop_duplicates(subset=["value", "metric", "split"])
    if len(distinct) > 1:
        options = "; ".join(
            f"{r.value} ({r.metric}, split={r.split}, notes={r.notes[:80]!r})" for r in distinct.itertuples()
        )
        raise AmbiguousPaperValue(
            f"{paper} {artifact} {model}/{dataset}/{method} matches {len(distinct)} different values: "
            f"{options}. Pass metric= or split= where those differ; rows that differ only in their notes "
            "(e.g. two training settings) cannot be told apart by this key: read load_paper_results()."
        )
    first = distinct.iloc[0]
    return PaperNumber(
        value=float(first["value"]),
        metric=first["metric"],
        split=first["split"],
        source=" | ".join(dict.fromkeys(rows["source"])),
        confidence=" | ".join(dict.fromkeys(rows["confidence"])),
    )


def paper_value(
    paper: str,
    artifact: str,
    model: str,
    dataset: str,
    method: str,
    metric: str | None = None,
    *,
    split: str | None = None,
) -> float | None:
    """The published value (in points) for one cell, or None if absent; see `paper_lookup` for errors."""
    number = paper_lookup(paper, artifact, model, dataset, method, metric, split=split)
    return None if number is None else number.value
