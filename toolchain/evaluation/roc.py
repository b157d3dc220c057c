"""Two-class screening figures from scores: ROC AUC and the operating point at a chosen
sensitivity (the threshold on the positive class's probability, and the specificity there).

AUC is the Mann-Whitney statistic with tied scores counted half, which is what
scikit-learn's roc_auc_score computes; numpy only, so eval needs no scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def probabilities(scores: np.ndarray) -> np.ndarray:
    """Scores that already are probabilities pass through; logits get a softmax."""
    if np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3):
        return scores
    shifted = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def positive_probability(scores: np.ndarray, positive: int) -> np.ndarray:
    """The positive class's probability per row; a row with NaN/Inf scores gets -inf (it
    never counts as a positive call), as it never wins the arg-max."""
    finite = np.isfinite(scores).all(axis=1)
    out = np.full(len(scores), -np.inf)
    if finite.any():
        out[finite] = probabilities(scores[finite].astype(np.float64))[:, positive]
    return out


def roc_auc(score: np.ndarray, is_positive: np.ndarray) -> float | None:
    """Area under the ROC curve (None without both classes): P(score of a random positive >
    score of a random negative) + half P(equal)."""
    is_positive = np.asarray(is_positive, dtype=bool)
    n_pos, n_neg = int(is_positive.sum()), int((~is_positive).sum())
    if not n_pos or not n_neg:
        return None
    ranks = _average_ranks(np.asarray(score, dtype=np.float64))
    u = ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their mean rank."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


@dataclass
class OperatingPoint:
    """Call positive when p(positive) >= threshold: the highest threshold whose sensitivity
    reaches the target, and the specificity it leaves."""

    target_sensitivity: float
    threshold: float
    sensitivity: float
    specificity: float
    positives: int
    negatives: int


def at_sensitivity(
    score: np.ndarray, is_positive: np.ndarray, target: float
) -> OperatingPoint | None:
    """The operating point reaching `target` sensitivity (None without both classes)."""
    is_positive = np.asarray(is_positive, dtype=bool)
    pos, neg = np.sort(score[is_positive])[::-1], score[~is_positive]
    if not len(pos) or not len(neg):
        return None
    needed = max(1, int(np.ceil(target * len(pos) - 1e-9)))  # positives to call
    threshold = float(pos[needed - 1])
    return OperatingPoint(
        target_sensitivity=float(target),
        threshold=threshold,
        sensitivity=float(np.mean(score[is_positive] >= threshold)),
        specificity=float(np.mean(neg < threshold)),
        positives=int(len(pos)),
        negatives=int(len(neg)),
    )
