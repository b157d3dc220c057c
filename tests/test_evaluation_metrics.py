"""Classification metrics checked against scikit-learn's on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from qtool.evaluation.metrics import classification_metrics, confusion_matrix


def _predictions(classes: int, n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    wrong = rng.random(n) < 0.3
    pred = np.where(wrong, rng.integers(0, classes, n), labels)
    return pred, labels


@pytest.mark.parametrize("classes", [2, 3, 10])
def test_matches_scikit_learn(classes):
    pred, labels = _predictions(classes, seed=classes)
    names = [f"c{i}" for i in range(classes)]
    result = classification_metrics(pred, labels, names)
    assert result.accuracy == pytest.approx(skm.accuracy_score(labels, pred))
    assert result.correct == int((pred == labels).sum()) and result.samples == len(labels)
    assert result.confusion == skm.confusion_matrix(labels, pred, labels=range(classes)).tolist()
    precision, recall, _, support = skm.precision_recall_fscore_support(
        labels, pred, labels=range(classes), zero_division=0
    )
    assert [c.precision for c in result.per_class] == pytest.approx(precision)
    assert [c.recall for c in result.per_class] == pytest.approx(recall)
    assert [c.support for c in result.per_class] == support.tolist()
    assert [c.name for c in result.per_class] == names


def test_sensitivity_and_specificity_follow_the_positive_class():
    pred, labels = _predictions(2, seed=5)
    for positive in (0, 1):
        result = classification_metrics(pred, labels, ["malignant", "benign"], positive)
        assert result.positive_class == ["malignant", "benign"][positive]
        assert result.sensitivity == pytest.approx(
            skm.recall_score(labels, pred, pos_label=positive)
        )
        assert result.specificity == pytest.approx(
            skm.recall_score(labels, pred, pos_label=1 - positive)
        )
    default = classification_metrics(pred, labels, ["a", "b"])
    assert default.positive_class == "b"  # class 1 unless told otherwise
    assert classification_metrics(pred, labels, ["a", "b", "c"]).sensitivity is None


def test_classes_beyond_the_names_and_empty_classes():
    labels = np.array([0, 0, 1, 1])
    pred = np.array([0, 3, 1, 1])  # a prediction of a class the names do not cover
    result = classification_metrics(pred, labels, ["a", "b"])
    assert [c.name for c in result.per_class] == ["a", "b", "2", "3"]
    assert result.per_class[2].precision == 0.0 and result.per_class[2].support == 0
    assert result.accuracy == 0.75
    assert confusion_matrix(pred, labels, 4)[0].tolist() == [1, 0, 0, 1]
