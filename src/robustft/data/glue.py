"""GLUE in its original TSV layout (`<data_dir>/glue/<TASK>/{train,dev}.tsv`), or from the Hub.

The local reader is strict: every row must have the file's column count and a known label, otherwise
it stops and names the file and line. Nothing is dropped silently.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from robustft.data.base import DataFormatError, DataNotFoundError, TaskSpec, get_task, register_task

HUB_ID = "nyu-mll/glue"
BINARY = ("0", "1")
NLI_2 = ("entailment", "not_entailment")

register_task(
    TaskSpec(
        key="cola",
        family="glue",
        paper_name="CoLA",
        local_dir="CoLA",
        header=False,
        n_columns=4,
        text_columns=(3,),
        label_column=1,
        labels=BINARY,
        primary_metric="mcc",
        metrics=("mcc", "accuracy"),
        hub_id=HUB_ID,
        hub_config="cola",
        hub_text_columns=("sentence",),
    )
)
register_task(
    TaskSpec(
        key="sst2",
        family="glue",
        paper_name="SST-2",
        local_dir="SST-2",
        text_columns=("sentence",),
        label_column="label",
        labels=BINARY,
        primary_metric="accuracy",
        metrics=("accuracy",),
        hub_id=HUB_ID,
        hub_config="sst2",
        hub_text_columns=("sentence",),
    )
)
register_task(
    TaskSpec(
        key="mrpc",
        family="glue",
        paper_name="MRPC",
        local_dir="MRPC",
        text_columns=("#1 String", "#2 String"),
        label_column="Quality",
        labels=BINARY,
        primary_metric="accuracy",
        metrics=("accuracy", "f1"),
        hub_id=HUB_ID,
        hub_config="mrpc",
        hub_text_columns=("sentence1", "sentence2"),
    )
)
register_task(
    TaskSpec(
        key="stsb",
        family="glue",
        paper_name="STS-B",
        local_dir="STS-B",
        text_columns=("sentence1", "sentence2"),
        label_column="score",
        labels=None,
        primary_metric="pearson",
        metrics=("pearson", "spearman"),
        hub_id=HUB_ID,
        hub_config="stsb",
        hub_text_columns=("sentence1", "sentence2"),
    )
)
register_task(
    TaskSpec(
        key="qqp",
        family="glue",
        paper_name="QQP",
        local_dir="QQP",
        text_columns=("question1", "question2"),
        label_column="is_duplicate",
        labels=BINARY,
        primary_metric="accuracy",
        metrics=("accuracy", "f1"),
        hub_id=HUB_ID,
        hub_config="qqp",
        hub_text_columns=("question1", "question2"),
    )
)
register_task(
    TaskSpec(
        key="mnli",
        family="glue",
        paper_name="MNLI",
        local_dir="MNLI",
        text_columns=("sentence1", "sentence2"),
        label_column="gold_label",
        labels=("entailment", "neutral", "contradiction"),
        primary_metric="accuracy",
        metrics=("accuracy",),
        hub_id=HUB_ID,
        hub_config="mnli",
        hub_text_columns=("premise", "hypothesis"),
        eval_splits={"dev": "dev_matched.tsv", "dev_mm": "dev_mismatched.tsv"},
        hub_splits={"train": "train", "dev": "validation_matched", "dev_mm": "validation_mismatched"},
    )
)
register_task(
    TaskSpec(
        key="qnli",
        family="glue",
        paper_name="QNLI",
        local_dir="QNLI",
        text_columns=("question", "sentence"),
        label_column="label",
        labels=NLI_2,
        primary_metric="accuracy",
        metrics=("accuracy",),
        hub_id=HUB_ID,
        hub_config="qnli",
        hub_text_columns=("question", "sentence"),
    )
)
register_task(
    TaskSpec(
        key="rte",
        family="glue",
        paper_name="RTE",
        local_dir="RTE",
        text_columns=("sentence1", "sentence2"),
        label_column="label",
        labels=NLI_2,
        primary_metric="accuracy",
        metrics=("accuracy",),
        hub_id=HUB_ID,
        hub_config="rte",
        hub_text_columns=("sentence1", "sentence2"),
    )
)
register_task(
    TaskSpec(
        key="wnli",
        family="glue",
        paper_name="WNLI",
        local_dir="WNLI",
        text_columns=("sentence1", "sentence2"),
        label_column="label",
        labels=BINARY,
        primary_metric="accuracy",
        metrics=("accuracy",),
        hub_id=HUB_ID,
        hub_config="wnli",
        hub_text_columns=("sentence1", "sentence2"),
    )
)

GLUE_ORDER = ("mnli", "qnli", "qqp", "rte", "sst2", "mrpc", "cola", "stsb", "wnli")  # NoisyTune Table 2


@dataclass
class SplitData:
    """Columns of one split: `texts` holds one list per text column, `labels` ids or floats."""

    texts: list[list[str]]
    labels: list[int] | list[float]
    source: str

    def __len__(self) -> int:
        return len(self.labels)


def _parse_label(task: TaskSpec, raw: str, where: str) -> int | float:
    if task.labels is None:
        try:
            return float(raw)
        except ValueError:
            raise DataFormatError(f"{where}: label {raw!r} is not a number") from None
    try:
        return task.labels.index(raw.strip())
    except ValueError:
        raise DataFormatError(f"{where}: label {raw!r} is not one of {list(task.labels)}") from None


def read_glue_tsv(task: TaskSpec, path: Path) -> SplitData:
    """Read one original GLUE TSV file (BOMs, headerless CoLA and unquoted text all handled)."""
    # GLUE text contains bare quotes, so quoting must be off; utf-8-sig strips MRPC's BOM.
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        if task.header:
            header = next(rows, None)
            if header is None:
                raise DataFormatError(f"{path}: file is empty")
            missing = [c for c in (*task.text_columns, task.label_column) if c not in header]
            if missing:
                raise DataFormatError(f"{path}:1: header lacks column(s) {missing}; header is {header}")
            n_columns = len(header)
            index = {name: header.index(name) for name in (*task.text_columns, task.label_column)}
            first_line = 2
        else:
            n_columns = task.n_columns
            index = {c: c for c in (*task.text_columns, task.label_column)}
            first_line = 1
        texts: list[list[str]] = [[] for _ in task.text_columns]
        labels: list = []
        for line_no, row in enumerate(rows, start=first_line):
            where = f"{path}:{line_no}"
            if len(row) != n_columns:
                raise DataFormatError(f"{where}: expected {n_columns} tab-separated fields, found {len(row)}")
            for column, values in zip(task.text_columns, texts, strict=True):
                values.append(row[index[column]])
            labels.append(_parse_label(task, row[index[task.label_column]], where))
    if not labels:
        raise DataFormatError(f"{path}: no data rows")
    return SplitData(texts=texts, labels=labels, source=f"local:{path}")


def _read_hub(task: TaskSpec, split: str, cache_dir: str | None) -> SplitData:
    import datasets  # heavy import, only when the Hub is actually used

    dataset = datasets.load_dataset(
        task.hub_id, task.hub_config, split=task.hub_splits[split], cache_dir=cache_dir
    )
    texts = [list(dataset[column]) for column in task.hub_text_columns]
    labels = list(dataset["label"])
    return SplitData(
        texts=texts, labels=labels, source=f"hub:{task.hub_id}/{task.hub_config}:{task.hub_splits[split]}"
    )


def load_split(task_key: str, split: str, data_dir: str | Path, cache_dir: str | None = None) -> SplitData:
    """Local TSV first; the Hub when the file is absent; one error naming both when neither works."""
    task = get_task(task_key)
    if split != "train" and split not in task.eval_splits:
        raise KeyError(
            f"task {task_key!r} has no split {split!r}; it has train, {', '.join(task.eval_splits)}"
        )
    path = task.local_path(data_dir, split)
    if path.exists():
        return read_glue_tsv(task, path)
    try:
        return _read_hub(task, split, cache_dir)
    except Exception as err:  # network, offline mode, missing cache: all mean "not available"
        raise DataNotFoundError(
            f"no data for {task.paper_name} {split}: local file {path} does not exist and the Hub dataset "
            f"{task.hub_id} (config {task.hub_config!r}, split {task.hub_splits[split]!r}) could not be "
            f"loaded ({type(err).__name__}: {err}). Put the GLUE TSV at that path, or run "
            f"`robustft prefetch` where the Hub is reachable."
        ) from err
