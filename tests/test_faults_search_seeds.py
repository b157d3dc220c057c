"""Several seeded searches summarised: flips to the target and accuracy at each budget."""

from __future__ import annotations

import math

import pytest

from qtool.faults.incremental import EvaluationMode
from qtool.faults.search.results import SearchResult, flips_to
from qtool.faults.search.seeds import budget_summary


def _run(seed: int, accuracies: list[float], target: float) -> SearchResult:
    return SearchResult(
        model="m.onnx", data="digits", seed=seed, method="gradient", fallback_reason=None,
        bits=len(accuracies) - 1, until_accuracy=target, attack_samples=8,
        attack_split="train", eval_split="test", eval_samples=10, chance=0.1,
        clean_accuracy=accuracies[0], clean_attack_loss=0.1,
        flips_to_target=flips_to(accuracies, target), final_accuracy=accuracies[-1],
        accuracies=accuracies, steps=[], search_seconds=0.0, evaluation=EvaluationMode("full"),
    )  # fmt: skip


def test_flips_to_target():
    assert flips_to([0.9, 0.5, 0.2, 0.1], 0.2) == 2
    assert flips_to([0.9, 0.5], 0.2) is None and flips_to([0.9], None) is None


def test_budget_summary_over_seeds():
    runs = [_run(0, [0.9, 0.4, 0.2], 0.3), _run(1, [0.9, 0.8, 0.6, 0.25], 0.3),
            _run(2, [0.9, 0.85], 0.3)]  # fmt: skip
    summary = budget_summary(runs, [1, 2, 5])
    ftt = summary["flips_to_target"]
    assert ftt["values"] == [2, 3, None] and (ftt["reached"], ftt["runs"]) == (2, 3)
    assert ftt["mean"] == 2.5 and ftt["std"] == pytest.approx(math.sqrt(0.5))
    acc = summary["accuracy_at"]
    assert acc["1"]["mean"] == pytest.approx((0.4 + 0.8 + 0.85) / 3)
    # a search that stopped early keeps its last accuracy for larger budgets
    assert acc["5"]["mean"] == pytest.approx((0.2 + 0.25 + 0.85) / 3)
    assert summary["seeds"] == [0, 1, 2]
    assert math.isnan(budget_summary([runs[2]], [1])["flips_to_target"]["mean"])
