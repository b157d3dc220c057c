"""Classification accuracy of an ONNX model in ONNX Runtime, for models qtool made or not.

Which tensors to feed and read is `model_io` (evaluation/model_io.py); the numbers are
`classification_metrics` (evaluation/metrics.py); this module joins them on a data set.
The names other stages import from here are re-exported.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from qtool.data.dataset import Dataset
from qtool.errors import QtoolError
from qtool.evaluation.metrics import ClassStats, EvalResult, classification_metrics
from qtool.evaluation.model_io import FLOAT_TYPES, ModelIO, model_io, run_scores
from qtool.evaluation.roc import at_sensitivity, positive_probability, roc_auc

__all__ = [
    "FLOAT_TYPES",
    "ClassStats",
    "EvalResult",
    "ModelIO",
    "classification_metrics",
    "evaluate_session",
    "model_io",
    "predicted_labels",
    "run_scores",
]


def predicted_labels(scores: np.ndarray) -> np.ndarray:
    """Arg-max class per row; a NaN score never wins."""
    return np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=1)


def check_against_model(dataset: Dataset, classes: int) -> None:
    """Labels must index the model's classes: a label the model cannot output would score as
    a silent miss (0 % on a class), so a data set of more classes than the model is refused."""
    if dataset.y is not None and len(dataset.y) and int(dataset.y.max()) >= classes:
        raise QtoolError(
            f"data set {dataset.spec} ({dataset.split}) has label {int(dataset.y.max())} but the "
            f"model scores {classes} classes (0..{classes - 1}): is it the data set the model "
            "was trained on?"
        )


def evaluate_session(
    session: ort.InferenceSession,
    io: ModelIO,
    dataset: Dataset,
    batch: int = 64,
    positive: int | str | None = None,
    at_sensitivity: float | None = None,
) -> EvalResult:
    """Score a labelled data set; rows with a NaN/Inf score are counted as well. Two-class
    models also get the ROC AUC and, given `at_sensitivity` (0..1], the threshold and
    specificity at that sensitivity. `positive` is a class index or name (default: the
    model's recorded positive class, else the data set's)."""
    if dataset.y is None:
        raise QtoolError(
            f"data set {dataset.spec} ({dataset.split}) has no labels to score against"
        )
    scores = run_scores(session, io, io.prepare(dataset.x), batch)
    check_against_model(dataset, scores.shape[1])
    nonfinite = int((~np.isfinite(scores)).any(axis=1).sum())
    names = io.class_names or dataset.class_names
    positive = _class_index(positive, names)
    if positive is None:  # asked, else the model's own (export), else the data set's
        positive = io.positive_class
    if positive is None:
        positive = dataset.extra.get("positive_class")
    elif not 0 <= positive < scores.shape[1] or scores.shape[1] != 2:
        raise QtoolError(
            f"positive class {positive} does not exist: the model scores "
            f"{scores.shape[1]} classes (0..{scores.shape[1] - 1}); sensitivity and specificity "
            "are for two classes, 0 or 1",
            param="positive_class",
        )
    result = classification_metrics(predicted_labels(scores), dataset.y, names, positive)
    _screening(result, scores, dataset.y, positive, at_sensitivity)
    result.nonfinite_outputs = nonfinite
    result.data, result.split, result.output = dataset.spec, dataset.split, io.output_name
    return result


def _class_index(positive: int | str | None, names: list[str]) -> int | None:
    """A class name (or an index given as text) -> its index."""
    if not isinstance(positive, str):
        return positive
    if positive in names:
        return names.index(positive)
    if positive.strip().lstrip("-").isdigit():
        return int(positive)
    raise QtoolError(
        f"positive class {positive!r} is not one of the classes ({', '.join(names)})",
        param="positive_class",
    )


def _screening(result: EvalResult, scores, labels, positive, at_sens: float | None) -> None:
    """ROC AUC and the operating point, for two-class models scoring two columns."""
    two_class = result.sensitivity is not None and scores.shape[1] == 2
    if at_sens is not None and not two_class:
        raise QtoolError(
            "an operating point at a sensitivity is for two-class models; this one gives "
            f"{scores.shape[1]} class scores",
            param="at_sensitivity",
        )
    if at_sens is not None and not 0 < at_sens <= 1:
        raise QtoolError(
            f"the sensitivity must be in (0, 1], e.g. 0.95; got {at_sens}", param="at_sensitivity"
        )
    if not two_class:
        return
    pos = 1 if positive is None else int(positive)
    score = positive_probability(scores, pos)
    is_positive = np.asarray(labels) == pos
    result.roc_auc = roc_auc(score, is_positive)
    if at_sens is not None:
        point = at_sensitivity(score, is_positive, at_sens)
        result.operating_point = None if point is None else vars(point)
