"""Fine-tune a sequence classifier on one task with one method and one seed: the unit of the DAG.

The run directory is what the workflow reads (docs/outputs.md): history.jsonl and norms.jsonl grow during
training, run.json records provenance, and metrics.json is written last and atomically, so a run
without metrics.json is never counted as done.
"""

from __future__ import annotations

import json
import logging
import math
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from robustft import provenance
from robustft.data import TaskSpec, get_task, split_task_variant, subsample_fraction
from robustft.data.glue import SplitData, load_split
from robustft.errors import RunError, RunPreempted
from robustft.evals.metrics import (
    compute_metrics,
    constant_baseline,
    is_constant_prediction,
    predictions_from_logits,
)
from robustft.io import write_json_atomic, write_text_atomic
from robustft.methods import Method, RunContext
from robustft.runs import TENSORBOARD_DIR, checkpoint_step, finish_run, prepare_run_dir, record_failure
from robustft.train.checkpoints import CheckpointCallback, stop_on_sigterm
from robustft.train.config import LATER_TRAIN_SETTINGS, RunSpec, TrainConfig

logger = logging.getLogger(__name__)

DEGENERATE = "degenerate"  # the eval metric key that flags a constant prediction
RUN_FILES = ("metrics.json", "history.jsonl", "norms.jsonl", "run.json", "predictions.jsonl", TENSORBOARD_DIR)


def _subsample(split: SplitData, limit: int | None, seed: int) -> SplitData:
    if limit is None or limit >= len(split):
        return split
    keep = np.sort(np.random.default_rng(seed).choice(len(split), size=limit, replace=False))
    return SplitData(
        texts=[[column[i] for i in keep] for column in split.texts],
        labels=[split.labels[i] for i in keep],
        source=f"{split.source} (random {limit} of {len(split)}, data_seed={seed})",
    )


def _tokenize(
    split: SplitData, tokenizer, config: TrainConfig, regression: bool, sort_by_length: bool = False
):
    import datasets

    padding = "max_length" if config.pad_to_max_length else False
    encoded = tokenizer(*split.texts, truncation=True, max_length=config.max_seq_length, padding=padding)
    columns = dict(encoded)
    columns["labels"] = [float(v) for v in split.labels] if regression else list(split.labels)
    dataset = datasets.Dataset.from_dict(columns)
    if sort_by_length:
        # Evaluation order does not change any metric, and similar lengths in a batch mean little padding.
        lengths = [len(ids) for ids in columns["input_ids"]]
        dataset = dataset.select(sorted(range(len(lengths)), key=lengths.__getitem__))
    return dataset


def _curve_subsets(datasets: dict[str, Any], limit: int | None, seed: int) -> dict[str, Any] | None:
    """The eval datasets the evaluations before the last one score (train.curve_eval_samples): `limit`
    rows of each, drawn with the data seed and kept in their order (sorted by length), so every seed and
    method scores the same examples. None when every split already has at most `limit` rows."""
    if limit is None or all(len(dataset) <= limit for dataset in datasets.values()):
        return None
    subsets = {}
    for name, dataset in datasets.items():
        if len(dataset) <= limit:
            subsets[name] = dataset
            continue
        rows = np.sort(np.random.default_rng(seed).choice(len(dataset), size=limit, replace=False))
        subsets[name] = dataset.select(rows.tolist())
    return subsets


def prepare_glue_run_dir(out_dir: Path, config_hash: str) -> Path | None:
    """Check we can write there, and return the checkpoint to resume from, if any (runs.prepare_run_dir).

    A resumed run keeps the earlier attempt's history.jsonl and norms.jsonl up to the checkpoint's step;
    otherwise every file of an earlier attempt is cleared. A finished run (metrics.json) that runs again
    starts over, and so does one whose configuration changed.
    """
    checkpoint, _ = prepare_run_dir(
        out_dir,
        RUN_FILES,
        config_hash,
        keep_finished=False,
        resumed_logs=("history.jsonl", "norms.jsonl"),
    )
    return checkpoint


