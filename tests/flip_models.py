"""Small real ONNX models for the flip tests and benchmark, built with onnx.helper.

The float models are fitted on the digits training split with closed-form least squares on
fixed random features, so they are genuinely accurate (about 90-97 %) without torch, and the
INT8 variants are made by ONNX Runtime's own static quantiser.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from qtool.data.datasets import load_dataset
from qtool.modelfile.metadata import set_metadata

OPSET = 17
ONNX_TEST_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
# Made by PyTorch's exporter and by onnx-caffe2, shipped with the onnx package.
THIRD_PARTY_CONV = ONNX_TEST_DATA / "pytorch-operator" / "test_operator_conv" / "model.onnx"
THIRD_PARTY_SQUEEZENET = ONNX_TEST_DATA / "light" / "light_squeezenet.onnx"


def _fit_head(features: np.ndarray, y: np.ndarray, classes: int = 10) -> tuple:
    onehot = np.eye(classes, dtype=np.float64)[y]
    a = np.hstack([features, np.ones((len(features), 1))])
    sol = np.linalg.solve(a.T @ a + 1e-2 * np.eye(a.shape[1]), a.T @ onehot)
    return sol[:-1].astype(np.float32), sol[-1].astype(np.float32)


def _finish(graph: onnx.GraphProto, path: Path, shape: list) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    set_metadata(
        model,
        {"qtool.dataset": "digits", "qtool.input_shape": shape, "qtool.model": "test-helper"},
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def digits_mlp(path: Path, hidden: int = 48, seed: int = 0) -> Path:
    """Gemm(64->hidden) + Relu + Gemm(hidden->10), float32 raw_data, ~95 % on digits."""
    train = load_dataset("digits", "train")
    x = train.x.reshape(len(train.x), -1)
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((64, hidden)) / 4).astype(np.float32)
    b1 = (rng.standard_normal(hidden) / 4).astype(np.float32)
    h = np.maximum(x @ w1 + b1, 0)
    w2, b2 = _fit_head(h, train.y)
    nodes = [
        helper.make_node("Gemm", ["input", "fc1.weight", "fc1.bias"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["hr"], name="relu"),
        helper.make_node("Gemm", ["hr", "fc2.weight", "fc2.bias"], ["logits"], name="fc2"),
    ]
    inits = [
        numpy_helper.from_array(w1, "fc1.weight"),
        numpy_helper.from_array(b1, "fc1.bias"),
        numpy_helper.from_array(w2, "fc2.weight"),
        numpy_helper.from_array(b2, "fc2.bias"),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    return _finish(graph, path, ["N", 64])


def digits_cnn(path: Path, channels: int = 8, seed: int = 0) -> Path:
    """Conv(1->C,3x3) + Relu + MaxPool(2) + Flatten + Gemm, ~97 % on digits."""
    train = load_dataset("digits", "train")
    rng = np.random.default_rng(seed)
    wc = (rng.standard_normal((channels, 1, 3, 3)) / 2).astype(np.float32)
    bc = (rng.standard_normal(channels) / 10).astype(np.float32)
    conv_only = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["c"], pads=[1] * 4),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Flatten", ["p"], ["f"]),
        ],
        "features",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("f", TensorProto.FLOAT, ["N", channels * 16])],
        [numpy_helper.from_array(wc, "conv.weight"), numpy_helper.from_array(bc, "conv.bias")],
    )
    import onnxruntime as ort

    feat_model = helper.make_model(conv_only, opset_imports=[helper.make_opsetid("", OPSET)])
    feat_model.ir_version = 8
    sess = ort.InferenceSession(feat_model.SerializeToString())
    feats = sess.run(None, {"input": train.x})[0]
    wf, bf = _fit_head(feats, train.y)
    graph = helper.make_graph(
        list(conv_only.node)
        + [helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], name="fc")],
        "digits_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        list(conv_only.initializer)
        + [numpy_helper.from_array(wf, "fc.weight"), numpy_helper.from_array(bf, "fc.bias")],
    )
    return _finish(graph, path, ["N", 1, 8, 8])


class _ResNetGraph:
    """Nodes and initializers of a small ResNet, added layer by layer (random weights)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.count = 0

    def conv_bn(self, x: str, cin: int, cout: int, k: int, stride: int, relu: bool) -> str:
        """Conv (no bias) + BatchNormalization (+ Relu), as an unfolded torch export has it."""
        self.count += 1
        n = f"conv{self.count}"
        w = self.rng.standard_normal((cout, cin, k, k)) * np.sqrt(2 / (cin * k * k))
        arrays = {
            "weight": w,
            "bn.scale": self.rng.uniform(0.5, 1.5, cout),
            "bn.bias": self.rng.normal(0, 0.1, cout),
            "bn.mean": self.rng.normal(0, 0.1, cout),
            "bn.var": self.rng.uniform(0.5, 1.5, cout),
        }
        self.inits += [
            numpy_helper.from_array(a.astype(np.float32), f"{n}.{key}") for key, a in arrays.items()
        ]
        conv = helper.make_node(
            "Conv", [x, f"{n}.weight"], [f"{n}.c"], name=n, pads=[k // 2] * 4, strides=[stride] * 2
        )
        self.nodes.append(conv)
        bn_in = [f"{n}.c", f"{n}.bn.scale", f"{n}.bn.bias", f"{n}.bn.mean", f"{n}.bn.var"]
        self.nodes.append(helper.make_node("BatchNormalization", bn_in, [f"{n}.b"], name=f"{n}.bn"))
        if not relu:
            return f"{n}.b"
        self.nodes.append(helper.make_node("Relu", [f"{n}.b"], [f"{n}.r"], name=f"{n}.relu"))
        return f"{n}.r"

    def block(self, x: str, cin: int, cout: int, stride: int) -> str:
        """A basic block: two 3x3 convs, identity or strided 1x1 shortcut, Add, Relu."""
        y = self.conv_bn(self.conv_bn(x, cin, cout, 3, stride, True), cout, cout, 3, 1, False)
        skip = x if stride == 1 and cin == cout else self.conv_bn(x, cin, cout, 1, stride, False)
        out = f"block{self.count}"
        self.nodes.append(helper.make_node("Add", [y, skip], [f"{out}.sum"], name=f"{out}.add"))
        self.nodes.append(helper.make_node("Relu", [f"{out}.sum"], [out], name=f"{out}.relu"))
        return out


def digits_resnet(path: Path, seed: int = 0) -> Path:
    """A ResNet on digits: conv stem, three basic blocks (one downsampling with a 1x1
    shortcut), BatchNorm unfolded, global pooling, a least-squares head (~90 % accurate)."""
    g = _ResNetGraph(seed)
    x = g.conv_bn("input", 1, 8, 3, 1, True)
    x = g.block(g.block(g.block(x, 8, 8, 1), 8, 16, 2), 16, 16, 1)
    g.nodes += [
        helper.make_node("GlobalAveragePool", [x], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"]),
    ]
    features_graph = helper.make_graph(
        g.nodes,
        "features",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 16])],
        g.inits,
    )
    import onnxruntime as ort

    model = helper.make_model(features_graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    train = load_dataset("digits", "train")
    features = ort.InferenceSession(model.SerializeToString()).run(None, {"input": train.x})[0]
    wf, bf = _fit_head(features, train.y)
    g.inits += [numpy_helper.from_array(wf, "fc.weight"), numpy_helper.from_array(bf, "fc.bias")]
    g.nodes.append(
        helper.make_node("Gemm", ["features", "fc.weight", "fc.bias"], ["logits"], name="fc")
    )
    graph = helper.make_graph(
        g.nodes,
        "digits_resnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        g.inits,
    )
    return _finish(graph, path, ["N", 1, 8, 8])


def quantized(src: Path, out: Path, fmt: str = "qdq", per_channel: bool = False) -> Path:
    """INT8 static quantisation by onnxruntime.quantization (QDQ or QOperator)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model = onnx.load(str(src))
    name = model.graph.input[0].name
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    calib = load_dataset("digits", "train").x[:64].reshape(64, *dims)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{name: calib[i : i + 16]} for i in range(0, 64, 16)])

        def get_next(self):
            return next(self.items, None)

    quantize_static(
        str(src),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
    )
    return out


def typed_fields(path: Path, seed: int = 0) -> Path:
    """A runnable model whose weights use float_data, double_data and varint int32_data."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((64, 10)).astype(np.float32)
    wd = rng.standard_normal((10, 10))
    wq = rng.integers(-128, 128, size=(10, 10)).astype(np.int8)
    inits = [
        helper.make_tensor("w_float", TensorProto.FLOAT, w.shape, w.ravel().tolist()),
        helper.make_tensor("w_double", TensorProto.DOUBLE, wd.shape, wd.ravel().tolist()),
        helper.make_tensor("w_int8", TensorProto.INT8, wq.shape, wq.ravel().tolist()),
        helper.make_tensor("q_scale", TensorProto.FLOAT, [], [0.01]),
        helper.make_tensor("q_zero", TensorProto.INT8, [], [0]),
    ]
    nodes = [
        helper.make_node("MatMul", ["input", "w_float"], ["a"], name="mm_float"),
        helper.make_node("Cast", ["a"], ["ad"], to=TensorProto.DOUBLE),
        helper.make_node("MatMul", ["ad", "w_double"], ["b"], name="mm_double"),
        helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
        helper.make_node("DequantizeLinear", ["w_int8", "q_scale", "q_zero"], ["wq"]),
        helper.make_node("MatMul", ["bf", "wq"], ["logits"], name="mm_int8"),
    ]
    graph = helper.make_graph(
        nodes,
        "typed",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    return _finish(graph, path, ["N", 64])


def with_subgraph(path: Path, seed: int = 0) -> Path:
    """An If whose branches hold their own MatMul weights (and one from the outer graph)."""
    rng = np.random.default_rng(seed)
    w_then = rng.standard_normal((64, 10)).astype(np.float32)
    w_outer = rng.standard_normal((64, 10)).astype(np.float32)
    out_then = helper.make_tensor_value_info("y_then", TensorProto.FLOAT, ["N", 10])
    out_else = helper.make_tensor_value_info("y_else", TensorProto.FLOAT, ["N", 10])
    then_g = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w_then"], ["y_then"], name="mm_then")],
        "then",
        [],
        [out_then],
        [numpy_helper.from_array(w_then, "w_then")],
    )
    else_g = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w_outer"], ["y_else"], name="mm_else")],
        "else",
        [],
        [out_else],
    )
    nodes = [
        helper.make_node("ReduceSum", ["input"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["cond"]),
        helper.make_node(
            "If", ["cond"], ["logits"], name="branch", then_branch=then_g, else_branch=else_g
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "subgraphs",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [
            numpy_helper.from_array(w_outer, "w_outer"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        ],
    )
    return _finish(graph, path, ["N", 64])


def external(src: Path, folder: Path) -> Path:
    """`src` re-saved into `folder` with its tensors in one external file (weights.bin)."""
    folder.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(src))
    out = folder / src.name
    onnx.save_model(
        model,
        str(out),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    return out


def large_mlp(path: Path, megabytes: int = 100, seed: int = 0) -> Path:
    """A float32 MLP of about `megabytes` MB (a few big MatMul weights), for the benchmark."""
    rng = np.random.default_rng(seed)
    width = 2048
    layers = max(1, round(megabytes * 2**20 / (4 * width * width)))
    inits, nodes = [], []
    prev = "input"
    for i in range(layers):
        w = rng.standard_normal((width, width), dtype=np.float32) * 0.02
        inits.append(numpy_helper.from_array(w, f"layer{i}.weight"))
        nodes.append(helper.make_node("MatMul", [prev, f"layer{i}.weight"], [f"h{i}"]))
        prev = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "large",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["N", width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def digits_linear_bytes(softmax: bool = False) -> bytes:
    """A least-squares linear digits classifier (Flatten + Gemm), serialized: small and fast
    for unit tests of the fault machinery (640 float32 weights, 10 biases, ~90 % accurate)."""
    from builders import digits_linear_weights, linear_image_model

    w, b = digits_linear_weights()
    return linear_image_model(w, b, softmax=softmax).SerializeToString()
