"""Small INT8 models shaped like the demo's, for the hostile-input tests and the fuzz suite.

The demo's CNN (digits images) and MLP (breast-cancer table) take minutes to train; these
are fitted in closed form (tests/flip_models.py), quantised to QDQ INT8 by ONNX Runtime's own
static quantiser in about a second, and carry qtool's metadata (class names, input shape,
normalisation for the table) as an exported model does, so every reader of that metadata is
exercised by the mutations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from flip_models import _fit_head, digits_cnn, quantized
from onnx import TensorProto, helper, numpy_helper

from qtool.data.datasets import load_dataset
from qtool.modelfile.metadata import set_metadata


def int8_cnn(folder: Path) -> Path:
    """Digits conv net, INT8 QDQ per channel, with qtool metadata."""
    fp32 = digits_cnn(folder / "cnn.onnx")
    out = quantized(fp32, folder / "cnn.int8.onnx", per_channel=True)
    return _with_metadata(out, "cnn", "digits", [str(i) for i in range(10)], [1, 1, 8, 8], None)


def int8_mlp(folder: Path, hidden: int = 16) -> Path:
    """Breast-cancer MLP (30 -> hidden -> 2) on normalised features, INT8 QDQ."""
    train = load_dataset("breast-cancer:train")
    mean, std = train.x.mean(axis=0), train.x.std(axis=0) + 1e-6
    x = (train.x - mean) / std
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 1 / np.sqrt(30), (30, hidden)).astype(np.float32)
    features = np.maximum(x @ w1, 0)
    w2, b2 = _fit_head(features, train.y, classes=2)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 30])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (w2, "w2"), (b2, "b2"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    fp32 = folder / "mlp.onnx"
    onnx.save(model, str(fp32))
    out = _quantize_table(fp32, folder / "mlp.int8.onnx", x[:64].astype(np.float32))
    norm = {"mean": mean.tolist(), "std": std.tolist()}
    return _with_metadata(out, "mlp", "breast-cancer", ["malignant", "benign"], [1, 30], norm)


def _quantize_table(src: Path, out: Path, calib: np.ndarray) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"x": calib[i : i + 16]} for i in range(0, len(calib), 16)])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ)
    return out


def _with_metadata(path: Path, name, dataset, classes, shape, norm) -> Path:
    model = onnx.load(str(path))
    values = {
        "qtool.model": name,
        "qtool.dataset": dataset,
        "qtool.class_names": classes,
        "qtool.input_shape": shape,
    }
    if norm is not None:
        values["qtool.normalization"] = norm
    set_metadata(model, values)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
