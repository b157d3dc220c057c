"""What `qtool quantize` costs at ResNet-50 scale against ONNX Runtime's own `quantize_static`.

Builds a ResNet-50 graph with onnx.helper (random He-initialised weights, BatchNorm folded
into the convolutions as exported models have it, 224 px RGB, ~25.6 M parameters) and an npz
of random calibration images, then runs in separate subprocesses, one after the other, so each
has its own peak RSS (`os.wait4`):

  ort    onnxruntime.quantization.quantize_static on the FP32 file: QDQ, per-channel int8
         weights, uint8 activations, minmax, the same calibration samples in batches of 32
  qtool  `qtool quantize` with its defaults on the same file and samples (pre-processing,
         calibration, Q/DQ placement, per-tensor error analysis, metadata)

and prints wall time, CPU time and peak RSS of each, the ratios qtool/ort, and the CPU. The
targets (issue 17): time ratio <= 1.5 and peak memory ratio <= 1.0. The 2 cores here may be
shared with other work, so figures are noisy; the ratios come from one run.

    python benchmarks/quantize_scale.py [--workdir DIR] [--samples 256] [--repeat 1] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from qtool.machine import cpu_line

STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # width, blocks, first stride
EXPANSION = 4
SIZE = 224
CLASSES = 1000
CALIB_BATCH = 32


class _Builder:
    """Nodes and initializers of one graph, with He-initialised weights from one seed."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, relu: bool = True) -> str:
        w, b, y = self.name("w"), self.name("b"), self.name("conv")
        std = np.sqrt(2.0 / (cin * k * k))
        weight = self.rng.normal(0, std, (cout, cin, k, k)).astype(np.float32)
        self.inits += [
            numpy_helper.from_array(weight, w),
            numpy_helper.from_array(self.rng.normal(0, 0.01, cout).astype(np.float32), b),
        ]
        pad = k // 2
        self.nodes.append(
            helper.make_node(
                "Conv", [x, w, b], [y], kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4
            )
        )
        return self.relu(y) if relu else y

    def relu(self, x: str) -> str:
        y = self.name("relu")
        self.nodes.append(helper.make_node("Relu", [x], [y]))
        return y

    def bottleneck(self, x: str, cin: int, width: int, stride: int) -> str:
        cout = width * EXPANSION
        h = self.conv(x, cin, width, 1)
        h = self.conv(h, width, width, 3, stride)
        h = self.conv(h, width, cout, 1, relu=False)
        short = x if stride == 1 and cin == cout else self.conv(x, cin, cout, 1, stride, False)
        y = self.name("add")
        self.nodes.append(helper.make_node("Add", [h, short], [y]))
        return self.relu(y)


