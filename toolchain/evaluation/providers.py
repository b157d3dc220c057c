"""Accuracy of one model on each execution provider, against the CPU provider.

A faster provider that changes predictions must show it: for each provider the model is
scored on the same prepared samples, and compared with the CPU provider (onnxruntime's
reference kernels) on the same model: accuracy, top-1 agreement, the largest score
difference (a sign of the precision the provider really ran at: ~1e-6 for f32 kernels,
~1e-2 for bf16), and the accuracy drop in percentage points, flagged outside a budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qtool.data.dataset import Dataset
from qtool.errors import QtoolError
from qtool.evaluation.evaluate import predicted_labels
from qtool.evaluation.model_io import model_io, run_scores
from qtool.modelfile.load import load_model
from qtool.modelfile.metadata import qtool_metadata
from qtool.runtimes.providers import PROVIDERS, ProviderSpec
from qtool.runtimes.session import make_session

REFERENCE = "cpu"


@dataclass
class ProviderAccuracy:
    """One model on one provider, scored and compared with the CPU provider."""

    model: str
    provider: str
    precision: str  # the precision mode asked (fp32 or auto)
    data: str
    samples: int
    accuracy: float
    cpu_accuracy: float
    accuracy_drop_pp: float  # CPU provider's accuracy minus this one's, percentage points
    top1_agreement_with_cpu: float
    max_abs_score_diff_vs_cpu: float
    nonfinite_rows: int
    max_accuracy_drop_pp: float | None = None
    within_budget: bool | None = None  # None: no budget given


@dataclass
class _Scored:
    scores: np.ndarray
    pred: np.ndarray


def _score(
    path: Path, spec: ProviderSpec, dataset: Dataset, threads: int, precision: str, batch: int
) -> _Scored:
    session = make_session(path, [spec.name], threads, precision=precision)
    io = model_io(session, qtool_metadata(load_model(path)))
    scores = run_scores(session, io, io.prepare(dataset.x), batch)
    return _Scored(scores, predicted_labels(scores))


def compare_providers(
    model: str | Path,
    specs: Sequence[ProviderSpec],
    dataset: Dataset,
    *,
    threads: int = 1,
    precision: str = "fp32",
    batch: int = 64,
    max_accuracy_drop: float | None = None,
    label: str | None = None,
    failures: list[dict] | None = None,
) -> list[ProviderAccuracy]:
    """Score `model` on every provider of `specs` and compare each with the CPU provider (run
    at fp32 for reference whether or not it is among `specs`). With a `failures` list, a
    provider that cannot load the model is recorded there ({model, provider, error}) and
    skipped; without one its QtoolError propagates."""
    if dataset.y is None:
        raise QtoolError(
            f"data set {dataset.spec} ({dataset.split}) has no labels to score providers on",
            param="data",
        )
    path = Path(model)
    reference = _score(path, PROVIDERS.get(REFERENCE), dataset, threads, "fp32", batch)
    cpu_acc = float(np.mean(reference.pred == dataset.y))
    rows = []
    for spec in specs:
        same = spec.name == REFERENCE and precision == "fp32"
        try:
            scored = reference if same else _score(path, spec, dataset, threads, precision, batch)
        except QtoolError as exc:
            if failures is None:
                raise
            failures.append({"model": str(path), "provider": spec.name, "error": str(exc)})
            continue
        accuracy = float(np.mean(scored.pred == dataset.y))
        drop = round(100.0 * (cpu_acc - accuracy), 6)
        with np.errstate(invalid="ignore"):
            diff = np.abs(scored.scores.astype(np.float64) - reference.scores)
        rows.append(
            ProviderAccuracy(
                model=label or path.name,
                provider=spec.name,
                precision=precision,
                data=f"{dataset.spec} ({dataset.split})",
                samples=len(dataset.y),
                accuracy=accuracy,
                cpu_accuracy=cpu_acc,
                accuracy_drop_pp=drop,
                top1_agreement_with_cpu=float(np.mean(scored.pred == reference.pred)),
                max_abs_score_diff_vs_cpu=float(np.nanmax(diff)) if diff.size else 0.0,
                nonfinite_rows=int((~np.isfinite(scored.scores)).any(axis=1).sum()),
                max_accuracy_drop_pp=max_accuracy_drop,
                within_budget=None if max_accuracy_drop is None else drop <= max_accuracy_drop,
            )
        )
    return rows
