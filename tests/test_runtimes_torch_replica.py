"""The torch replica against ONNX Runtime, op by op, on small graphs built with onnx.helper;
its straight-through gradient; and its refusals."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")
from qtool.runtimes.torch_replica import TorchReplica, UnsupportedGraph  # noqa: E402

F, I64 = TensorProto.FLOAT, TensorProto.INT64
RNG = np.random.default_rng(0)


def _model(nodes, feeds, inits=None, outputs=("y",), out_type=F, opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
            for n, v in feeds.items()
        ],  # fmt: skip
        [helper.make_tensor_value_info(n, out_type, None) for n in outputs],
        [numpy_helper.from_array(v, n) for n, v in (inits or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # outputs without shapes: ONNX Runtime infers them
    return model


def _both(model: onnx.ModelProto, feeds: dict, trainable=()) -> list[tuple]:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), opts)
    names = [o.name for o in model.graph.output]
    ref = session.run(names, feeds)
    replica = TorchReplica(model, trainable)
    out = replica.run({k: torch.from_numpy(v) for k, v in feeds.items()}, names)
    return [(r, o.detach().numpy()) for r, o in zip(ref, out, strict=True)]


def _close(model, feeds, atol=1e-5, trainable=()):
    for ref, out in _both(model, feeds, trainable):
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=atol)


def x(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize(
    "attrs, w_shape",
    [
        ({"pads": [1, 1, 1, 1]}, (4, 3, 3, 3)),
        ({"strides": [2, 2], "dilations": [1, 2]}, (4, 3, 3, 3)),
        ({"group": 3}, (6, 1, 3, 3)),
        ({"pads": [0, 1, 2, 0]}, (2, 3, 2, 2)),  # asymmetric: padded explicitly
        ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, (2, 3, 3, 3)),
    ],
)
def test_conv(attrs, w_shape):
    inits = {"w": x(*w_shape), "b": x(w_shape[0])}
    model = _model([helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)],
                   {"x": x(2, 3, 7, 7)}, inits)  # fmt: skip
    _close(model, {"x": x(2, 3, 7, 7)}, trainable=["w"])


@pytest.mark.parametrize("trans_a, trans_b", [(0, 0), (1, 0), (0, 1)])
def test_gemm_and_matmul(trans_a, trans_b):
    a = x(5, 4) if trans_a else x(4, 5)
    b = x(6, 5) if trans_b else x(5, 6)
    gemm = helper.make_node("Gemm", ["a", "b", "c"], ["y"], alpha=0.5, beta=2.0,
                            transA=trans_a, transB=trans_b)  # fmt: skip
    _close(_model([gemm], {"a": a}, {"b": b, "c": x(6)}), {"a": a})
    batched = _model([helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": x(3, 2, 4)},
                     {"b": x(4, 5)})  # fmt: skip
    _close(batched, {"a": x(3, 2, 4)})


def test_qdq_pairs_match_onnx_runtime_exactly():
    # x / scale lands exactly on .5 ties: both round half to even; values beyond saturate
    feed = {"x": np.array([[0.25, 0.75, 1.25, -0.25, 100.0, -100.0, 3.1, -0.7]], np.float32)}
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
    ]
    for zero in (np.int8(0), np.uint8(128)):
        inits = {"s": np.array(0.5, np.float32), "z": np.array(zero)}
        for ref, out in _both(_model(nodes, feed, inits), feed):
            np.testing.assert_array_equal(out, ref)


def test_per_channel_int8_weights_through_dequantize():
    wq = RNG.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8)
    inits = {"wq": wq, "ws": np.abs(x(4)) / 50, "wz": np.zeros(4, np.int8)}
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
        helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
    ]
    _close(_model(nodes, {"x": x(1, 3, 6, 6)}, inits), {"x": x(1, 3, 6, 6)}, trainable=["wq"])


def test_shape_ops():
    data = x(2, 3, 4, 5)
    nodes = [
        helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["s"]),
        helper.make_node("Pad", ["s", "pads"], ["p"], mode="reflect"),
        helper.make_node("Transpose", ["p"], ["t"], perm=[0, 2, 1, 3]),
        helper.make_node("Concat", ["t", "t"], ["c"], axis=-1),
        helper.make_node("Reshape", ["c", "shape"], ["r"]),
        helper.make_node("Gather", ["r", "idx"], ["g"], axis=1),
        helper.make_node("Unsqueeze", ["g", "uax"], ["u"]),
        helper.make_node("Squeeze", ["u", "uax"], ["q"]),
        helper.make_node("Flatten", ["q"], ["y"], axis=1),
    ]
    inits = {
        "st": np.array([3, 0], np.int64), "en": np.array([-10, 3], np.int64),
        "ax": np.array([3, 1], np.int64), "sp": np.array([-2, 1], np.int64),
        "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
        "shape": np.array([2, 0, -1], np.int64), "idx": np.array([[0, 2], [-1, 1]], np.int64),
        "uax": np.array([0], np.int64),
    }  # fmt: skip
    _close(_model(nodes, {"x": data}, inits), {"x": data})


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "wrap"])
def test_pad_modes(mode):
    inits = {"pads": np.array([0, 0, 1, 0, 0, 0, 2, 1], np.int64), "v": np.array(1.5, np.float32)}
    model = _model([helper.make_node("Pad", ["x", "pads", "v"], ["y"], mode=mode)],
                   {"x": x(2, 3, 4, 5)}, inits, opset=19)  # fmt: skip
    _close(model, {"x": x(2, 3, 4, 5)})


def test_pooling_normalisation_and_reductions():
    nodes = [
        helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["n"]),
        helper.make_node(
            "MaxPool", ["n"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),  # fmt: skip
        helper.make_node(
            "AveragePool", ["p"], ["a"], kernel_shape=[2, 2], pads=[0, 0, 1, 1], count_include_pad=1
        ),  # fmt: skip
        helper.make_node("GlobalAveragePool", ["a"], ["ga"]),
        helper.make_node("ReduceMean", ["a"], ["rm"], axes=[2, 3], keepdims=1),
        helper.make_node("Add", ["ga", "rm"], ["s"]),
        helper.make_node("Flatten", ["s"], ["f"]),
        helper.make_node("LogSoftmax", ["f"], ["y"], axis=-1),
    ]
    inits = {"g": x(3), "b": x(3), "m": x(3), "v": np.abs(x(3)) + 0.5}
    _close(_model(nodes, {"x": x(2, 3, 9, 9)}, inits), {"x": x(2, 3, 9, 9)})


@pytest.mark.parametrize(
    "op, attrs",
    [("Relu", {}), ("LeakyRelu", {"alpha": 0.2}), ("Elu", {}), ("Sigmoid", {}), ("Tanh", {}),
     ("Erf", {}), ("HardSigmoid", {}), ("HardSwish", {}), ("Abs", {}), ("Neg", {}),
     ("Softmax", {"axis": 1})],
)  # fmt: skip
def test_activations(op, attrs):
    _close(_model([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": x(4, 6)}), {"x": x(4, 6)})


def test_arithmetic_comparisons_and_where():
    nodes = [
        helper.make_node("Mul", ["x", "k"], ["m"]),
        helper.make_node("Div", ["m", "k"], ["d"]),
        helper.make_node("Sub", ["d", "x"], ["z"]),
        helper.make_node("Greater", ["x", "z"], ["gt"]),
        helper.make_node("Where", ["gt", "x", "k"], ["w"]),
        helper.make_node("Clip", ["w", "lo", "hi"], ["c"]),
        helper.make_node("Max", ["c", "x", "k"], ["y"]),
    ]
    inits = {"k": x(6), "lo": np.array(-0.5, np.float32), "hi": np.array(0.5, np.float32)}
    _close(_model(nodes, {"x": x(4, 6)}, inits), {"x": x(4, 6)})


def test_integer_shape_arithmetic():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i"], ["n"], axis=0),
        helper.make_node("Range", ["zero", "n", "one"], ["r"]),
        helper.make_node("Expand", ["r", "s2"], ["e"]),
        helper.make_node("Tile", ["e", "reps"], ["y"]),
    ]
    inits = {"i": np.array(1, np.int64), "zero": np.array(0, np.int64),
             "one": np.array(1, np.int64), "s2": np.array([2, 1], np.int64),
             "reps": np.array([1, 2], np.int64)}  # fmt: skip
    for ref, out in _both(_model(nodes, {"x": x(3, 5)}, inits, out_type=I64), {"x": x(3, 5)}):
        np.testing.assert_array_equal(out, ref)


def test_straight_through_gradient_is_one_inside_the_range_and_zero_outside():
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
    ]
    inits = {"s": np.array(0.1, np.float32), "z": np.array(0, np.int8)}
    replica = TorchReplica(_model(nodes, {"x": x(1, 8)}, inits))
    values = torch.tensor([[0.0, 0.33, -5.0, 12.0, 12.8, -12.9, 20.0, -30.0]], requires_grad=True)
    replica.run({"x": values}, ["y"])[0].sum().backward()
    assert values.grad.tolist() == [[1, 1, 1, 1, 0, 0, 0, 0]]  # int8 saturates at +-12.7/12.8


def test_gradient_of_a_stored_int8_weight():
    """The leaf is the stored integer: dL/dq = scale * dL/dW."""
    wq = RNG.integers(-128, 128, (3, 2)).astype(np.int8)
    inits = {"wq": wq, "s": np.array(0.25, np.float32), "z": np.array(0, np.int8)}
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["w"]),
        helper.make_node("MatMul", ["x", "w"], ["y"]),
    ]
    replica = TorchReplica(_model(nodes, {"x": x(4, 3)}, inits), ["wq"])
    feed = torch.from_numpy(x(4, 3))
    replica.run({"x": feed}, ["y"])[0].sum().backward()
    expected = 0.25 * feed.sum(0)[:, None].expand(3, 2)
    np.testing.assert_allclose(replica.params["wq"].grad.numpy(), expected.numpy(), rtol=1e-6)
    assert replica.params["wq"].detach().numpy().tolist() == wq.astype(np.float32).tolist()


def test_incremental_rerun_equals_a_full_run():
    inits = {"w1": x(4, 8), "w2": x(8, 3)}
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    replica = TorchReplica(_model(nodes, {"x": x(5, 4)}, inits), ["w1", "w2"])
    feed = {"x": torch.from_numpy(x(5, 4))}
    cache = replica.run_env(feed)
    replica.set_element("w2", 4, 10.0)
    partial = replica.run_env(cache=cache, changed=["w2"])["y"]
    assert torch.equal(partial, replica.run(feed)[0])
    assert not torch.equal(partial, cache["y"])


def test_logits_name_skips_a_final_softmax():
    nodes = [helper.make_node("Gemm", ["x", "w"], ["z"]),
             helper.make_node("Softmax", ["z"], ["y"], axis=1)]  # fmt: skip
    replica = TorchReplica(_model(nodes, {"x": x(2, 4)}, {"w": x(4, 3)}))
    assert replica.logits_name("y") == ("z", "logits")
    assert replica.logits_name("z") == ("z", "logits")


@pytest.mark.parametrize(
    "node, message",
    [
        (helper.make_node("Hardmax", ["x"], ["y"]), "Hardmax"),
        (helper.make_node("Fancy", ["x"], ["y"], domain="com.example"), "com.example.Fancy"),
    ],
)
def test_unknown_ops_are_unsupported(node, message):
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", F, [1, 4])],
                              [helper.make_tensor_value_info("y", F, [1, 4])])  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    with pytest.raises(UnsupportedGraph, match=message):
        TorchReplica(model)


def test_unsupported_attributes_and_targets():
    pool = helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2])
    model = _model([pool], {"x": x(1, 1, 4, 4)}, outputs=("y",))
    with pytest.raises(UnsupportedGraph, match="MaxPool with an Indices output"):
        TorchReplica(model).run({"x": torch.from_numpy(x(1, 1, 4, 4))})
    with pytest.raises(UnsupportedGraph, match="no initializer named 'nope'"):
        TorchReplica(model, ["nope"])


def _qdq_net():
    """int8 weight -> Conv -> QDQ activation -> Conv: what the bit search differentiates."""
    w1 = RNG.integers(-128, 128, (4, 2, 3, 3)).astype(np.int8)
    w2 = RNG.integers(-128, 128, (3, 4, 3, 3)).astype(np.int8)
    inits = {"w1q": w1, "w2q": w2, "ws": np.array(0.02, np.float32), "wz": np.array(0, np.int8),
             "as": np.array(0.05, np.float32), "az": np.array(128, np.uint8)}  # fmt: skip
    nodes = [
        helper.make_node("DequantizeLinear", ["w1q", "ws", "wz"], ["w1"]),
        helper.make_node("DequantizeLinear", ["w2q", "ws", "wz"], ["w2"]),
        helper.make_node("Conv", ["x", "w1"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["h", "as", "az"], ["hq"]),
        helper.make_node("DequantizeLinear", ["hq", "as", "az"], ["hd"]),
        helper.make_node("Conv", ["hd", "w2"], ["y"]),
    ]
    return TorchReplica(_model(nodes, {"x": x(6, 2, 5, 5)}, inits), ["w1q", "w2q"])


def test_quantize_gradient_is_the_composed_ops_gradient_to_the_bit():
    """QuantizeLinear is one autograd node; its gradient is what x / scale, round (straight
    through), + zero point and clamp give when differentiated step by step."""
    replica = _qdq_net()
    feed = torch.from_numpy(x(6, 2, 5, 5) * 4)  # wide enough that some activations saturate
    h = replica.run_env({"x": feed})["h"].detach().requires_grad_()
    s, z = torch.tensor(0.05), torch.tensor(128.0)
    t = h / s
    steps = torch.clamp(t + (torch.round(t) - t).detach() + z, 0, 255)
    upstream = torch.from_numpy(x(*h.shape))
    (expected,) = torch.autograd.grad(steps, h, upstream)
    q = replica._op_QuantizeLinear(None, [h, s, torch.tensor(128, dtype=torch.uint8)], {})
    (got,) = torch.autograd.grad(q, h, upstream)
    assert torch.equal(q, steps.detach()) and torch.equal(got, expected)
    assert (got == 0).any() and (got != 0).any()


def test_static_weights_reused_across_chunks_give_the_same_gradients():
    """Weights dequantised once (`static_values`) and differentiated chunk after chunk give
    the gradients of dequantising them in every chunk, to the bit."""
    replica = _qdq_net()
    feed = torch.from_numpy(x(6, 2, 5, 5))
    chunks = [slice(0, 4), slice(4, 6)]
    grads = []
    for given in (None, replica.static_values()):
        for p in replica.params.values():
            p.grad = None
        for rows in chunks:
            loss = replica.run_env({"x": feed[rows]}, given=given)["y"].square().mean()
            loss.backward(retain_graph=True)
        grads.append([p.grad.clone() for p in replica.params.values()])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))
    assert all(g.abs().sum() > 0 for g in grads[0])
