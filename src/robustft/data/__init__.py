"""Benchmark data. Each family module registers its tasks into TASKS; adding a task is one entry."""

from __future__ import annotations

from robustft.data import glue as _glue  # noqa: F401  (registers the GLUE tasks)
from robustft.data.base import TASKS, DataFormatError, DataNotFoundError, TaskSpec, get_task

__all__ = ["TASKS", "DataFormatError", "DataNotFoundError", "TaskSpec", "get_task"]
