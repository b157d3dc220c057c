"""FP32 vs INT8 with `qtool bench`'s API: an MLP on digits, quantised with ORT quantize_static.

The model is built with onnx.helper (784 -> 1024 -> 1024 -> 10 Gemm + Relu, random weights:
latency does not depend on the weights' values), calibrated on 64 real digits images resized to
28x28 by qtool's data path, and quantised to QDQ INT8 (per-channel weights). Both files are
then measured interleaved by qtool.bench.run_bench and the table is printed.

Run: python benchmarks/bench_fp32_int8.py [--seconds 3] [--batch 1,32] [--json out.json]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from qtool.bench import render_bench, run_bench
from qtool.data import fit_to_input, load_dataset
from qtool.onnxfile import write_json
from qtool.report import show


def mlp(sizes: list[int], seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [helper.make_node("Flatten", ["x"], ["flat"])], [], "flat"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = rng.normal(0, 1 / np.sqrt(a), (a, b)).astype(np.float32)
        inits += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}"),
        ]
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"g{i}"]))
        prev = f"g{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["N", sizes[-1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def quantize(fp32: Path, int8: Path, calib: np.ndarray) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"x": calib[i : i + 16]} for i in range(0, len(calib), 16)])

        def get_next(self):
            return next(self.items, None)

    quantize_static(
        str(fp32),
        str(int8),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch", default="1,32")
    parser.add_argument("--threads", default="1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "mlp.onnx", Path(tmp) / "mlp.int8.onnx"
        onnx.save(mlp([784, 1024, 1024, 10], args.seed), str(fp32))
        images = load_dataset("digits:train").take(64, seed=args.seed).x
        quantize(fp32, int8, fit_to_input(images, ["N", 1, 28, 28]))
        result = run_bench(
            [fp32, int8],
            batches=args.batch,
            threads=args.threads,
            seconds=args.seconds,
            data="digits",
            seed=args.seed,
        )
    show(*render_bench(result))
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
