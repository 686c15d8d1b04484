"""Benchmark data. Each family module registers its tasks into TASKS; adding a task is one entry."""

from __future__ import annotations

from robustft.data import glue as _glue  # noqa: F401  (registers the GLUE tasks)
from robustft.data import nli as _nli  # noqa: F401  (registers SNLI, SciTail, ANLI)
from robustft.data.base import (
    TASKS,
    SplitData,
    TaskSpec,
    get_task,
    split_task_variant,
    subsample_fraction,
    task_variant_name,
)
from robustft.data.glue import load_split
from robustft.data.nli import AnnotatedSplit, load_mnli_annotations
from robustft.errors import DataFormatError, DataNotFoundError

__all__ = [
    "TASKS",
    "AnnotatedSplit",
    "DataFormatError",
    "DataNotFoundError",
    "SplitData",
    "TaskSpec",
    "get_task",
    "load_mnli_annotations",
    "load_split",
    "split_task_variant",
    "subsample_fraction",
    "task_variant_name",
]
