"""Rows per ONNX Runtime run in campaigns and the bit search: bounded by the bytes of one
row's intermediate tensors, from shape inference; results do not depend on it."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qtool.data.datasets import load_dataset
from qtool.evaluation import batching
from qtool.evaluation.batching import MAX_ROWS, intermediate_bytes_per_row, rows_per_run
from qtool.faults.campaign import CampaignPlan, run_campaign
from qtool.faults.campaign.trials import prepare_model
from qtool.faults.storage import Selection


def conv_model(batch_dim="N"):
    """x (N,1,8,8) -> Conv 4 channels (N,4,8,8) -> Relu -> Flatten (N,256) -> MatMul (N,3)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((256, 3)).astype(np.float32), "fc"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
    ]
    nodes = [
        helper.make_node("Identity", ["one"], ["one_copy"]),  # computed from initializers only
        helper.make_node("Conv", ["x", "w"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch_dim, 3])], inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_bytes_per_row_count_every_tensor_computed_from_the_input():
    # h and r: 4*8*8 floats each, f: 256 floats, y: 3 floats; the Identity of "one" is not
    expected = (256 + 256 + 256 + 3) * 4
    assert intermediate_bytes_per_row(conv_model(), "x") == expected
    assert intermediate_bytes_per_row(conv_model(batch_dim=5), "x") == expected  # batch -> 1


def test_no_estimate_without_a_readable_input_shape():
    model = conv_model()
    del model.graph.input[0].type.tensor_type.shape.dim[:]
    assert intermediate_bytes_per_row(model, "x") is None
    assert intermediate_bytes_per_row(conv_model(), "no_such_input") is None


def test_rows_per_run_bounds():
    mb = batching.RUN_INTERMEDIATES_MB * 2**20
    assert rows_per_run(None, 5 * MAX_ROWS) == MAX_ROWS  # no estimate: the plain cap
    assert rows_per_run(1000, 300) == 300  # small rows: everything in one run
    assert rows_per_run(mb // 10, 300) == 10  # 10 rows fill the bound
    assert rows_per_run(mb // 105, 400) == 100  # 4 equal runs, not 105, 105, 105, 85
    assert rows_per_run(mb * 4, 300) == 1  # a row over the bound still runs, alone
    assert rows_per_run(None, 1500) == 750  # two runs of 750 under the 1024-row cap
    assert rows_per_run(1000, 0) == 1  # no rows: run_scores says the data set is empty


def test_campaign_results_do_not_depend_on_rows_per_run(monkeypatch, tmp_path):
    """A bound that allows ~40 rows per run splits the digits test split into many runs; the
    trials' results are those of one run over the whole split, incremental or not."""
    path = tmp_path / "conv.onnx"
    model = conv_model()
    onnx.save(model, path)
    x_rows = len(load_dataset("digits").x)
    plan = CampaignPlan(budgets=(1, 4), trials=4, seed=3)
    whole = run_campaign([path], "digits", plan, show_progress=False)
    row_bytes = intermediate_bytes_per_row(model, "x")
    monkeypatch.setattr(batching, "RUN_INTERMEDIATES_MB", 40 * row_bytes / 2**20)
    prepared = prepare_model(path, load_dataset("digits"), Selection(), incremental=True)
    assert prepared.batch <= 40 < x_rows
    assert prepared.evaluation.mode == "incremental"
    for incremental in (True, False):
        split = run_campaign(
            [path], "digits", CampaignPlan(budgets=(1, 4), trials=4, seed=3,
                                           incremental=incremental),
            show_progress=False,
        )  # fmt: skip
        assert split.trial_results == whole.trial_results


@pytest.mark.parametrize("rows", [1, 7])
def test_a_data_set_smaller_than_the_bound_is_one_run(rows):
    assert rows_per_run(intermediate_bytes_per_row(conv_model(), "x"), rows) == rows