def _final_eval(log_history: list[dict[str, Any]], primary_key: str, report_epoch: str) -> dict[str, Any]:
    """The evaluation to report: all eval sets logged at the chosen step (MNLI logs matched and
    mismatched as separate entries), merged into one record."""
    by_step: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        if any(key.startswith("eval_") for key in entry):
            by_step.setdefault(entry["step"], {}).update(entry)
    evals = [merged for merged in by_step.values() if primary_key in merged]
    if not evals:
        return {}
    if report_epoch == "best":
        return max(evals, key=lambda e: e[primary_key] if math.isfinite(e[primary_key]) else -math.inf)
    return evals[-1]


def _training_throughput(
    log_history: list[dict[str, Any]], train_metrics: dict[str, float], since_step: int = 0
) -> float | None:
    """Training examples per second with evaluation time taken out of Trainer's train_runtime.

    Both cover this attempt only: a resumed run's history also holds the evaluations up to the checkpoint
    (`since_step`), which ran before this attempt started.
    """
    runtime, samples = train_metrics.get("train_runtime"), train_metrics.get("train_samples_per_second")
    if not runtime or not samples:
        return None
    eval_seconds = sum(
        v
        for e in log_history
        if e.get("step", 0) > since_step
        for k, v in e.items()
        if k.startswith("eval_") and k.endswith("_runtime")
    )
    return samples * runtime / max(runtime - eval_seconds, 1e-9)


def _write_predictions(
    trainer: Any,
    splits: dict[str, SplitData],
    tokenizer: Any,
    config: TrainConfig,
    task: TaskSpec,
    path: Path,
) -> None:
    """predictions.jsonl: one record per eval example of the final model, `index` its position in the
    split (SMART Figure 2 buckets MNLI dev predictions by position). The eval datasets are sorted by
    length for speed, so each split is tokenised again in its own order here; `probs` (softmax) feed the
    cross-entropy against the annotators' label distribution."""
    lines = []
    for name, split in splits.items():
        output = trainer.predict(_tokenize(split, tokenizer, config, task.is_regression))
        logits = np.asarray(output.predictions, dtype=np.float64)
        predictions = predictions_from_logits(logits, task.is_regression)
        if not task.is_regression:
            shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
            probs = shifted / shifted.sum(axis=-1, keepdims=True)
        for i, (label, prediction) in enumerate(zip(split.labels, predictions.tolist(), strict=True)):
            record = {"split": name, "index": i, "label": label, "prediction": prediction}
            if not task.is_regression:
                record["probs"] = [round(float(p), 6) for p in probs[i]]
            lines.append(json.dumps(record) + "\n")
    write_text_atomic(path, "".join(lines))


def _out_of_memory(err: BaseException, out_dir: Path, config: TrainConfig) -> RunError:
    """A message that names the run, the phase and the batch size to lower."""
    evaluating = any(frame.name == "evaluation_loop" for frame in traceback.extract_tb(err.__traceback__))
    if evaluating:
        where = f"evaluation at eval batch size {config.eval_batch_size}: lower train.eval_batch_size"
    else:
        where = f"training at batch size {config.batch_size}: lower train.batch_size"
    return RunError(f"CUDA out of memory in run {out_dir} during {where} or train.max_seq_length ({err})")


def _new_run_record(spec: RunSpec) -> dict[str, Any]:
    """run.json's start: the spec and its hash, which names this configuration of the run."""
    spec_record = {
        **asdict(spec),
        "train": provenance.settings_record(asdict(spec.train), LATER_TRAIN_SETTINGS),
    }
    return {"spec": spec_record, "config_hash": provenance.config_hash(spec_record)}


