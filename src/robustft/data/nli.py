"""The SMART paper's extra NLI data: SNLI, SciTail, ANLI, and MNLI's annotator labels (Figure 2).

Local files are the original distributions, unzipped into `<data_dir>/nli/`:

    nli/snli_1.0/snli_1.0_{train,dev,test}.jsonl
    nli/SciTailV1.1/tsv_format/scitail_1.0_{train,dev,test}.tsv
    nli/anli_v1.0/R{1,2,3}/{train,dev,test}.jsonl
    nli/multinli_1.0/multinli_1.0_dev_{matched,mismatched}.jsonl   (annotator labels only)

When they are absent, `load_split` reads the Hub instead (the ids below). Readers are as strict as the
GLUE one: a malformed row stops the run with file:line; the only rows ever dropped are those the
dataset's authors mark as having no gold label (SNLI and MultiNLI `-`), and the split's `source`
counts them.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustft.data.base import (
    SplitData,
    TaskSpec,
    get_task,
    register_reader,
    register_task,
)
from robustft.data.glue import parse_label
from robustft.errors import DataFormatError, DataNotFoundError

# The label names of every 3-way NLI dataset here, in the order of the Hub's ClassLabel ids:
# stanfordnlp/snli and facebook/anli both declare names=["entailment", "neutral", "contradiction"]
# (their dataset cards), the same order as nyu-mll/glue's MNLI.
NLI_3 = ("entailment", "neutral", "contradiction")
# allenai/scitail has no ClassLabel (its labels are strings in every config), so these ids are ours:
# entailment first, as in the 3-way datasets above.
SCITAIL_LABELS = ("entailment", "neutral")
# The original ANLI files spell labels with one letter (facebookresearch/anli README).
ANLI_ALIASES = {"e": "entailment", "n": "neutral", "c": "contradiction"}
NO_GOLD = "-"  # SNLI / MultiNLI: the five annotators reached no majority


def read_nli_jsonl(task: TaskSpec, path: Path) -> SplitData:
    """Read one original SNLI / ANLI jsonl file: one JSON object per line, keys named by the task."""
    texts: list[list[str]] = [[] for _ in task.text_columns]
    labels: list[int | float] = []
    dropped = 0
    for line_no, record in _jsonl_records(path):
        where = f"{path}:{line_no}"
        raw = _field(record, task.label_column, where)
        if task.drop_no_gold and raw == NO_GOLD:
            dropped += 1
            continue
        for column, values in zip(task.text_columns, texts, strict=True):
            values.append(_field(record, column, where))
        labels.append(parse_label(task, raw, where))
    if not labels:
        raise DataFormatError(
            f"{path}: no data rows" + (f" ({dropped} without a gold label)" if dropped else "")
        )
    source = f"local:{path}" + (f" ({dropped} rows without a gold label dropped)" if dropped else "")
    return SplitData(texts=texts, labels=labels, source=source)


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a line that is not a JSON object stops it."""
    # utf-8-sig: a BOM before the first object would otherwise make line 1 invalid JSON.
    with path.open(encoding="utf-8-sig") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue  # a blank line (e.g. a trailing one) holds no row, so skipping it drops nothing
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(
                    f"{path}:{line_no}: not valid JSON ({err.msg}, column {err.colno})"
                ) from None
            if not isinstance(record, dict):
                raise DataFormatError(
                    f"{path}:{line_no}: expected a JSON object, found {type(record).__name__}"
                )
            yield line_no, record


def _field(record: dict[str, Any], key: str | int, where: str) -> str:
    value = record.get(str(key))
    if not isinstance(value, str):
        problem = "lacks key" if str(key) not in record else f"has a {type(value).__name__} under key"
        raise DataFormatError(f"{where}: record {problem} {str(key)!r} (keys: {sorted(record)})")
    return value


register_reader("jsonl", read_nli_jsonl)

register_task(
    TaskSpec(
        key="snli",
        family="nli",
        paper_name="SNLI",
        local_dir="snli_1.0",
        file_format="jsonl",
        train_file="snli_1.0_train.jsonl",
        eval_splits={"dev": "snli_1.0_dev.jsonl", "test": "snli_1.0_test.jsonl"},
        text_columns=("sentence1", "sentence2"),
        label_column="gold_label",
        labels=NLI_3,
        drop_no_gold=True,  # 785 train, 158 dev, 176 test rows: 549,367 train pairs as in SMART Table 5
        primary_metric="accuracy",
        metrics=("accuracy",),
        hub_id="stanfordnlp/snli",
        hub_config="plain_text",
        hub_text_columns=("premise", "hypothesis"),
        hub_splits={"train": "train", "dev": "validation", "test": "test"},
        local_hint="the original snli_1.0 files (unzip snli_1.0.zip into <data_dir>/nli/)",
    )
)
register_task(
    TaskSpec(
        key="scitail",
        family="nli",
        paper_name="SciTail",
        local_dir="SciTailV1.1/tsv_format",
        file_format="tsv",  # headerless premise, hypothesis, label: the GLUE reader handles it
        header=False,
        n_columns=3,
        train_file="scitail_1.0_train.tsv",
        eval_splits={"dev": "scitail_1.0_dev.tsv", "test": "scitail_1.0_test.tsv"},
        text_columns=(0, 1),
        label_column=2,
        labels=SCITAIL_LABELS,
        label_aliases={"entails": "entailment"},
        primary_metric="accuracy",
        metrics=("accuracy",),
        hub_id="allenai/scitail",
        # Not `tsv_format`: the Hub built that config with csv's default quoting, which merges rows at
        # stray quote characters (23,097 train rows instead of the 23,596 SMART Table 5 counts);
        # `snli_format` holds all 23,596 with the same texts.
        hub_config="snli_format",
        hub_text_columns=("sentence1", "sentence2"),
        hub_label_column="gold_label",
        hub_splits={"train": "train", "dev": "validation", "test": "test"},
        local_hint="the original SciTailV1.1 files (unzip SciTailV1.1.zip into <data_dir>/nli/)",
    )
)


