"""The quantise report's byte counts and the budget failure that carries it."""

from __future__ import annotations

import numpy as np
from builders import conv_model
from onnx import helper, numpy_helper

from qtool.errors import WorkFailed
from qtool.quantization.report import BudgetNotMet, initializer_bytes


def test_initializer_bytes_count_initializers_and_constant_nodes():
    model = conv_model()
    weights = sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)
    counted = initializer_bytes(model)
    assert weights <= counted <= weights + 64 * len(model.graph.initializer)  # + names, dims
    constant = numpy_helper.from_array(np.zeros(1000, np.float32), "k")
    model.graph.node.append(helper.make_node("Constant", [], ["k"], value=constant))
    assert initializer_bytes(model) >= counted + 4000
    empty = helper.make_model(helper.make_graph([], "empty", [], []))
    assert initializer_bytes(empty) == 1  # never 0: it divides


def test_budget_not_met_is_a_work_failure_naming_the_budget():
    exc = BudgetNotMet("accuracy drop 2.00 pp exceeds the budget of 1.0 pp", report=None)
    assert isinstance(exc, WorkFailed) and exc.exit_code == 1
    assert exc.param == "max_accuracy_drop" and exc.report is None
