"""The task contract shared by every benchmark family: a spec, a registry, the split type and the errors."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from robustft.errors import DataFormatError, DataNotFoundError  # noqa: F401  (still importable from here)


@dataclass
class SplitData:
    """Columns of one split: `texts` holds one list per text column, `labels` ids or floats."""

    texts: list[list[str]]
    labels: list[int] | list[float]
    source: str

    def __len__(self) -> int:
        return len(self.labels)


def subsample_fraction(split: SplitData, fraction: float, seed: int) -> SplitData:
    """A random `fraction` of a split (floor(n * fraction) rows, in file order), fixed by `seed`.

    The size rounds down as SMART Table 5 does (0.1% of SciTail's 23,596 is 23). One permutation per
    seed is cut at each size, so with one seed the smaller subsets are nested in the larger ones
    (0.1% in 1% in 10%): the curve over sizes then varies the amount of data, not which examples.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    n = len(split)
    # Round first so 0.29 * 100 = 28.999999999999996 counts as 29 rows.
    size = math.floor(round(n * fraction, 6))
    if size < 1:
        raise ValueError(f"a fraction of {fraction:g} of {n} rows ({split.source}) is empty")
    if size == n:
        return split
    import numpy as np  # here, not at the top: the workflow imports this module to parse the DAG

    keep = np.sort(np.random.default_rng(seed).permutation(n)[:size])
    return SplitData(
        texts=[[column[i] for i in keep] for column in split.texts],
        labels=[split.labels[i] for i in keep],
        source=f"{split.source} (random {fraction:g} = {size} of {n}, data_seed={seed})",
    )


@dataclass(frozen=True)
class TaskSpec:
    """One supervised sentence(-pair) task.

    `labels` lists the label names in the order of the Hub's integer ids, so local files and the
    Hub give the same ids; `labels=None` means a regression task (one float target). `label_aliases`
    maps a file's own spelling to those names (ANLI writes `e`/`n`/`c`, SciTail's TSV `entails`).
    `eval_splits` maps our split name to the local file name(s) under `<data_dir>/<family>/<local_dir>/`;
    the first one is the primary split. A split made of several files (ANLI's rounds together) joins
    them with `+`, the same syntax the Hub uses to join splits in `hub_splits`.
    `file_format` names the reader of the local files (see `register_reader`).
    `drop_no_gold` drops rows the dataset's authors mark as having no gold label (SNLI: `-` in the
    files, -1 on the Hub); the split's `source` says how many were dropped.
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
    hub_label_column: str = "label"
    train_file: str = "train.tsv"
    file_format: str = "tsv"
    label_aliases: dict[str, str] = field(default_factory=dict)
    drop_no_gold: bool = False
    local_hint: str = "the GLUE TSV"  # what to put at the local path, for the not-found message

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    def local_paths(self, data_dir: str | Path, split: str) -> list[Path]:
        """Every local file of a split, in the order their rows are concatenated."""
        names = self.train_file if split == "train" else self.eval_splits[split]
        return [Path(data_dir) / self.family / self.local_dir / name for name in names.split("+")]

    def local_path(self, data_dir: str | Path, split: str) -> Path:
        """The one local file of a split (for splits made of a single file)."""
        paths = self.local_paths(data_dir, split)
        if len(paths) != 1:
            raise ValueError(f"{self.key} {split} is made of {len(paths)} files; use local_paths()")
        return paths[0]

    def label_id(self, raw: str) -> int:
        """The Hub id of a label as a file spells it; ValueError when it is not a label of this task."""
        if self.labels is None:
            raise ValueError(f"{self.key} is a regression task: it has no label ids")
        name = raw.strip()
        return self.labels.index(self.label_aliases.get(name, name))

    def label_choices(self) -> list[str]:
        """The spellings a local file may use, for error messages."""
        return [*(self.labels or ()), *self.label_aliases]


TASKS: dict[str, TaskSpec] = {}

# file_format -> function reading one local file of a task into a SplitData.
LocalReader = Callable[[TaskSpec, Path], SplitData]
READERS: dict[str, LocalReader] = {}


def register_reader(file_format: str, reader: LocalReader) -> LocalReader:
    READERS[file_format] = reader
    return reader


def register_task(spec: TaskSpec) -> TaskSpec:
    TASKS[spec.key] = spec
    return spec


# A task variant trains on a fraction of the training split: "mrpc@0.2" is MRPC with 20% of its
# training examples (NoisyTune Figure 4, SMART Table 5). Dev sets are never subsampled by a variant.
VARIANT_SEPARATOR = "@"


def split_task_variant(name: str) -> tuple[str, float | None]:
    """ "mrpc@0.2" -> ("mrpc", 0.2); "mrpc" -> ("mrpc", None). The fraction must be in (0, 1]."""
    key, separator, fraction_text = name.partition(VARIANT_SEPARATOR)
    if not separator:
        return name, None
    try:
        fraction = float(fraction_text)
    except ValueError:
        fraction = float("nan")
    if not 0 < fraction <= 1:
        raise KeyError(
            f"task {name!r}: the part after {VARIANT_SEPARATOR!r} must be a training fraction in (0, 1], "
            f"e.g. {key}@0.2"
        )
    return key, fraction


def task_variant_name(key: str, fraction: float | None) -> str:
    return key if fraction is None or fraction == 1 else f"{key}{VARIANT_SEPARATOR}{fraction:g}"


def get_task(key: str) -> TaskSpec:
    """The task of a key or of a variant key ("mrpc@0.2" -> MRPC)."""
    base, _ = split_task_variant(key)
    try:
        return TASKS[base]
    except KeyError:
        known = ", ".join(sorted(TASKS))
        raise KeyError(f"unknown task {base!r}; known tasks: {known}") from None
