"""The TrainingArguments every track builds (robustft.train.arguments): the trackers a run reports to, and
the run directory their files go to."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from robustft.errors import RunError
from robustft.runs import TENSORBOARD_DIR
from robustft.train.arguments import point_trackers_at, training_arguments
from robustft.train.config import TrainConfig, report_to_error, validate_train_settings

needs_tensorboard = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None,
    reason="tensorboard is not installed (pip extra tracking)",
)


def _arguments(out_dir: Path, **settings):
    return training_arguments(
        TrainConfig(**settings), out_dir, seed=1, eval_strategy="no", precision="fp32", use_cpu=True
    )


def test_no_tracker_by_default(tmp_path: Path) -> None:
    assert TrainConfig().report_to == "none"
    assert _arguments(tmp_path).report_to == []  # transformers' "none"


@pytest.mark.parametrize("report_to", ["tensorboard", ["tensorboard"]])
def test_report_to_reaches_the_training_arguments(tmp_path: Path, report_to: str | list[str]) -> None:
    assert _arguments(tmp_path, report_to=report_to).report_to == ["tensorboard"]


@needs_tensorboard
def test_tensorboard_writes_into_the_run_directory_not_the_checkpoints(tmp_path: Path) -> None:
    import torch
    from transformers import Trainer
    from transformers.integrations import TensorBoardCallback

    args = _arguments(tmp_path, report_to=["tensorboard"])
    trainer = Trainer(model=torch.nn.Linear(2, 2), args=args)
    trackers = [c for c in trainer.callback_handler.callbacks if isinstance(c, TensorBoardCallback)]
    assert len(trackers) == 1
    point_trackers_at(trainer, tmp_path)
    assert Path(trackers[0].logging_dir) == tmp_path / TENSORBOARD_DIR
    assert not Path(trackers[0].logging_dir).is_relative_to(args.output_dir)  # checkpoints/ is deleted


@pytest.mark.parametrize("bad", ["tensorbaord", ["none", "tensorboard"], [], ["wandb", "wandb"], 1])
def test_unknown_or_malformed_trackers_are_refused_by_the_schema(bad: object) -> None:
    assert report_to_error(bad) is not None and repr(bad) in report_to_error(bad)
    with pytest.raises(RunError, match="report_to"):
        validate_train_settings({"report_to": bad})


def test_the_schema_names_only_trackers_transformers_knows() -> None:
    """A tracker the schema allows but transformers does not know would pass the config check and fail
    in every job, after loading its model and data."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    from robustft.schema import load_schema

    alternatives = load_schema()["properties"]["train"]["properties"]["report_to"]["anyOf"]
    trackers = alternatives[1]["enum"]
    assert set(trackers) <= set(INTEGRATION_TO_CALLBACK)
    assert report_to_error(trackers) is None and report_to_error("none") is None
