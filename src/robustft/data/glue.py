"""GLUE in its original TSV layout (`<data_dir>/glue/<TASK>/{train,dev}.tsv`), or from the Hub.

The local reader is strict: every row must have the file's column count and a known label, otherwise
it stops and names the file and line. Nothing is dropped silently.

`load_split` here is the entry point for every family's tasks (train/, prefetch and the benchmarks
import it from this module, and tests patch `_read_hub` here): it picks the local reader registered for
the task's `file_format`, and falls back to the Hub reader, which is the same for every family.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from pathlib import Path

from robustft.data.base import (
    READERS,
    SplitData,
    TaskSpec,
    get_task,
    register_reader,
    register_task,
)
from robustft.errors import DataFormatError, DataNotFoundError

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


def parse_label(task: TaskSpec, raw: str, where: str) -> int | float:
    """A label cell as an id (a float for regression); a DataFormatError naming `where` otherwise."""
    if task.labels is None:
        try:
            return float(raw)
        except ValueError:
            raise DataFormatError(f"{where}: label {raw!r} is not a number") from None
    try:
        return task.label_id(raw)
    except ValueError:
        raise DataFormatError(f"{where}: label {raw!r} is not one of {task.label_choices()}") from None


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
            labels.append(parse_label(task, row[index[task.label_column]], where))
    if not labels:
        raise DataFormatError(f"{path}: no data rows")
    return SplitData(texts=texts, labels=labels, source=f"local:{path}")


register_reader("tsv", read_glue_tsv)


def hub_columns_to_split(
    task: TaskSpec, texts: list[list[str]], raw_labels: Sequence[int | float | str], where: str
) -> SplitData:
    """Turn a Hub split's columns into a SplitData with our label ids.

    Integer labels are already the Hub's ids (ClassLabel), which `task.labels` follows; string labels
    (SciTail's configs have no ClassLabel) go through the same names and aliases as the local files.
    -1 is the Hub's "no gold label": dropped and counted where the task says so, an error elsewhere.
    """
    if task.labels is None:
        return SplitData(texts=texts, labels=[float(v) for v in raw_labels], source=where)
    keep: list[int] = []
    labels: list[int] = []
    for row, raw in enumerate(raw_labels):
        if isinstance(raw, str):
            try:
                label = task.label_id(raw)
            except ValueError:
                raise DataFormatError(
                    f"{where} row {row}: label {raw!r} is not one of {task.label_choices()}"
                ) from None
        else:
            label = int(raw)
            if label == -1 and task.drop_no_gold:
                continue
            if not 0 <= label < task.num_labels:
                raise DataFormatError(
                    f"{where} row {row}: label id {raw!r} is not in 0..{task.num_labels - 1}"
                )
        keep.append(row)
        labels.append(label)
    dropped = len(raw_labels) - len(keep)
    if dropped:
        texts = [[column[i] for i in keep] for column in texts]
        where = f"{where} ({dropped} rows without a gold label dropped)"
    return SplitData(texts=texts, labels=labels, source=where)


def _read_hub(task: TaskSpec, split: str, cache_dir: str | None) -> SplitData:
    import datasets  # heavy import, only when the Hub is actually used

    hub_split = task.hub_splits[split]  # "a+b" concatenates Hub splits, e.g. ANLI's three rounds
    dataset = datasets.load_dataset(task.hub_id, task.hub_config, split=hub_split, cache_dir=cache_dir)
    texts = [list(dataset[column]) for column in task.hub_text_columns]
    where = f"hub:{task.hub_id}/{task.hub_config}:{hub_split}"
    return hub_columns_to_split(task, texts, list(dataset[task.hub_label_column]), where)


def read_local(task: TaskSpec, paths: list[Path]) -> SplitData:
    """Read every local file of a split with the task's reader and concatenate them in order."""
    try:
        reader = READERS[task.file_format]
    except KeyError:
        raise KeyError(f"task {task.key!r}: no reader for file format {task.file_format!r}") from None
    parts = [reader(task, path) for path in paths]
    if len(parts) == 1:
        return parts[0]
    return SplitData(
        texts=[[text for part in parts for text in part.texts[i]] for i in range(len(parts[0].texts))],
        labels=[label for part in parts for label in part.labels],
        source=" + ".join(part.source for part in parts),
    )


def load_split(task_key: str, split: str, data_dir: str | Path, cache_dir: str | None = None) -> SplitData:
    """Local files first; the Hub when they are absent; one error naming both when neither works."""
    task = get_task(task_key)
    if split != "train" and split not in task.eval_splits:
        raise KeyError(
            f"task {task_key!r} has no split {split!r}; it has train, {', '.join(task.eval_splits)}"
        )
    paths = task.local_paths(data_dir, split)
    missing = [path for path in paths if not path.exists()]
    if not missing:
        return read_local(task, paths)
    if len(missing) < len(paths):
        # Half an unpacked archive: mixing local rounds with Hub rounds would hide it, so stop.
        found = [path for path in paths if path.exists()]
        raise DataNotFoundError(
            f"{task.paper_name} {split} is made of {len(paths)} local files; missing: "
            f"{', '.join(map(str, missing))} (found: {', '.join(map(str, found))}). "
            f"Put {task.local_hint} at those paths."
        )
    try:
        return _read_hub(task, split, cache_dir)
    except DataFormatError:
        raise  # the Hub answered but a row is wrong: that is not "no data"
    except Exception as err:  # network, offline mode, missing cache: all mean "not available"
        from robustft.offline import prefetch_hint  # only the error path needs it

        if len(paths) == 1:
            files = f"local file {paths[0]} does not exist"
        else:
            files = f"local files {', '.join(map(str, paths))} do not exist"
        raise DataNotFoundError(
            f"no data for {task.paper_name} {split}: {files} and the Hub dataset "
            f"{task.hub_id} (config {task.hub_config!r}, split {task.hub_splits[split]!r}) could not be "
            f"loaded ({type(err).__name__}: {err}). Put {task.local_hint} at that path, or fetch it. "
            + prefetch_hint(tasks=[task_key], data_dir=str(data_dir), cache_dir=cache_dir)
        ) from err
