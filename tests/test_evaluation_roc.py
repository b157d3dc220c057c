"""evaluation.roc: ROC AUC equal to scikit-learn's on the same scores (ties included), and
the operating point at a chosen sensitivity."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from qtool.evaluation.roc import at_sensitivity, positive_probability, roc_auc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_equals_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 500).astype(bool)
    score = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounded: many ties
    assert roc_auc(score, labels) == pytest.approx(roc_auc_score(labels, score), abs=1e-12)
    assert roc_auc(score, np.ones(500, bool)) is None


def test_operating_point_is_the_highest_threshold_reaching_the_sensitivity():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 400).astype(bool)
    score = rng.normal(labels * 1.0, 1.0)
    point = at_sensitivity(score, labels, 0.95)
    assert point.sensitivity >= 0.95
    assert point.specificity == pytest.approx(np.mean(score[~labels] < point.threshold))
    # scikit-learn's ROC curve: the first point at TPR >= 0.95 has this FPR and threshold
    fpr, tpr, thresholds = roc_curve(labels, score)
    first = int(np.argmax(tpr >= 0.95))
    assert point.threshold == pytest.approx(thresholds[first])
    assert 1 - point.specificity == pytest.approx(fpr[first])
    higher = score[labels] >= np.nextafter(point.threshold, np.inf)
    assert higher.mean() < 0.95  # any higher threshold misses the target


def test_positive_probability_of_logits_and_of_nonfinite_rows():
    scores = np.array([[0.0, 0.0], [0.0, np.log(3.0)], [np.nan, 1.0]])
    p = positive_probability(scores, 1)
    assert p[:2] == pytest.approx([0.5, 0.75]) and p[2] == -np.inf
