"""The task contract shared by every benchmark family: a spec, a registry and the errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class DataNotFoundError(FileNotFoundError):
    """Neither the local file nor the Hub dataset could be read."""


class DataFormatError(ValueError):
    """A data file exists but a row does not have the documented layout."""


@dataclass(frozen=True)
class TaskSpec:
    """One supervised sentence(-pair) task.

    `labels` lists the raw label strings in the order of the Hub's integer ids, so local files and the
    Hub give the same ids; `labels=None` means a regression task (one float target).
    `eval_splits` maps our split name to the local file name; the first one is the primary split.
    """

    key: str
    family: str
    paper_name: str
    local_dir: str
    text_columns: tuple[str | int, ...]
    label_column: str | int
    labels: tuple[str, ...] | None
    primary_metric: str
    metrics: tuple[str, ...]
    hub_id: str
    hub_config: str
    hub_text_columns: tuple[str, ...]
    header: bool = True
    n_columns: int | None = None  # for headerless files
    eval_splits: dict[str, str] = field(default_factory=lambda: {"dev": "dev.tsv"})
    hub_splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "dev": "validation"})

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    def local_path(self, data_dir: str | Path, split: str) -> Path:
        file_name = "train.tsv" if split == "train" else self.eval_splits[split]
        return Path(data_dir) / self.family / self.local_dir / file_name


TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    TASKS[spec.key] = spec
    return spec


def get_task(key: str) -> TaskSpec:
    try:
        return TASKS[key]
    except KeyError:
        known = ", ".join(sorted(TASKS))
        raise KeyError(f"unknown task {key!r}; known tasks: {known}") from None
