"""FP32 vs INT8 with `qtool bench`'s API: an MLP on digits, quantised with ORT quantize_static.

The model is built with onnx.helper (784 -> 1024 -> 1024 -> 10 Gemm + Relu, random weights:
latency does not depend on the weights' values), calibrated on 64 real digits images resized to
28x28 by qtool's data path, and quantised to QDQ INT8 (per-channel weights). Both files are
then measured interleaved by qtool.benchmarking.run_bench and the table is printed.

Run: python benchmarks/bench_fp32_int8.py [--seconds 3] [--batch 1,32] [--json out.json]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
from bench_overhead import mlp  # noqa: E402  (same folder: the model both scripts time)

from qtool.benchmarking import BenchPlan, run_bench
from qtool.commands.bench_views import render_bench
from qtool.data.datasets import fit_to_input, load_dataset
from qtool.outputs import write_json
from qtool.report import show


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
        onnx.save(mlp([784, 1024, 1024, 10], args.seed, image=(1, 28, 28)), str(fp32))
        images = load_dataset("digits:train").take(64, seed=args.seed).x
        quantize(fp32, int8, fit_to_input(images, ["N", 1, 28, 28]))
        plan = BenchPlan(
            batches=[int(b) for b in args.batch.split(",")],
            threads=[int(t) for t in args.threads.split(",")],
            seconds=args.seconds,
            seed=args.seed,
        )
        result = run_bench([fp32, int8], plan, data="digits")
    show(*render_bench(result))
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
