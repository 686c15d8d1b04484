"""Task metrics by name, computed with scikit-learn and scipy (the `evaluate` package needs the Hub)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def _correlation(fn: Callable) -> MetricFn:
    def metric(predictions: np.ndarray, references: np.ndarray) -> float:
        # A constant prediction has no defined correlation; report 0 rather than NaN so a collapsed
        # regressor scores as "no signal" instead of poisoning averages.
        if np.std(predictions) == 0 or np.std(references) == 0:
            return 0.0
        return float(fn(predictions, references)[0])

    return metric


METRICS: dict[str, MetricFn] = {
    "accuracy": lambda p, r: float(accuracy_score(r, p)),
    "f1": lambda p, r: float(f1_score(r, p, average="binary", pos_label=1, zero_division=0)),
    "mcc": lambda p, r: float(matthews_corrcoef(r, p)),
    "pearson": _correlation(pearsonr),
    "spearman": _correlation(spearmanr),
}


def compute_metrics(
    names: tuple[str, ...], predictions: np.ndarray, references: np.ndarray
) -> dict[str, float]:
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise KeyError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
    return {name: METRICS[name](predictions, references) for name in names}


def predictions_from_logits(logits: np.ndarray, regression: bool) -> np.ndarray:
    return logits.reshape(-1) if regression else logits.argmax(axis=-1)


def is_constant_prediction(predictions: np.ndarray, regression: bool) -> bool:
    """Whether a model predicted one class (classification) or one value (regression) for every example.

    Such a model learned nothing: its accuracy is the share of the majority class and its correlation is
    0 (see _correlation). Regression outputs count as one value when their spread is below 1e-6 of their
    size, so float noise from different inputs does not hide a collapsed regressor.
    """
    predictions = np.asarray(predictions)
    if predictions.size == 0:
        return False
    if not regression:
        return bool(np.unique(predictions).size == 1)
    values = predictions.astype(np.float64)
    if not np.isfinite(values).all():
        return False
    return bool(np.ptp(values) <= 1e-6 * max(1.0, float(np.abs(values).max())))


def constant_baseline(
    names: tuple[str, ...], train_labels: Sequence[Any], eval_labels: Sequence[Any], regression: bool
) -> dict[str, Any]:
    """What a model that learned nothing scores: {"prediction": the constant, "metrics": {name: value}}.

    The constant is the training split's most frequent class (regression: its mean target), predicted for
    every eval example and scored with the task's metrics: the majority-class accuracy, 0 MCC, and 0
    Pearson/Spearman (a constant has no correlation, see _correlation). It is taken from the training
    split, as a trained model could only know that one; a tie between classes goes to the smallest label,
    so the number does not depend on the order of the data.
    """
    train = np.asarray(train_labels)
    if train.size == 0:
        raise ValueError("a constant baseline needs at least one training label")
    if regression:
        constant: Any = float(train.astype(np.float64).mean())
    else:
        classes, counts = np.unique(train, return_counts=True)  # sorted: argmax takes the smallest on a tie
        constant = classes[counts.argmax()].item()
    predictions = np.full(len(eval_labels), constant)
    return {"prediction": constant, "metrics": compute_metrics(names, predictions, np.asarray(eval_labels))}