def finished_result(spec: RunSpec, out_dir: str | Path) -> dict[str, Any] | None:
    """metrics.json of a run of `spec` that finished in `out_dir` (status ok or diverged, run.json of this
    configuration), or None: a run to train. `train_run` itself always starts a finished run over (the
    workflow reruns a job only when it means to); a command that trains many runs skips these."""
    out_dir = Path(out_dir)
    try:
        metrics = json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
        record = json.loads((out_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    finished = metrics.get("status") in ("ok", "diverged")
    return metrics if finished and record.get("config_hash") == _new_run_record(spec)["config_hash"] else None


def train_run(spec: RunSpec, out_dir: str | Path) -> dict[str, Any]:
    """Run one fine-tuning job end to end and write the run contract into `out_dir`.

    A rerun of a run that stopped before metrics.json resumes from its last checkpoint. Whatever stops a
    run once its directory is prepared (an error, Ctrl-C, SIGTERM) leaves run.json with the status
    (`failed`, `interrupted`, `preempted`) and the error, and no metrics.json, so the workflow reruns it.
    """
    started = time.time()
    method = spec.validate()
    out_dir = Path(out_dir)
    run_record = _new_run_record(spec)
    resume = prepare_glue_run_dir(out_dir, run_record["config_hash"])
    try:
        return _train(spec, method, out_dir, run_record, resume, started)
    except BaseException as err:
        record_failure(out_dir, run_record, err, started)
        raise


def _train(
    spec: RunSpec,
    method: Method,
    out_dir: Path,
    run_record: dict[str, Any],
    resume: Path | None,
    started: float,
) -> dict[str, Any]:
    """The run once its directory is prepared. The steps keep their order, which fixes the random numbers:
    data (own seeded generators), then the seed, model and method, run.json, the trainer, training, the
    final evaluation and, last, metrics.json."""
    from robustft.train.precision import resolve_precision, training_device

    task = get_task(spec.task)
    config = spec.train
    precision = resolve_precision(config.precision, method.components, training_device())
    train_split, eval_splits = _load_splits(spec, task)
    tokenizer, model, context = _load_model_with_method(spec, task, method)
    train_dataset = _tokenize(train_split, tokenizer, config, task.is_regression)
    eval_datasets = {
        name: _tokenize(split, tokenizer, config, task.is_regression, sort_by_length=True)
        for name, split in eval_splits.items()
    }
    curve_datasets = _curve_subsets(eval_datasets, config.curve_eval_samples, config.data_seed)
    _write_running_record(out_dir, run_record, method, train_split, eval_splits, resume, precision)

    trainer, checkpoints, nonfinite = _build_trainer(
        spec,
        task,
        method,
        context,
        model,
        tokenizer,
        train_dataset,
        eval_datasets,
        curve_datasets,
        precision=precision,
        out_dir=out_dir,
        checkpoint_tag=run_record["config_hash"],
    )
    train_output = _train_or_raise(trainer, checkpoints, resume, out_dir, config)

    final = _final_eval(trainer.state.log_history, f"eval_dev_{task.primary_metric}", config.report_epoch)
    metrics = _reported_metrics(final, task)
    if config.save_predictions:
        _write_predictions(trainer, eval_splits, tokenizer, config, task, out_dir / "predictions.jsonl")
    result = _run_result(
        spec,
        task,
        final,
        metrics,
        trainer=trainer,
        train_output=train_output,
        nonfinite=nonfinite,
        n_train=len(train_split),
        n_eval=len(eval_splits["dev"]),
        resumed_from_step=run_record["resumed_from_step"],
    )
    # The dev score of a model that learned nothing (the majority class, or a constant for regression):
    # the line a learning curve has to rise above.
    result["constant_baseline"] = constant_baseline(
        task.metrics, train_split.labels, eval_splits["dev"].labels, task.is_regression
    )
    run_record.update(method_log=context.log, train_metrics=train_output.metrics)
    return finish_run(out_dir, run_record, result, keep_checkpoints=config.keep_checkpoints, started=started)


def _load_splits(spec: RunSpec, task: TaskSpec) -> tuple[SplitData, dict[str, SplitData]]:
    """The training split and every eval split of `task`, subsampled with the data seed."""
    config = spec.train
    train_split = _subsample(
        load_split(spec.task, "train", spec.data_dir, spec.cache_dir),
        config.max_train_samples,
        config.data_seed,
    )
    _, train_fraction = split_task_variant(spec.task)
    if train_fraction is not None:
        # A task variant such as mrpc@0.2: that fraction of the training set, after any max_train_samples
        # budget, so a CPU-scale sweep still varies the amount of data.
        train_split = subsample_fraction(train_split, train_fraction, config.data_seed)
    eval_splits = {
        name: _subsample(
            load_split(spec.task, name, spec.data_dir, spec.cache_dir),
            config.max_eval_samples,
            config.data_seed,
        )
        for name in task.eval_splits
    }
    return train_split, eval_splits


def _load_model_with_method(spec: RunSpec, task: TaskSpec, method: Method) -> tuple[Any, Any, RunContext]:
    """(tokenizer, model, context): set the run's seed, load the model with a new head (its init follows
    the seed), and let the method prepare the model (NoisyTune perturbs, Mixout wraps)."""
    from transformers import set_seed

    from robustft.models import load_sequence_classifier_with_info, load_tokenizer

    set_seed(spec.seed)
    tokenizer = load_tokenizer(spec.model, cache_dir=spec.cache_dir)
    model, new_parameters = load_sequence_classifier_with_info(
        spec.model, task.num_labels, cache_dir=spec.cache_dir
    )
    context = RunContext(
        seed=spec.seed, new_parameter_names=frozenset(new_parameters), regression=task.is_regression
    )
    method.prepare_model(model, context)
    return tokenizer, model, context


def _write_running_record(
    out_dir: Path,
    run_record: dict[str, Any],
    method: Method,
    train_split: SplitData,
    eval_splits: dict[str, SplitData],
    resume: Path | None,
    precision: Any,
) -> None:
    """Add the provenance to `run_record` and write it as run.json with status `running`."""
    run_record.update(
        method=method.describe(),
        data={"train": train_split.source, **{k: v.source for k, v in eval_splits.items()}},
        git_commit=provenance.git_commit(),
        versions=provenance.package_versions(),
        hardware=provenance.hardware(),
        slurm_job_id=provenance.slurm_job_id(),
        resumed_from_step=None if resume is None else checkpoint_step(resume),
        precision=precision.record(),
    )
    write_json_atomic(out_dir / "run.json", {**run_record, "status": "running"})


def _metrics_function(task: TaskSpec):
    """Trainer's compute_metrics for `task`: the task's metrics and the constant-prediction flag."""

    def metrics_fn(prediction) -> dict[str, float]:
        predictions = predictions_from_logits(np.asarray(prediction.predictions), task.is_regression)
        scores = compute_metrics(task.metrics, predictions, np.asarray(prediction.label_ids))
        # Logged beside the metrics (eval_<split>_degenerate), so the final evaluation's record says
        # whether that model predicted one class (one value) for every example.
        # `examples`: how many the evaluation scored (a learning curve's earlier points may score a subset).
        return {
            **scores,
            DEGENERATE: float(is_constant_prediction(predictions, task.is_regression)),
            "examples": float(len(predictions)),
        }

    return metrics_fn


def _build_trainer(
    spec: RunSpec,
    task: TaskSpec,
    method: Method,
    context: RunContext,
    model: Any,
    tokenizer: Any,
    train_dataset: Any,
    eval_datasets: dict[str, Any],
    curve_datasets: dict[str, Any] | None,
    *,
    precision: Any,
    out_dir: Path,
    checkpoint_tag: str,
) -> tuple[Any, CheckpointCallback, Any]:
    """(trainer, checkpoint callback, divergence callback): a RobustTrainer that evaluates every epoch
    and writes history.jsonl and norms.jsonl as it trains."""
    from transformers import DataCollatorWithPadding

    from robustft.train.arguments import point_trackers_at, training_arguments
    from robustft.train.callbacks import DivergenceCallback, HistoryCallback, NormCallback
    from robustft.train.trainer import RobustTrainer

    config = spec.train
    args = training_arguments(
        config,
        out_dir,
        seed=spec.seed,
        eval_strategy="epoch",
        precision=precision.used,
        use_cpu=precision.use_cpu,  # transformers refuses bf16/fp16 without a GPU unless told
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
    )
    nonfinite = DivergenceCallback()
    checkpoints = CheckpointCallback()
    trainer = RobustTrainer(
        method=method,
        context=context,
        checkpoint_tag=checkpoint_tag,
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_datasets,
        curve_eval_dataset=curve_datasets,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=_metrics_function(task),
        callbacks=[
            checkpoints,  # before divergence, which may veto the save checkpoints asks for
            HistoryCallback(out_dir / "history.jsonl"),
            NormCallback(
                out_dir / "norms.jsonl",
                exclude=context.new_parameter_names,
                checkpoints=config.norm_checkpoints,
            ),
            nonfinite,
        ],
    )
    point_trackers_at(trainer, out_dir)
    return trainer, checkpoints, nonfinite


def _train_or_raise(
    trainer: Any, checkpoints: CheckpointCallback, resume: Path | None, out_dir: Path, config: TrainConfig
) -> Any:
    """Train (from `resume` when given) and return Trainer's output; out of memory becomes a RunError
    that names the batch size to lower, and a stop on SIGTERM (checkpoint saved) a RunPreempted."""
    import torch

    try:
        with stop_on_sigterm(checkpoints):
            train_output = trainer.train(resume_from_checkpoint=None if resume is None else str(resume))
    except torch.OutOfMemoryError as err:
        raise _out_of_memory(err, out_dir, config) from err
    if checkpoints.stopped_at is not None:
        raise RunPreempted(
            f"run {out_dir} stopped on SIGTERM with a checkpoint at step {checkpoints.stopped_at}; "
            "run the same command again to resume"
        )
    return train_output


def _reported_metrics(final: dict[str, Any], task: TaskSpec) -> dict[str, float]:
    """metrics.json's `metrics` from the reported evaluation: the task's metrics and `eval_loss`, with a
    `_<name>` suffix for eval splits other than dev (dev_mismatched -> accuracy_mismatched)."""
    metrics: dict[str, float] = {}
    for split in task.eval_splits:
        suffix = "" if split == "dev" else "_" + split.removeprefix("dev_")
        for name in (*task.metrics, "loss"):
            value = final.get(f"eval_{split}_{name}")
            if value is not None:
                metrics[("eval_loss" if name == "loss" else name) + suffix] = float(value)
    return metrics


def _run_result(
    spec: RunSpec,
    task: TaskSpec,
    final: dict[str, Any],
    metrics: dict[str, float],
    *,
    trainer: Any,
    train_output: Any,
    nonfinite: Any,
    n_train: int,
    n_eval: int,
    resumed_from_step: int | None,
) -> dict[str, Any]:
    """metrics.json: the run contract, with the divergence verdict and the status it implies."""
    from robustft.train.callbacks import divergence

    config = spec.train
    # The last logging window may end after the last log; the mean training loss covers every step.
    final_loss_finite = math.isfinite(train_output.training_loss)
    diverged_at, diverged_because = divergence(
        nonfinite.diverged_at,
        final_loss_finite and all(math.isfinite(v) for v in metrics.values()),
        trainer.state.log_history,
        config.divergence_factor,
        what="mean training loss or final dev metric",
    )
    status = "diverged" if diverged_because else ("ok" if metrics else "failed")
    degenerate = final.get(f"eval_dev_{DEGENERATE}")
    return {
        "status": status,
        "model": spec.model,
        "task": spec.task,
        "method": spec.method,
        "seed": spec.seed,
        "primary_metric": task.primary_metric,
        "metrics": metrics,
        "epoch": final.get("epoch"),
        "diverged_at_step": diverged_at,
        "diverged_because": diverged_because,
        # One class (one value) predicted for every dev example at the reported evaluation: the run
        # learned nothing. It stays in the averages (a real outcome); the report counts it beside them.
        "degenerate": None if degenerate is None else bool(degenerate),
        "n_train": n_train,
        "n_eval": n_eval,
        "train_runtime_s": train_output.metrics.get("train_runtime"),
        # Trainer's figure spans the whole loop, dev evaluations included; ours counts training alone.
        "train_samples_per_second": _training_throughput(
            trainer.state.log_history, train_output.metrics, since_step=resumed_from_step or 0
        ),
    }
