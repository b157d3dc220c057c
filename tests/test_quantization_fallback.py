"""The accuracy-aware loop: which nodes go back to FP32, and when it stops."""

from __future__ import annotations

from pathlib import Path

from qtool.quantization.fallback import Attempt, Budget, nodes_to_add, run_fallback
from qtool.quantization.tensor_errors import TensorError


def _err(tensor: str, noise: float, nodes: list[str]) -> TensorError:
    return TensorError(tensor, nodes[0], "Gemm", 10.0, noise, nodes)


ERRORS = [
    _err("t1", 0.5, ["fc1", "relu1"]),
    _err("t2", 0.4, ["relu1"]),
    _err("t3", 0.3, ["fc2", "fc3"]),
    _err("t4", 0.1, ["fc4"]),
]


def test_nodes_of_the_worst_tensors_not_already_fp32():
    assert nodes_to_add(ERRORS, set(), 1) == ["fc1", "relu1"]
    assert nodes_to_add(ERRORS, set(), 2) == ["fc1", "relu1", "fc2", "fc3"]  # t2 adds nothing
    assert nodes_to_add(ERRORS, {"fc1"}, 1) == ["relu1"]
    assert nodes_to_add(ERRORS, {"fc1", "relu1", "fc2", "fc3", "fc4"}, 2) == []


class Model:
    """Accuracy as a function of the nodes kept in FP32: each listed node is worth points."""

    def __init__(self, worth: dict[str, float], base: float = 0.90):
        self.worth, self.base, self.calls = worth, base, []

    def attempt(self, extra: list[str], tag: str) -> Attempt:
        self.calls.append(list(extra))
        acc = self.base + sum(self.worth.get(n, 0.0) for n in extra)
        return Attempt(Path(f"q_{tag}.onnx"), extra, ERRORS, acc, 1.0)


def _drop(attempt: Attempt) -> float:
    return round(100 * (0.95 - attempt.accuracy), 6)


def test_stops_at_the_first_attempt_within_budget():
    model = Model({"fc1": 0.02, "fc2": 0.03})
    first = model.attempt([], "0")
    outcome = run_fallback(first, model.attempt, _drop, Budget(0.5, 1, None, []))
    assert outcome.within is True
    assert outcome.final.extra == ["fc1", "relu1", "fc2", "fc3"]
    assert [s.added for s in outcome.steps] == [["fc1", "relu1"], ["fc2", "fc3"]]
    assert [s.fp32_nodes for s in outcome.steps] == [2, 4]
    assert outcome.steps[-1].drop_pp == 0.0


def test_max_steps_and_exhaustion_keep_the_most_accurate_attempt():
    model = Model({"fc1": 0.03, "fc2": -0.01})
    first = model.attempt([], "0")
    two = run_fallback(first, model.attempt, _drop, Budget(0.1, 1, 2, []))
    assert two.within is False and len(two.steps) == 2
    assert two.final.extra == ["fc1", "relu1"]  # better than the later, worse attempt
    none = run_fallback(first, model.attempt, _drop, Budget(0.1, 1, 0, []))
    assert none.final is first and none.steps == []
    everything = run_fallback(first, model.attempt, _drop, Budget(0.1, 4, None, ["fc4"]))
    assert everything.within is False and len(everything.steps) == 1  # then nothing is left
    assert "fc4" not in everything.steps[0].added  # the user's exclusions stay out


def test_a_first_attempt_within_budget_is_final():
    model = Model({})
    first = model.attempt([], "0")
    outcome = run_fallback(first, model.attempt, _drop, Budget(5.0, 1, None, []))
    assert outcome.within is True and outcome.final is first and model.calls == [[]]
