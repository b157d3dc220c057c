"""Per-budget statistics of a campaign: the bit-flip literature's mean, std, min, median,
max, a bootstrap 95 % interval of the mean, and how often the model collapsed to chance."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, fields

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
CI_METHOD = f"percentile bootstrap of the mean, {BOOTSTRAP_RESAMPLES} resamples"
COLLAPSE_MARGIN = 0.05  # a trial at or below chance + 5 pp has collapsed


@dataclass
class TrialResult:
    model: int
    bits: int
    trial: int
    accuracy: float
    sdc_rate: float  # clean-correct inputs now wrong with finite scores
    nonfinite_rows: int  # inputs whose scores contain NaN/Inf
    error: str | None = None


@dataclass
class BudgetStats:
    model: str
    bits: int
    trials: int
    mean: float
    std: float
    min: float
    median: float
    max: float
    ci95_low: float
    ci95_high: float
    collapsed_fraction: float  # trials at or below chance + 5 pp
    nonfinite_trials: int  # trials with any NaN/Inf output
    sdc_rate: float  # mean over trials
    errors: int  # trials whose flipped model ONNX Runtime refused
    provider: str = "cpu"  # the execution provider the trials ran on


def chance_accuracy(labels: np.ndarray) -> float:
    """Accuracy of always answering the most common class."""
    counts = np.bincount(labels)
    return float(counts.max() / counts.sum())


def bootstrap_ci(
    values: np.ndarray, rng: np.random.Generator, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (the mean itself for one value)."""
    if len(values) < 2:
        return float(values.mean()), float(values.mean())
    resampled = values[rng.integers(0, len(values), size=(BOOTSTRAP_RESAMPLES, len(values)))]
    tail = round(50.0 * (1.0 - confidence), 9)  # 2.5 exactly for 95 %
    low, high = np.percentile(resampled.mean(axis=1), [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_rng(seed: int, bits: int) -> np.random.Generator:
    """The bootstrap's generator for one budget (the same for the interval and for sizing)."""
    return np.random.default_rng([seed, 0xB0075, bits])


def budget_stats(
    name: str,
    bits: int,
    results: list[TrialResult],
    chance: float,
    seed: int,
    provider: str = "cpu",
) -> BudgetStats:
    """Statistics of one model at one budget; the bootstrap is seeded by (seed, bits)."""
    acc = np.array([r.accuracy for r in results], dtype=np.float64)
    low, high = bootstrap_ci(acc, bootstrap_rng(seed, bits))
    return BudgetStats(
        model=name,
        bits=bits,
        trials=len(acc),
        mean=float(acc.mean()),
        std=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
        min=float(acc.min()),
        median=float(np.median(acc)),
        max=float(acc.max()),
        ci95_low=low,
        ci95_high=high,
        collapsed_fraction=float((acc <= chance + COLLAPSE_MARGIN + 1e-12).mean()),
        nonfinite_trials=sum(r.nonfinite_rows > 0 for r in results),
        sdc_rate=float(np.mean([r.sdc_rate for r in results])),
        errors=sum(r.error is not None for r in results),
        provider=provider,
    )


def stats_csv(stats: list[BudgetStats]) -> str:
    """The statistics as CSV, one row per model and budget, columns = BudgetStats fields.

    A data export like the JSON report (machine-readable, no presentation choices), so it
    stays in the library where the fields are defined."""
    buf = io.StringIO()
    names = [f.name for f in fields(BudgetStats)]
    writer = csv.writer(buf)
    writer.writerow(names)
    for s in stats:
        writer.writerow([getattr(s, n) for n in names])
    return buf.getvalue()
