"""What one run is: the run spec and its training hyperparameters (light imports only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from robustft.data import get_task
from robustft.errors import RunError, RunPreempted  # noqa: F401  (RunPreempted: still importable here)
from robustft.methods import Method, build_method
from robustft.models import get_model_spec, model_kind_error, sequence_length_error
from robustft.schema import load_schema

# transformers.set_seed seeds numpy, whose legacy seed must lie in [0, 2**32 - 1]; torch would take more.
SEED_MIN, SEED_MAX = 0, 2**32 - 1


def seed_error(seed: object) -> str | None:
    """Why `seed` cannot seed a run (random, numpy and torch through transformers.set_seed), or None."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        return f"a seed must be an integer, got {seed!r}"
    if not SEED_MIN <= seed <= SEED_MAX:
        return f"a seed must be in [{SEED_MIN}, 2**32 - 1] (numpy's seed range), got {seed}"
    return None


@dataclass
class TrainConfig:
    """Hyperparameters of one fine-tuning run (the config's `train:` block)."""

    learning_rate: float = 2e-5
    epochs: float = 3.0
    batch_size: int = 32
    eval_batch_size: int = 128
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_seq_length: int = 128
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    # The evaluations before the last one (the learning curve's points) score a seeded subset of this
    # many examples of each eval split; the last one, which is reported, scores them whole. None: every
    # evaluation scores the whole split. It cannot go with report_epoch "best", which compares epochs.
    curve_eval_samples: int | None = None
    data_seed: int = 0  # the same subsample for every seed and method, so comparisons are paired
    logging_steps: int = 10
    # Experiment trackers the Trainer also sends its logs to: transformers' report_to, one name or a list
    # ("tensorboard", "wandb", ...), "none" for none. TensorBoard writes into <run dir>/tensorboard.
    report_to: str | list[str] = "none"
    report_epoch: str = "last"  # "last" or "best" (best dev epoch is optimistic; the papers do not say)
    # "auto" | "fp32" | "bf16" | "fp16" (bf16/fp16: autocast over fp32 weights). auto: bf16 on a GPU that
    # has it or a CPU with fast bf16 kernels, fp32 otherwise or when a component needs fp32 (precision.py).
    precision: str = "auto"
    pad_to_max_length: bool = False  # True mimics run_glue.py's default (benchmarks only)
    # Shuffled batches of similar-length examples (Trainer's LengthGroupedSampler): less padding, so fewer
    # FLOPs per example; the order stays random and seeded, but differs from plain shuffling.
    group_by_length: bool = False
    # Optimizer steps between checkpoints in <run>/checkpoints/ (0: none, except on SIGTERM); a rerun of
    # the same command resumes from the last one, so preempted or failed jobs lose at most this much work.
    checkpoint_steps: int = 500
    keep_checkpoints: bool = False  # False: delete the checkpoints once metrics.json is written
    # NoisyTune Figure 5: norms.jsonl also gets the group L1 norms at this many evenly spaced optimizer
    # steps (checkpoint k at step round(k * max_steps / N)); 0: only at the start and at each evaluation.
    norm_checkpoints: int = 0
    # SMART Figure 2: write predictions.jsonl (split, index, label, prediction, probs) for every eval split,
    # from the final model (the last epoch, also under report_epoch "best").
    save_predictions: bool = False
    # A run whose loss explodes without becoming NaN is diverged too: when the last logged training loss,
    # or any dev loss, exceeds this factor x the first logged training loss (step 1, the loss of the
    # starting model). None: only NaN/inf counts.
    divergence_factor: float | None = 10.0


# Train settings added after runs were recorded, at the value those runs trained with: left out of a
# run's spec record at that value, so its config hash is the one it had (provenance.settings_record).
LATER_TRAIN_SETTINGS: dict[str, Any] = {"curve_eval_samples": None}


@dataclass
class RunSpec:
    model: str
    task: str
    method: str
    seed: int
    train: TrainConfig = field(default_factory=TrainConfig)
    components: dict[str, dict[str, Any] | None] | None = None  # None: derive from the method name
    data_dir: str = "resources/data"
    cache_dir: str | None = None

    def validate(self) -> Method:
        """Fail before any heavy work on a bad name or setting."""
        get_model_spec(self.model, self.cache_dir)
        get_task(self.task)
        validate_run_inputs(self.model, self.seed, self.train, self.cache_dir)
        return build_method(self.method, self.components)


def validate_run_inputs(model: str, seed: object, train: TrainConfig, cache_dir: str | None = None) -> None:
    """The checks a classification run (GLUE or XTREME) shares: an encoder, a seed numpy takes, train
    settings the schema allows, and inputs no longer than the model's position embeddings (a Hub model's
    from its config.json, in `cache_dir`)."""
    problem = seed_error(seed)
    if problem:
        raise RunError(f"--seed: {problem}")
    problem = model_kind_error(model, "encoder", cache_dir)
    if problem:
        raise RunError(f"--model: {problem}")
    validate_train_settings(asdict(train))
    problem = sequence_length_error(model, train.max_seq_length, cache_dir)
    if problem:
        raise RunError(f"train setting 'max_seq_length': {problem}")


def report_to_error(report_to: object) -> str | None:
    """Why `report_to` names no trackers a run may report to, or None: the schema's `train.report_to`,
    which the SFT settings take too."""
    from jsonschema import Draft202012Validator

    schema = load_schema()["properties"]["train"]["properties"]["report_to"]
    if Draft202012Validator(schema).is_valid(report_to):
        return None
    trackers = schema["anyOf"][1]["enum"]
    return f"must be 'none', one of {trackers} or a list of them, got {report_to!r}"


def validate_train_settings(settings: dict[str, Any]) -> None:
    """Check train settings against the `train` block of the workflow schema (one source of truth)."""
    from jsonschema import Draft202012Validator

    schema = load_schema()["properties"]["train"]
    for error in Draft202012Validator(schema).iter_errors(settings):
        key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        raise RunError(f"train setting {key!r}: {error.message}")
    if settings.get("curve_eval_samples") is not None and settings.get("report_epoch") == "best":
        raise RunError(
            "train setting 'curve_eval_samples' cannot go with report_epoch 'best': the best epoch would be "
            "chosen among scores on different examples (a subset before the last epoch, the whole split at "
            "it); set curve_eval_samples to null or report_epoch to 'last'"
        )