def resnet50(seed: int = 0) -> onnx.ModelProto:
    """ResNet-50 (He et al. 2016) as inference graphs have it: BN folded into conv biases."""
    b = _Builder(seed)
    x = b.conv("input", 3, 64, 7, 2)
    pooled = b.name("pool")
    b.nodes.append(
        helper.make_node(
            "MaxPool", [x], [pooled], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4
        )
    )
    x, cin = pooled, 64
    for width, blocks, stride in STAGES:
        for i in range(blocks):
            x = b.bottleneck(x, cin, width, stride if i == 0 else 1)
            cin = width * EXPANSION
    gap, flat = b.name("gap"), b.name("flat")
    b.nodes += [
        helper.make_node("GlobalAveragePool", [x], [gap]),
        helper.make_node("Flatten", [gap], [flat]),
    ]
    fc_w = b.rng.normal(0, np.sqrt(1.0 / cin), (CLASSES, cin)).astype(np.float32)
    b.inits += [
        numpy_helper.from_array(fc_w, "fc_w"),
        numpy_helper.from_array(np.zeros(CLASSES, np.float32), "fc_b"),
    ]
    b.nodes.append(helper.make_node("Gemm", [flat, "fc_w", "fc_b"], ["logits"], transB=1))
    graph = helper.make_graph(
        b.nodes,
        "resnet50",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def calibration_npz(path: Path, samples: int, seed: int) -> None:
    """Random RGB images in the MedMNIST layout (train split only, no labels)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (samples, SIZE, SIZE, 3), dtype=np.uint8)
    np.savez(path, train_images=images)


ORT_CHILD = """
import sys, numpy as np
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
src, npz, out, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
x = np.load(npz)["train_images"].astype(np.float32).transpose(0, 3, 1, 2) / 255.0
parts = [x[i:i + batch] for i in range(0, len(x), batch)]
class Reader(CalibrationDataReader):
    def __init__(self): self.it = iter(parts)
    def get_next(self):
        part = next(self.it, None)
        return None if part is None else {"input": part}
quantize_static(src, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                reduce_range=False, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
"""


def run_child(cmd: list[str]) -> dict:
    """Wall time, CPU time (user + sys) and peak RSS of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{' '.join(cmd[:4])} ... failed (exit {code}):\n{err[-2000:]}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux: kilobytes
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--samples", type=int, default=256, help="calibration samples")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, alternating")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qtool-qscale-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        src, npz = work / "resnet50.onnx", work / "calib.npz"
        if not src.exists():
            onnx.save(resnet50(), str(src))
        if not npz.exists():
            calibration_npz(npz, args.samples, 0)
        params = sum(int(np.prod(t.dims)) for t in onnx.load(str(src)).graph.initializer)
        qtool = [
            sys.executable, "-m", "qtool", "--quiet", "quantize", str(src),
            "--calib", f"npz:{npz}", "--samples", str(args.samples),
            "--out", str(work / "qtool.onnx"), "--force", "--json", str(work / "qtool.json"),
        ]  # fmt: skip
        runs: dict[str, list[dict]] = {"qtool": [], "ort": [], "ort@32": []}
        batch = None
        for _ in range(args.repeat):
            print("running qtool ...", file=sys.stderr)
            runs["qtool"].append(run_child(qtool))
            report = json.loads((work / "qtool.json").read_text())
            batch = report["settings"]["calibration_batch"]
            for name, size in (("ort", batch), ("ort@32", CALIB_BATCH)):
                print(f"running {name} (batch {size}) ...", file=sys.stderr)
                out = work / f"{name.replace('@', '_')}.onnx"
                cmd = [sys.executable, "-c", ORT_CHILD, str(src), str(npz), str(out), str(size)]
                runs[name].append(run_child(cmd))
        report = summarise(runs, params, args.samples, batch)
        report["output_bytes"] = {
            k: (work / f"{k.replace('@', '_')}.onnx").stat().st_size for k in runs
        }
        print_report(report)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))


def summarise(runs: dict[str, list[dict]], params: int, samples: int, batch: int) -> dict:
    best = {k: {m: min(r[m] for r in v) for m in v[0]} for k, v in runs.items()}
    metrics = ("wall_s", "cpu_s", "peak_rss_mb")
    return {
        "model": f"ResNet-50 graph, {params / 1e6:.1f} M parameters, {SIZE} px, random weights",
        "calibration_samples": samples,
        "calibration_batch": batch,
        "runs": runs,
        "best": best,
        "ratios_qtool_over_ort": {m: best["qtool"][m] / best["ort"][m] for m in metrics},
        "ratios_qtool_over_ort_batch32": {m: best["qtool"][m] / best["ort@32"][m] for m in metrics},
        "targets": {"wall_s": 1.5, "peak_rss_mb": 1.0},
        "cpu": cpu_line(),
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def print_report(r: dict) -> None:
    print(
        f"{r['model']}; {r['calibration_samples']} calibration samples, "
        f"{r['calibration_batch']} at a time (ort@32: 32)"
    )
    print(f"CPU: {r['cpu']} ({r['logical_cpus']} logical CPUs; shared, figures are noisy)")
    print(f"{'':8}{'wall s':>10}{'CPU s':>10}{'peak RSS MB':>14}")
    for name, b in r["best"].items():
        print(f"{name:8}{b['wall_s']:>10.1f}{b['cpu_s']:>10.1f}{b['peak_rss_mb']:>14.0f}")
    ratio, r32 = r["ratios_qtool_over_ort"], r["ratios_qtool_over_ort_batch32"]
    print(
        f"qtool/ort (same batch): time {ratio['wall_s']:.2f} (target <= 1.5), CPU "
        f"{ratio['cpu_s']:.2f}, peak memory {ratio['peak_rss_mb']:.2f} (target <= 1.0)"
    )
    print(
        f"qtool/ort@32: time {r32['wall_s']:.2f}, CPU {r32['cpu_s']:.2f}, "
        f"peak memory {r32['peak_rss_mb']:.2f}"
    )


if __name__ == "__main__":
    main()