def _anli_task(key: str, paper_name: str, rounds: tuple[int, ...]) -> TaskSpec:
    """ANLI trained on the given rounds together; evaluated on their dev/test sets together
    (`dev`, `test`) and, when there are several rounds, on each round alone (`dev_r1`, `test_r2`, ...)."""

    def files(split: str, chosen: tuple[int, ...]) -> str:
        return "+".join(f"R{r}/{split}.jsonl" for r in chosen)

    def hub(split: str, chosen: tuple[int, ...]) -> str:
        return "+".join(f"{split}_r{r}" for r in chosen)

    # "dev" (the primary split) first, then each round's dev set, then the same for test: SMART Table 6.
    eval_splits: dict[str, str] = {}
    hub_splits = {"train": hub("train", rounds)}
    for split in ("dev", "test"):
        parts = [(split, rounds)]
        if len(rounds) > 1:
            parts += [(f"{split}_r{r}", (r,)) for r in rounds]
        for name, chosen in parts:
            eval_splits[name] = files(split, chosen)
            hub_splits[name] = hub(split, chosen)
    return TaskSpec(
        key=key,
        family="nli",
        paper_name=paper_name,
        local_dir="anli_v1.0",
        file_format="jsonl",
        train_file=files("train", rounds),
        eval_splits=eval_splits,
        text_columns=("context", "hypothesis"),
        label_column="label",
        labels=NLI_3,
        label_aliases=ANLI_ALIASES,
        primary_metric="accuracy",
        metrics=("accuracy",),
        hub_id="facebook/anli",
        hub_config="plain_text",
        hub_text_columns=("premise", "hypothesis"),
        hub_splits=hub_splits,
        local_hint="the original anli_v1.0 files (unzip anli_v1.0.zip into <data_dir>/nli/)",
    )


for _round in (1, 2, 3):
    register_task(_anli_task(f"anli_r{_round}", f"ANLI-R{_round}", (_round,)))
# SMART Table 6 block B: train on all three rounds, report each round and all of them ("All").
register_task(_anli_task("anli", "ANLI", (1, 2, 3)))


# ------------------------------------------------------------------------------- MNLI annotator labels

MNLI_SPLITS = {"dev": "matched", "dev_mm": "mismatched"}


@dataclass
class AnnotatedSplit:
    """MNLI dev examples with the votes of their annotators, in file order, for SMART Figure 2.

    Predictions of an MNLI run are bucketed by position, so first `check_aligned(load_split("mnli",
    split, ...))` proves the run's dev set holds the same examples in the same order.

    `votes[i][j]` counts the annotators of example i who chose label id j (MNLI's Hub order); the
    original author's label is one of them, as in MultiNLI's `annotator_labels`.
    """

    texts: list[list[str]]  # premise, hypothesis
    labels: list[int]  # gold label ids
    pair_ids: list[str]
    votes: list[tuple[int, ...]]
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def agreement(self) -> list[int]:
        """How many annotators chose the gold label (3..5 for MNLI dev)."""
        return [vote[label] for vote, label in zip(self.votes, self.labels, strict=True)]

    def agreement_fraction(self) -> list[float]:
        return [vote[label] / sum(vote) for vote, label in zip(self.votes, self.labels, strict=True)]

    def patterns(self) -> list[str]:
        """The paper's buckets: votes sorted high to low, e.g. "4/1/0" or "3/1/1"."""
        return ["/".join(str(v) for v in sorted(vote, reverse=True)) for vote in self.votes]

    def distributions(self) -> list[tuple[float, ...]]:
        """Each example's annotation distribution p (votes / annotators), for the paper's "KL" column."""
        return [tuple(v / sum(vote) for v in vote) for vote in self.votes]

    def check_aligned(self, split: SplitData) -> None:
        """Stop unless `split` holds the same examples in the same order (predictions made on it can then
        be bucketed by position). A subsampled or reordered split fails here instead of mis-bucketing."""
        if len(split) != len(self):
            raise ValueError(f"{split.source} has {len(split)} examples, the annotations {len(self)}")
        for i in range(len(self)):
            # Whitespace at the ends is not compared: copies of GLUE differ in trailing spaces.
            theirs = (split.texts[0][i].strip(), split.texts[1][i].strip(), split.labels[i])
            mine = (self.texts[0][i].strip(), self.texts[1][i].strip(), self.labels[i])
            if theirs != mine:
                raise ValueError(
                    f"example {i} differs: {split.source} has {theirs!r}, {self.source} has {mine!r}"
                )


