"""Trainer callbacks that write the run contract's history.jsonl and norms.jsonl as training goes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from robustft.io import append_jsonl
from robustft.train.norms import group_l1_norms


class HistoryCallback(TrainerCallback):
    """Every Trainer log (train loss, learning rate, eval loss and metrics) becomes one line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args, state: TrainerState, control: TrainerControl, logs=None, **kwargs) -> None:
        # Under `accelerate launch` every process runs the callbacks; one writer keeps the file whole.
        if logs and state.is_world_process_zero:
            append_jsonl(self.path, {"step": state.global_step, "epoch": state.epoch, **logs})


def norm_checkpoint_steps(max_steps: int, checkpoints: int) -> dict[int, list[int]]:
    """{optimizer step: [checkpoint numbers]} for `checkpoints` evenly spaced points over `max_steps`.

    Checkpoint k (1..N) is at step round(k * max_steps / N), halves rounded up (integer arithmetic, so no
    float or banker's rounding decides a step), and never before step 1: step 0 is the start record.
    With more checkpoints than steps, several share a step; each still gets its own record, so every
    run has checkpoints 0..N and runs of one configuration line up point for point.
    """
    steps: dict[int, list[int]] = {}
    for k in range(1, checkpoints + 1):
        step = max(1, (2 * k * max_steps + checkpoints) // (2 * checkpoints))
        steps.setdefault(step, []).append(k)
    return steps


class NormCallback(TrainerCallback):
    """L1 norm per parameter group at the start (after any pre-training perturbation), at each eval and,
    with `checkpoints` > 0, at that many evenly spaced optimizer steps (NoisyTune Figure 5).

    Records are {"point": "start" | "checkpoint" | "eval", "step", "epoch", "groups"}; with checkpoints,
    "start" and "checkpoint" records also carry their checkpoint number (start is 0). A resumed run never
    repeats one: the run directory keeps the records up to the checkpoint's step, and Trainer calls
    on_step_end only for the steps after it (and on_train_begin at step > 0, where no start is written).
    """

    def __init__(self, path: Path, exclude: frozenset[str], checkpoints: int = 0) -> None:
        self.path = path
        self.exclude = exclude
        self.checkpoints = checkpoints
        self.last_eval_step: int | None = None
        self._checkpoint_steps: dict[int, list[int]] | None = None  # from max_steps, known once training runs

    def _write(self, model, state: TrainerState, point: str, numbers: Sequence[int] = ()) -> None:
        """One record, or one per checkpoint number (the norms are computed once)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Under FSDP a process sees only its shard of each tensor, so its norms would be wrong, and
            # every process would append: norms.jsonl is written by single-process runs only (Figure 5
            # runs are single-GPU BERT-base).
            return
        groups = group_l1_norms(model, self.exclude)
        record = {"point": point, "step": state.global_step, "epoch": state.epoch or 0.0}
        for extra in [{"checkpoint": k} for k in numbers] or [{}]:
            append_jsonl(self.path, {**record, **extra, "groups": groups})

    def on_train_begin(self, args: TrainingArguments, state, control, model=None, **kwargs) -> None:
        if self.checkpoints:
            self._checkpoint_steps = norm_checkpoint_steps(state.max_steps, self.checkpoints)
        if state.global_step == 0:  # a run resumed from a checkpoint wrote its start norms before
            self._write(model, state, "start", [0] if self.checkpoints else [])

    def on_step_end(self, args, state, control, model=None, **kwargs) -> None:
        # Called before this step's evaluation and save, so a checkpoint and an eval at one step are
        # written in that order, and a checkpoint saved at this step keeps this record on resume.
        numbers = (self._checkpoint_steps or {}).get(state.global_step)
        if numbers:
            self._write(model, state, "checkpoint", numbers)

    def on_evaluate(self, args, state, control, model=None, **kwargs) -> None:
        if state.global_step == self.last_eval_step:
            return  # several eval sets (MNLI matched/mismatched) at one step: the weights are the same
        self.last_eval_step = state.global_step
        self._write(model, state, "eval")


class DivergenceCallback(TrainerCallback):
    """Stop at the first NaN/inf training loss; the run is then reported as `diverged`, never averaged.

    A diverged state is never checkpointed: a run resumed from it would train on past the divergence.
    """

    def __init__(self) -> None:
        self.diverged_at: int | None = None

    def on_log(self, args, state, control: TrainerControl, logs=None, **kwargs) -> None:
        logs = logs or {}
        values = [logs[key] for key in ("loss", "grad_norm") if logs.get(key) is not None]
        if self.diverged_at is None and not all(math.isfinite(v) for v in values):
            self.diverged_at = state.global_step
            control.should_training_stop = True
        if self.diverged_at is not None:
            control.should_save = False  # Trainer logs, then saves: this comes in between

    def on_epoch_end(self, args, state, control: TrainerControl, **kwargs) -> None:
        if self.diverged_at is not None:
            control.should_save = False  # a save CheckpointCallback moved to the end of the epoch


def divergence(
    nonfinite_step: int | None,
    finite: bool,
    log_history: Sequence[dict],
    factor: float | None,
    what: str = "mean training loss",
) -> tuple[int | None, str | None]:
    """(step, reason) when a run diverged, else (None, None); one rule for every track.

    In order: a NaN/inf loss or gradient norm during training (DivergenceCallback, at `nonfinite_step`);
    a non-finite `what` at the end (`finite` is False); a finite blow-up (loss_explosion with `factor`).
    """
    if nonfinite_step is not None:
        return nonfinite_step, f"non-finite training loss or gradient norm at step {nonfinite_step}"
    if not finite:
        return None, f"non-finite {what}"
    explosion = loss_explosion(log_history, factor)
    return explosion if explosion is not None else (None, None)


def loss_explosion(log_history: Sequence[dict], factor: float | None) -> tuple[int, str] | None:
    """(step, reason) when a finite loss blew up, else None: the divergence that a NaN check misses.

    The rule (train setting `divergence_factor`): the start is the first finite training loss logged
    (`logging_first_step`: step 1, the loss of the starting model). The run blew up when the last logged
    training loss, or any evaluation loss (`eval_<split>_loss`), exceeds `factor` x that start. With lr
    1000 on RTE the dev loss ends near 1e7 against a start of about 0.7; a run that merely overfits
    stays within a few times its start.
    """
    if factor is None:
        return None
    train = [
        (int(entry.get("step", 0)), float(entry["loss"]))
        for entry in log_history
        if isinstance(entry.get("loss"), int | float) and math.isfinite(entry["loss"])
    ]
    if not train:
        return None
    start_step, start = train[0]
    limit = factor * start
    checks = [
        (f"{key} {float(value):.4g}", int(entry.get("step", 0)), float(value))
        for entry in log_history
        for key, value in entry.items()
        if key.startswith("eval_") and key.endswith("_loss") and isinstance(value, int | float)
    ]
    checks.append((f"training loss {train[-1][1]:.4g}", *train[-1]))
    for what, step, value in checks:
        if value > limit:  # NaN compares False: the NaN check owns those
            return step, (
                f"{what} at step {step} exceeds divergence_factor {factor:g} x the starting training loss "
                f"{start:.4g} (step {start_step})"
            )
    return None
