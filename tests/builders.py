"""Small real ONNX models built with onnx.helper and numpy weights fitted on real data.

Tests compute expected results from these numpy weights independently of qtool.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from qtool.data.datasets import load_dataset


def fit_linear(x: np.ndarray, y: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares one-vs-all linear classifier: (features, classes) weights and bias."""
    targets = np.eye(classes)[y]
    design = np.c_[x, np.ones(len(x))]
    solution = np.linalg.lstsq(design, targets, rcond=None)[0].astype(np.float32)
    return solution[:-1], solution[-1]


def digits_linear_weights() -> tuple[np.ndarray, np.ndarray]:
    train = load_dataset("digits:train")
    return fit_linear(train.x.reshape(len(train.x), -1), train.y, 10)


def linear_image_model(
    w: np.ndarray,
    b: np.ndarray,
    input_shape: tuple = ("N", 1, 8, 8),
    softmax: bool = False,
    opset: int = 17,
) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w", "b"], ["logits"]),
    ]
    out = "logits"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
        out = "probs"
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [input_shape[0], w.shape[1]])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def conv_model(seed: int = 0) -> onnx.ModelProto:
    """Conv(1->4, 3x3, pad 1) -> Relu -> Flatten -> Gemm(256->10), random weights."""
    rng = np.random.default_rng(seed)
    wc = rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32)
    bc = rng.normal(0, 0.1, 4).astype(np.float32)
    wf = rng.normal(0, 0.1, (256, 10)).astype(np.float32)
    bf = np.zeros(10, np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "wc", "bc"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("Flatten", ["r"], ["f"]),
            helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"]),
        ],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [
            numpy_helper.from_array(array, name)
            for array, name in ((wc, "wc"), (bc, "bc"), (wf, "wf"), (bf, "bf"))
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def one_conv(batch: str | int = "N") -> onnx.ModelProto:
    """x (2 x 5 x 5) -> Conv 3 filters 3x3, pad 1, with bias -> y (3 x 5 x 5): small enough to
    count its operations by hand (75 outputs x 18 multiply-accumulates)."""
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1] * 4)],
        "one_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 2, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3, 5, 5])],
        [
            numpy_helper.from_array(rng.normal(size=(3, 2, 3, 3)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.normal(size=3).astype(np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def qdq_quantize(src: Path, out: Path, x: np.ndarray, exclude: list[str] | None = None) -> Path:
    """ONNX Runtime's own static QDQ quantisation (uint8 activations, int8 weights) of the
    model at `src`, calibrated on `x` fed to its input "x" in one batch."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"x": x}])

        def get_next(self):
            return next(self.items, None)

    quantize_static(
        str(src), str(out), Reader(), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        nodes_to_exclude=list(exclude or []),
    )  # fmt: skip
    return out
