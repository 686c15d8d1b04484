"""Train several GLUE runs in turn in one process, so Python, torch and transformers start once for all of
them instead of once per run (`robustft train-many`; docs/cluster.md, "Many small runs in one job").

Each run keeps the contract of a run trained alone (train.glue.train_run, docs/outputs.md): its own run
directory, metrics.json written last and atomically. A run that finished before with the same
configuration is skipped, so a pack that stopped half-way is finished by running it again. A run that
fails leaves run.json with the error, as alone, and the next run starts; a run stopped by SIGTERM (its
checkpoint saved) stops the pack, because SIGTERM means the job itself is ending.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from robustft.errors import RunError, RunPreempted
from robustft.train.config import RunSpec
from robustft.train.glue import finished_result, train_run

logger = logging.getLogger(__name__)

SKIPPED = "skipped"  # finished before with the same configuration
ERROR = "error"  # stopped by an exception: run.json says which
FINISHED = ("ok", "diverged", SKIPPED)  # the statuses of a run that has its metrics.json


@dataclass(frozen=True)
class PackedRun:
    spec: RunSpec
    out_dir: Path


@dataclass(frozen=True)
class PackedOutcome:
    """What became of one run of a pack: metrics.json's status, `skipped` or `error`."""

    out_dir: Path
    status: str
    seconds: float
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status not in FINISHED


def validate_runs(runs: Sequence[PackedRun]) -> None:
    """Check every run's names and settings before the first one trains: a typo in the last run of a pack
    fails at once, not after the others have used their GPU time. Two runs in one directory would
    overwrite each other."""
    seen: set[Path] = set()
    for run in runs:
        try:
            run.spec.validate()
        except Exception as err:
            raise RunError(f"run {run.out_dir}: {err}") from err
        directory = Path(run.out_dir).resolve()
        if directory in seen:
            raise RunError(f"two runs of the pack write {run.out_dir}")
        seen.add(directory)


def train_runs(runs: Sequence[PackedRun]) -> list[PackedOutcome]:
    """Train `runs` one after another in this process and say what became of each (in their order)."""
    validate_runs(runs)
    outcomes = []
    for number, run in enumerate(runs, 1):
        logger.info("run %d of %d: %s", number, len(runs), run.out_dir)
        outcomes.append(_train_one(run))
    return outcomes


def _train_one(run: PackedRun) -> PackedOutcome:
    started = time.perf_counter()
    if finished_result(run.spec, run.out_dir) is not None:
        logger.info("run %s finished before with this configuration: skipped", run.out_dir)
        return PackedOutcome(run.out_dir, SKIPPED, 0.0)
    try:
        result = train_run(run.spec, run.out_dir)
    except RunPreempted:
        raise
    except Exception as err:
        # train_run has written run.json with the error; the next run does not depend on this one.
        logger.exception("run %s failed", run.out_dir)
        return PackedOutcome(
            run.out_dir, ERROR, time.perf_counter() - started, f"{type(err).__name__}: {err}"
        )
    finally:
        _release_memory()
    return PackedOutcome(run.out_dir, result["status"], time.perf_counter() - started)


def _release_memory() -> None:
    """Free the finished run's model, optimizer and activations before the next run allocates its own
    (a failed run's traceback held them until here)."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
