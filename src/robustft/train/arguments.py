"""The TrainingArguments of a run, for every track: the settings they share here, each track's own as
keyword overrides (GLUE: the sampling order; SFT: TRL's SFTConfig with its schedule, optimizer and
sequence settings), and where the experiment trackers a run reports to write their files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from robustft.runs import CHECKPOINT_DIR, TENSORBOARD_DIR


class SharedSettings(Protocol):
    """The settings every track's run has under these names (TrainConfig, SFTSettings)."""

    learning_rate: float
    epochs: float
    batch_size: int
    eval_batch_size: int
    warmup_ratio: float
    weight_decay: float
    logging_steps: int
    checkpoint_steps: int
    report_to: str | list[str]


def training_arguments(
    settings: SharedSettings,
    out_dir: Path,
    *,
    seed: int,
    eval_strategy: str,
    precision: str,
    use_cpu: bool = False,
    arguments_class: type | None = None,
    **overrides: Any,
) -> Any:
    """TrainingArguments (or `arguments_class`, a subclass such as trl.SFTConfig) for a run in `out_dir`.

    `precision` is the one the run trains in (fp32, bf16 or fp16: mixed precision over fp32 weights);
    `use_cpu` lets transformers run bf16/fp16 without a GPU (PrecisionChoice.use_cpu). `overrides` are
    further TrainingArguments fields, and win over the shared ones.
    """
    import torch
    from transformers import TrainingArguments

    shared: dict[str, Any] = {
        "output_dir": str(Path(out_dir) / CHECKPOINT_DIR),
        "learning_rate": settings.learning_rate,
        "num_train_epochs": settings.epochs,
        "per_device_train_batch_size": settings.batch_size,
        "per_device_eval_batch_size": settings.eval_batch_size,
        "warmup_steps": settings.warmup_ratio,  # transformers >= 5: a float in [0, 1) is a ratio of all steps
        "weight_decay": settings.weight_decay,
        "eval_strategy": eval_strategy,
        # Periodic checkpoints; with 0 there are none, but SIGTERM still saves one (checkpoints.py).
        "save_strategy": "steps" if settings.checkpoint_steps else "no",
        "save_steps": settings.checkpoint_steps or None,
        "logging_strategy": "steps",
        "logging_steps": settings.logging_steps,
        "logging_first_step": True,  # the step-1 loss: the start a blow-up is measured from (callbacks.py)
        "logging_nan_inf_filter": False,  # the default hides NaN losses, and divergence with them
        "report_to": settings.report_to,  # trackers, or "none"; point_trackers_at places their files
        "seed": seed,
        "data_seed": seed,
        # Always explicit: SFTConfig defaults to bf16=True.
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "use_cpu": use_cpu,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": torch.cuda.is_available(),
    }
    return (arguments_class or TrainingArguments)(**{**shared, **overrides})


def point_trackers_at(trainer: Any, out_dir: Path) -> None:
    """Make the trackers of `trainer` that write local files (TensorBoard) write them into the run
    directory, `<out_dir>/tensorboard`, beside the run's other results.

    Transformers' default is under output_dir, the run's checkpoints/, which is deleted when the run
    ends; a resumed run appends new event files to the same folder, and TensorBoard reads them as one.
    """
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(Path(out_dir) / TENSORBOARD_DIR)