def load_mnli_annotations(split: str, data_dir: str | Path) -> AnnotatedSplit:
    """MNLI matched (`dev`) or mismatched (`dev_mm`) dev set with five annotator labels per example.

    Read from the GLUE TSV (`label1`..`label5`), else from the original multinli_1.0 jsonl
    (`annotator_labels`, rows without a gold label dropped as GLUE did). No Hub copy has the annotator
    labels (nyu-mll/glue and nyu-mll/multi_nli keep the gold label only), so there is no Hub fallback.
    """
    if split not in MNLI_SPLITS:
        raise KeyError(f"MNLI annotations exist for {sorted(MNLI_SPLITS)}, not {split!r}")
    glue_path = get_task("mnli").local_path(data_dir, split)
    original = Path(data_dir) / "nli" / "multinli_1.0" / f"multinli_1.0_dev_{MNLI_SPLITS[split]}.jsonl"
    if glue_path.exists():
        return _read_glue_annotations(glue_path)
    if original.exists():
        return _read_multinli_annotations(original)
    raise DataNotFoundError(
        f"no MNLI {split} annotator labels: neither the GLUE TSV {glue_path} (columns label1..label5) nor "
        f"the original {original} (annotator_labels) exists, and no Hub dataset carries them "
        f"(nyu-mll/glue and nyu-mll/multi_nli keep the gold label only). Put one of those files there."
    )


def _annotation_votes(raw_labels: list[str], where: str) -> tuple[int, ...]:
    labels = NLI_3  # MNLI's label ids (nyu-mll/glue) are in the same order
    votes = [0] * len(labels)
    for raw in raw_labels:
        if not raw.strip():
            continue  # an unfilled annotation slot: counted out, so sum(votes) says how many voted
        if raw.strip() not in labels:
            raise DataFormatError(f"{where}: annotator label {raw!r} is not one of {list(labels)}")
        votes[labels.index(raw.strip())] += 1
    if not any(votes):
        raise DataFormatError(f"{where}: no annotator labels")
    return tuple(votes)


def _read_glue_annotations(path: Path) -> AnnotatedSplit:
    columns = ("pairID", "sentence1", "sentence2", "gold_label", *(f"label{i}" for i in range(1, 6)))
    task = get_task("mnli")
    csv.field_size_limit(sys.maxsize)
    result = AnnotatedSplit(texts=[[], []], labels=[], pair_ids=[], votes=[], source=f"local:{path}")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)  # bare quotes, as in read_glue_tsv
        header = next(rows, None)
        if header is None:
            raise DataFormatError(f"{path}: file is empty")
        missing = [c for c in columns if c not in header]
        if missing:
            raise DataFormatError(f"{path}:1: header lacks column(s) {missing}; header is {header}")
        at = {c: header.index(c) for c in columns}
        for line_no, row in enumerate(rows, start=2):
            where = f"{path}:{line_no}"
            if len(row) != len(header):
                raise DataFormatError(
                    f"{where}: expected {len(header)} tab-separated fields, found {len(row)}"
                )
            result.texts[0].append(row[at["sentence1"]])
            result.texts[1].append(row[at["sentence2"]])
            result.labels.append(int(parse_label(task, row[at["gold_label"]], where)))
            result.pair_ids.append(row[at["pairID"]])
            result.votes.append(_annotation_votes([row[at[f"label{i}"]] for i in range(1, 6)], where))
    if not result.labels:
        raise DataFormatError(f"{path}: no data rows")
    return result


def _read_multinli_annotations(path: Path) -> AnnotatedSplit:
    task = get_task("mnli")
    result = AnnotatedSplit(texts=[[], []], labels=[], pair_ids=[], votes=[], source=f"local:{path}")
    dropped = 0
    for line_no, record in _jsonl_records(path):
        where = f"{path}:{line_no}"
        gold = _field(record, "gold_label", where)
        if gold == NO_GOLD:
            dropped += 1
            continue
        annotations = record.get("annotator_labels")
        if not isinstance(annotations, list) or not all(isinstance(a, str) for a in annotations):
            raise DataFormatError(f"{where}: 'annotator_labels' is not a list of strings: {annotations!r}")
        result.texts[0].append(_field(record, "sentence1", where))
        result.texts[1].append(_field(record, "sentence2", where))
        result.labels.append(int(parse_label(task, gold, where)))
        result.pair_ids.append(_field(record, "pairID", where))
        result.votes.append(_annotation_votes(annotations, where))
    if not result.labels:
        raise DataFormatError(f"{path}: no data rows")
    if dropped:
        result.source += f" ({dropped} rows without a gold label dropped)"
    return result
