"""Task metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robustft.data import TASKS
from robustft.evals.metrics import METRICS, compute_metrics, constant_baseline, predictions_from_logits

# predictions, references: TP=2 (idx 0, 3), TN=1 (idx 1), FP=1 (idx 2), FN=0
P = np.array([1, 0, 1, 1])
R = np.array([1, 0, 0, 1])


def test_accuracy() -> None:
    assert compute_metrics(("accuracy",), P, R) == {"accuracy": 0.75}


def test_f1_is_binary_on_label_1() -> None:
    # precision 2/3, recall 1 -> 2 * (2/3) / (5/3) = 0.8
    assert compute_metrics(("f1",), P, R)["f1"] == pytest.approx(0.8)
    # With the roles of 0 and 1 swapped the positive class changes: TP=1, FP=0, FN=1 -> 2/3
    assert compute_metrics(("f1",), 1 - P, 1 - R)["f1"] == pytest.approx(2 / 3)
    # No positive prediction: 0, not a warning-and-NaN
    assert compute_metrics(("f1",), np.zeros(4, dtype=int), R)["f1"] == 0.0


def test_mcc() -> None:
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = 2 / sqrt(3*2*2*1)
    assert compute_metrics(("mcc",), P, R)["mcc"] == pytest.approx(2 / math.sqrt(12))
    assert compute_metrics(("mcc",), R, R)["mcc"] == pytest.approx(1.0)
    assert compute_metrics(("mcc",), 1 - R, R)["mcc"] == pytest.approx(-1.0)
    # A constant predictor (CoLA's classic failure) scores 0
    assert compute_metrics(("mcc",), np.ones(4, dtype=int), R)["mcc"] == 0.0


def test_pearson_and_spearman() -> None:
    p = np.array([1.0, 2.0, 3.0, 4.0])
    r = np.array([1.0, 3.0, 2.0, 4.0])
    # centred: (-1.5, -.5, .5, 1.5) . (-1.5, .5, -.5, 1.5) = 4; both sums of squares 5 -> 0.8
    result = compute_metrics(("pearson", "spearman"), p, r)
    assert result["pearson"] == pytest.approx(0.8)
    assert result["spearman"] == pytest.approx(0.8)
    assert compute_metrics(("pearson",), p, 2 * p + 1)["pearson"] == pytest.approx(1.0)
    assert compute_metrics(("pearson",), p, -p)["pearson"] == pytest.approx(-1.0)
    # Monotone but not linear: spearman 1, pearson below 1
    curved = np.array([1.0, 4.0, 9.0, 100.0])
    result = compute_metrics(("pearson", "spearman"), p, curved)
    assert result["spearman"] == pytest.approx(1.0)
    assert result["pearson"] < 0.95


def test_constant_prediction_correlation_is_zero() -> None:
    r = np.array([0.5, 1.0, 3.0, 4.5])
    constant = np.full(4, 2.5)
    result = compute_metrics(("pearson", "spearman"), constant, r)
    assert result == {"pearson": 0.0, "spearman": 0.0}
    assert compute_metrics(("pearson",), r, constant) == {"pearson": 0.0}


def test_metrics_are_python_floats_in_requested_order() -> None:
    result = compute_metrics(("mcc", "accuracy", "f1"), P, R)
    assert list(result) == ["mcc", "accuracy", "f1"]
    assert all(type(v) is float for v in result.values())


def test_unknown_metric_errors() -> None:
    with pytest.raises(KeyError) as err:
        compute_metrics(("accuracy", "bleu"), P, R)
    message = str(err.value)
    assert "bleu" in message
    for name in METRICS:
        assert name in message


def test_every_task_metric_exists() -> None:
    for task in TASKS.values():
        assert task.primary_metric in task.metrics
        assert set(task.metrics) <= set(METRICS)


def test_predictions_from_logits() -> None:
    logits = np.array([[0.1, 0.9], [2.0, -1.0], [0.0, 0.5]])
    assert predictions_from_logits(logits, regression=False).tolist() == [1, 0, 1]
    three = np.array([[0.0, 0.1, 5.0], [3.0, 0.0, 0.0]])
    assert predictions_from_logits(three, regression=False).tolist() == [2, 0]
    scores = np.array([[3.5], [1.25]])
    assert predictions_from_logits(scores, regression=True).tolist() == [3.5, 1.25]


def test_constant_baseline_predicts_the_training_majority_class_on_the_eval_set() -> None:
    train = [1, 1, 1, 0, 0]  # majority 1, although the eval set's majority is 0
    dev = np.array([0, 0, 0, 1])
    baseline = constant_baseline(("accuracy", "f1", "mcc"), train, dev, regression=False)
    assert baseline["prediction"] == 1 and isinstance(baseline["prediction"], int)  # JSON-ready
    assert baseline["metrics"]["accuracy"] == pytest.approx(0.25)
    assert baseline["metrics"]["f1"] == pytest.approx(2 * 0.25 / (1 + 0.25))  # precision 1/4, recall 1
    assert baseline["metrics"]["mcc"] == 0.0
    # A tie goes to the smallest label, whatever the order of the data.
    for order in ([2, 0, 2, 0], [0, 2, 0, 2]):
        assert constant_baseline(("accuracy",), order, [0, 2], regression=False)["prediction"] == 0


def test_constant_baseline_of_a_regression_task_is_the_training_mean_with_no_correlation() -> None:
    baseline = constant_baseline(("pearson", "spearman"), [1.0, 2.0, 4.5], [0.0, 5.0, 2.5], regression=True)
    assert baseline["prediction"] == pytest.approx(2.5)
    assert baseline["metrics"] == {"pearson": 0.0, "spearman": 0.0}
    with pytest.raises(ValueError, match="at least one training label"):
        constant_baseline(("pearson",), [], [1.0], regression=True)
