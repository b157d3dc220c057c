"""Per-budget statistics: moments, bootstrap interval, collapse rate, CSV export."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from qtool.faults.campaign.stats import (
    BudgetStats,
    TrialResult,
    bootstrap_ci,
    budget_stats,
    chance_accuracy,
    stats_csv,
)


def _trials(accuracies: list[float], **kwargs) -> list[TrialResult]:
    return [TrialResult(0, 4, i, a, kwargs.get("sdc", 0.0), kwargs.get("nan", 0))
            for i, a in enumerate(accuracies)]  # fmt: skip


def test_moments_and_collapse_rate():
    acc = [0.9, 0.8, 0.12, 0.1, 0.95]
    s = budget_stats("m.onnx", 4, _trials(acc, sdc=0.25), chance=0.1, seed=0)
    assert (s.model, s.bits, s.trials) == ("m.onnx", 4, 5)
    assert s.mean == pytest.approx(np.mean(acc)) and s.std == pytest.approx(np.std(acc, ddof=1))
    assert (s.min, s.median, s.max) == (0.1, 0.8, 0.95)
    assert s.collapsed_fraction == pytest.approx(2 / 5)  # 0.12 and 0.1 are <= chance + 5 pp
    assert s.sdc_rate == 0.25 and s.errors == 0 and s.nonfinite_trials == 0
    assert s.min <= s.ci95_low <= s.mean <= s.ci95_high <= s.max


def test_errors_and_nonfinite_trials_are_counted():
    trials = _trials([0.5, 0.5], nan=3) + [TrialResult(0, 4, 2, 0.0, 0.0, 0, "ORT refused")]
    s = budget_stats("m", 4, trials, chance=0.1, seed=0)
    assert (
        s.nonfinite_trials == 2 and s.errors == 1 and s.collapsed_fraction == pytest.approx(1 / 3)
    )


def test_bootstrap_is_seeded_and_covers_the_mean():
    values = np.random.default_rng(0).uniform(0.6, 1.0, 50)
    a = bootstrap_ci(values, np.random.default_rng(1))
    assert a == bootstrap_ci(values, np.random.default_rng(1))
    assert a[0] < values.mean() < a[1]
    half = values.std(ddof=1) / np.sqrt(len(values)) * 1.96  # the normal approximation
    assert a[1] - a[0] == pytest.approx(2 * half, rel=0.25)
    assert bootstrap_ci(np.array([0.7]), np.random.default_rng(1)) == (0.7, 0.7)
    s1 = budget_stats("m", 8, _trials(list(values)), 0.1, seed=3)
    s2 = budget_stats("m", 8, _trials(list(values)), 0.1, seed=3)
    assert (s1.ci95_low, s1.ci95_high) == (s2.ci95_low, s2.ci95_high)


def test_chance_and_csv():
    assert chance_accuracy(np.array([0, 1, 1, 2, 1])) == pytest.approx(0.6)
    stats = [budget_stats("a.onnx", b, _trials([0.9, 0.7]), 0.1, 0) for b in (1, 2)]
    rows = list(csv.reader(io.StringIO(stats_csv(stats))))
    assert rows[0] == list(BudgetStats.__dataclass_fields__)
    assert [r[:2] for r in rows[1:]] == [["a.onnx", "1"], ["a.onnx", "2"]]
    assert float(rows[1][rows[0].index("mean")]) == pytest.approx(0.8)
