"""Classification metrics from predicted and true labels: accuracy, per-class precision and
recall, the confusion matrix, and sensitivity/specificity for two-class (screening) tasks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ClassStats:
    name: str
    precision: float
    recall: float
    support: int


@dataclass
class EvalResult:
    accuracy: float
    samples: int
    correct: int
    nonfinite_outputs: int
    per_class: list[ClassStats]
    confusion: list[list[int]]
    data: str = ""
    split: str = ""
    output: str = ""
    sensitivity: float | None = None
    specificity: float | None = None
    positive_class: str | None = None
    roc_auc: float | None = None  # two classes: of the positive class's probability
    operating_point: dict | None = None  # two classes, when asked: evaluation.roc.at_sensitivity
    extra: dict = field(default_factory=dict)


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """k x k counts, rows: true class, columns: predicted class."""
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    return confusion


def classification_metrics(
    pred: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    positive: int | None = None,
) -> EvalResult:
    """Accuracy, per-class precision/recall, confusion matrix (rows: true, cols: predicted).

    Classes beyond `class_names` (a label or prediction the names do not cover) are named by
    index. With two classes, `positive` (default 1) sets sensitivity and specificity.
    """
    k = max(len(class_names), int(labels.max()) + 1, int(pred.max()) + 1 if len(pred) else 0)
    names = list(class_names) + [str(i) for i in range(len(class_names), k)]
    confusion = confusion_matrix(pred, labels, k)
    per_class = []
    for c in range(k):
        tp = confusion[c, c]
        predicted = confusion[:, c].sum()
        actual = confusion[c, :].sum()
        per_class.append(
            ClassStats(
                names[c],
                float(tp / predicted) if predicted else 0.0,
                float(tp / actual) if actual else 0.0,
                int(actual),
            )
        )
    correct = int(np.trace(confusion))
    result = EvalResult(
        accuracy=correct / len(labels) if len(labels) else 0.0,
        samples=int(len(labels)),
        correct=correct,
        nonfinite_outputs=0,
        per_class=per_class,
        confusion=confusion.tolist(),
    )
    if k == 2:
        pos = 1 if positive is None else positive
        result.positive_class = names[pos]
        result.sensitivity = per_class[pos].recall
        result.specificity = per_class[1 - pos].recall
    return result
