"""Checkpoints, so that a preempted, killed or failed run resumes where it stopped when rerun.

Trainer does the heavy lifting: every `checkpoint_steps` optimizer steps it saves the model, optimizer,
scheduler, RNG states and trainer state (step, log history) into `<run>/checkpoints/checkpoint-<step>/`,
and `train(resume_from_checkpoint=...)` restores all of them and skips the batches already trained on
(the data order is seeded per epoch). This module adds what Trainer does not know about:

- Run state (RobustTrainer writes it, see trainer.py): the method components' own state (SMART's EMA
  teacher) in METHOD_STATE_FILE, and in RUN_STATE_FILE the method log, the trainer's unlogged losses and
  the run's config hash. RUN_STATE_FILE is written last, atomically, so it marks a checkpoint complete: a
  job killed while saving leaves a directory without it, which is never resumed from.
- When to save (CheckpointCallback): a checkpoint due at the end of an epoch is taken after that epoch's
  evaluation, because a run resumed from a checkpoint saved before it would skip it; none is taken at the
  last step (nothing would be left to resume but the evaluation, which the checkpoint would miss); and on
  SIGTERM, which SLURM sends before it kills a preempted or timed-out job, one is taken at the end of the
  current step and training stops.
- Only the newest complete checkpoint is kept: older ones are removed once a newer one is complete
  (Trainer's `save_total_limit` removes them before the run state of the new one is written).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from robustft.io import write_text_atomic

# The checkpoints on disk (which are complete, their step, their run state) are read where the run
# directory is prepared, without transformers (robustft.runs); importable from here too.
from robustft.runs import (  # noqa: F401
    CHECKPOINT_DIR,
    CHECKPOINT_NAME,
    RUN_STATE_FILE,
    checkpoint_step,
    complete_checkpoints,
    last_checkpoint,
    read_run_state,
    truncate_jsonl,
)

logger = logging.getLogger(__name__)

METHOD_STATE_FILE = "method_state.pt"


def write_run_state(checkpoint: Path, run_state: dict[str, Any], method_state: dict[str, Any]) -> None:
    """Write the method state, then the run state that marks the checkpoint complete."""
    import torch

    tmp = checkpoint / f".{METHOD_STATE_FILE}.tmp"
    torch.save(method_state, tmp)
    tmp.replace(checkpoint / METHOD_STATE_FILE)
    # Plain json.dumps: NaN (an unlogged diverging loss) must survive the round trip, not become null.
    write_text_atomic(checkpoint / RUN_STATE_FILE, json.dumps(run_state, sort_keys=True) + "\n")


def read_method_state(checkpoint: Path) -> dict[str, Any]:
    import torch

    return torch.load(checkpoint / METHOD_STATE_FILE, map_location="cpu", weights_only=True)


def remove_other_checkpoints(root: Path, keep: Path) -> None:
    for path in root.iterdir():
        if path.is_dir() and CHECKPOINT_NAME.match(path.name) and path != keep:
            shutil.rmtree(path, ignore_errors=True)


def _any_process(flag: bool, args: TrainingArguments) -> bool:
    """`flag` of any process of a distributed run: every rank must stop at the same step, or the others
    wait forever in their next collective operation. One small all-reduce per step; none on one process."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    value = torch.tensor(float(flag), device=args.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _ends_epoch(state: TrainerState) -> bool:
    # state.epoch = epoch + (batches done)/(batches per epoch): a whole number only at an epoch's end.
    return state.epoch is not None and float(state.epoch).is_integer()


class CheckpointCallback(TrainerCallback):
    """Decides when a checkpoint is taken (the module docstring says why), and stops on SIGTERM.

    Register it before DivergenceCallback, which clears a save it asks for at a diverged step.
    """

    def __init__(self) -> None:
        self.stop_requested = False  # set from the SIGTERM handler
        self.stopped_at: int | None = None  # the step whose checkpoint was saved before stopping
        self._stopping = False
        self._save_after_evaluation = False

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        if state.global_step >= state.max_steps:
            # Only the final evaluation is left: finish it even when asked to stop.
            control.should_save = False
        elif _any_process(self.stop_requested, args) and not self._stopping:
            logger.warning(
                "SIGTERM: saving a checkpoint at step %d and stopping; rerun the same command to resume",
                state.global_step,
            )
            self._stopping = True
            control.should_save = True
            control.should_training_stop = True
        if control.should_save and _ends_epoch(state):
            control.should_save = False
            self._save_after_evaluation = True
        return control

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        if self._stopping and not _ends_epoch(state):
            # Stopped mid-epoch: the resumed run evaluates when the epoch really ends.
            control.should_evaluate = False
        if self._save_after_evaluation:
            self._save_after_evaluation = False
            control.should_save = True
        return control

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._stopping:
            self.stopped_at = state.global_step


@contextlib.contextmanager
def stop_on_sigterm(callback: CheckpointCallback) -> Iterator[None]:
    """While training, SIGTERM asks `callback` to checkpoint and stop instead of killing the process."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread; SIGTERM then kills as usual
        return

    def request_stop(signum: int, frame: Any) -> None:
        callback.stop_requested = True  # no logging here: the handler may interrupt a logging call

    previous = signal.signal(signal.SIGTERM, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def loss_window(trainer: Any) -> dict[str, float]:
    """The training losses Trainer has summed since its last log (see restore_loss_window)."""
    return {"loss_sum": float(trainer._tr_loss), "last_logged_step": trainer._globalstep_last_logged}


def restore_loss_window(trainer: Any, window: dict[str, float]) -> None:
    """Trainer logs the mean loss since its last log, and on resuming starts that window afresh at the
    checkpoint: put back the losses of the steps before it, so the first loss logged after resuming is
    the one an uninterrupted run logs. Uses Trainer internals (transformers 5: `_tr_loss`,
    `_globalstep_last_logged`, `_total_loss_scalar`), hence the check."""
    import torch

    internals = ("_tr_loss", "_globalstep_last_logged", "_total_loss_scalar")
    if not all(hasattr(trainer, name) for name in internals):
        logger.warning(
            "this transformers version keeps its logging window elsewhere: the first loss logged after "
            "resuming averages only the steps since the checkpoint"
        )
        return
    loss_sum = float(window["loss_sum"])
    trainer._tr_loss = torch.tensor(loss_sum, device=trainer.args.device)
    trainer._globalstep_last_logged = int(window["last_logged_step"])
    # Trainer's train_loss summary covers the steps of this attempt only, like its runtime: the losses
    # put back belong to the earlier attempt, so they are taken out of its total again.
    trainer._total_loss_scalar = -loss_sum
