"""Per-tensor error: SQNR of real FP32 vs INT8 runs, and the noise traced through the graph."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from builders import conv_model, save
from onnx import TensorProto, helper

from qtool.data.sources import load_dataset
from qtool.evaluation.model_io import model_io
from qtool.quantization.quantize import QuantizeOptions, quantize_model
from qtool.quantization.quantizer import name_nodes
from qtool.quantization.tensor_errors import NoiseMap, tensor_errors


def _chain():
    """x -> Conv A -> a -> Relu B -> b -> Gemm C -> c, with `b` unmeasured (fused)."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], name="A"),
        helper.make_node("Relu", ["a"], ["b"], name="B"),
        helper.make_node("Gemm", ["b", "v"], ["c"], name="C"),
        helper.make_node("Identity", ["c"], ["d"], name="D"),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("d", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])],
    )
    return graph


def test_noise_is_traced_through_unmeasured_tensors():
    noise = NoiseMap(_chain(), {"a": 0.01, "c": 0.05})
    assert noise.upstream("x") == 0.0  # a graph input is noise-free
    assert noise.upstream("b") == 0.01  # unmeasured: what feeds it
    c = noise.producer["c"]
    assert np.isclose(noise.added("c", c), 0.04)
    assert noise.segment(c) == ["C", "B"]  # the fused Relu goes with the Gemm
    assert noise.nodes_to_keep("a", noise.producer["a"]) == ["A", "B"]  # plus its consumer
    assert noise.nodes_to_keep("c", c) == ["C", "B", "D"]
    quiet = NoiseMap(_chain(), {"a": 0.2, "c": 0.05})
    assert quiet.added("c", c) == 0.0  # never negative


def _quantised(tmp_path):
    src = save(conv_model(), tmp_path / "m.onnx")
    quantize_model(src, tmp_path / "q.onnx", "digits", QuantizeOptions(samples=64))
    graph = name_nodes(src).graph  # named in place, as quantize_model names its copy
    return src, tmp_path / "q.onnx", graph, load_dataset("digits:train").take(32).x


def test_sqnr_of_the_output_matches_a_direct_computation(tmp_path):
    pre, q, graph, x = _quantised(tmp_path)
    fp32 = ort.InferenceSession(str(pre), providers=["CPUExecutionProvider"])
    io = model_io(fp32)
    errors = tensor_errors(pre, q, io, x, graph, tmp_path)
    by_tensor = {e.tensor: e for e in errors}
    assert {"r", "logits"} <= set(by_tensor)
    int8 = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"])
    want = fp32.run(["logits"], {"x": x})[0]
    got = int8.run(["logits"], {"x": x})[0]
    direct = 20 * np.log10(np.linalg.norm(want) / np.linalg.norm(want - got))
    assert np.isclose(by_tensor["logits"].sqnr_db, direct, atol=2e-3)
    assert by_tensor["r"].nodes[:2] == ["Relu_1", "Conv_0"]  # the Conv fused into the Relu's Q
    keys = [(-e.added_noise, e.sqnr_db, e.tensor) for e in errors]
    assert keys == sorted(keys)  # worst first, ties by name
    assert all(0 <= e.added_noise <= 1 and e.sqnr_db <= 200 for e in errors)


def test_streaming_gives_the_full_analysis_tensor_errors(tmp_path):
    """The streamed SQNR equals qdq_loss_debug's collect-everything run, at any memory bound
    (1 byte: one sample at a time; 1 GiB: everything after the first sample)."""
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    from qtool.quantization.calibration import batches, reader
    from qtool.quantization.tensor_errors import measure_sqnr

    src, q, _, x = _quantised(tmp_path)
    io = model_io(ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]))
    aug_f, aug_q = tmp_path / "full_f.onnx", tmp_path / "full_q.onnx"
    modify_model_output_intermediate_tensors(str(src), str(aug_f))
    modify_model_output_intermediate_tensors(str(q), str(aug_q))
    parts = batches(x, 8, None)
    float_acts = collect_activations(str(aug_f), reader("x", parts))
    qdq_acts = collect_activations(str(aug_q), reader("x", parts))
    matched = create_activation_matching(qdq_acts, float_acts)
    matched = {k: v for k, v in matched.items() if v.get("float")}
    full = {t: e["xmodel_err"] for t, e in compute_activation_error(matched).items()}
    assert {"x", "r", "logits"} <= set(full)
    for memory in (1, 1 << 30):
        streamed = measure_sqnr(src, q, io, x, tmp_path, memory)
        assert set(streamed) == set(full)
        for tensor, db in full.items():
            assert streamed[tensor] == pytest.approx(db, abs=1e-3), tensor
