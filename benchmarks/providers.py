"""Execution providers compared fairly: FP32 and INT8 of the zoo CNN and of a ResNet-50-sized
network on every usable CPU provider, pinned to 1 and 2 threads, in one interleaved run each.

Models: the zoo CNN trained briefly on digits (qtool train/export, 2 epochs) and quantised by
`qtool quantize` on digits; a ResNet-50 layout at 224 px built with onnx.helper (bottleneck
blocks 3-4-6-3, BatchNorm folded into the convolutions, random He weights: latency does not
depend on the values), quantised with ORT quantize_static on 8 random calibration images.
Each pair of FP32/INT8 files is measured by qtool.benchmarking.run_bench on every usable
provider (`cpu`, and `openvino` where its plugin offers a CPU device) at --threads: the
ratio of every (model, provider) against the same model on the CPU provider comes from the
same interleaved rounds, and the threads each really used are measured per OS thread.
A provider that is not usable here is printed as "unavailable: <reason>".

Run: python benchmarks/providers.py [--seconds 2] [--threads 1,2] [--json out.json]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from qtool.benchmarking import BenchPlan, run_bench
from qtool.machine import cpu_line
from qtool.outputs import write_json
from qtool.report import show, table
from qtool.runtimes.providers import list_providers

CANDIDATES = ("cpu", "openvino")
RESNET50_STAGES = ((64, 256, 3, 1), (128, 512, 4, 2), (256, 1024, 6, 2), (512, 2048, 3, 2))


class _Builder:
    """Conv(+Relu) nodes with He-initialised weights and small biases (BatchNorm folded)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.n = 0

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int, relu: bool = True) -> str:
        self.n += 1
        w = self.rng.standard_normal((cout, cin, k, k)).astype(np.float32)
        w *= np.sqrt(2.0 / (cin * k * k)).astype(np.float32)
        b = (0.01 * self.rng.standard_normal(cout)).astype(np.float32)
        name = f"conv{self.n}"
        self.inits += [
            numpy_helper.from_array(w, f"{name}.w"),
            numpy_helper.from_array(b, f"{name}.b"),
        ]
        pad = k // 2
        self.nodes.append(
            helper.make_node(
                "Conv", [x, f"{name}.w", f"{name}.b"], [name], name=name,
                kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4,
            )
        )  # fmt: skip
        if not relu:
            return name
        self.nodes.append(helper.make_node("Relu", [name], [f"{name}.r"], name=f"{name}.relu"))
        return f"{name}.r"

    def add_relu(self, a: str, b: str) -> str:
        self.n += 1
        out = f"add{self.n}"
        self.nodes.append(helper.make_node("Add", [a, b], [out], name=out))
        self.nodes.append(helper.make_node("Relu", [out], [f"{out}.r"], name=f"{out}.relu"))
        return f"{out}.r"


def resnet50(seed: int = 0, classes: int = 1000) -> onnx.ModelProto:
    """ResNet-50's layout (25.5 M parameters, ~4.1 GFLOPs at 224 px), random weights."""
    g = _Builder(seed)
    x = g.conv("x", 3, 64, 7, 2)
    g.nodes.append(
        helper.make_node(
            "MaxPool", [x], ["pool0"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4
        )
    )
    x, cin = "pool0", 64
    for width, cout, blocks, stride in RESNET50_STAGES:
        for i in range(blocks):
            s = stride if i == 0 else 1
            y = g.conv(x, cin, width, 1, 1)
            y = g.conv(y, width, width, 3, s)
            y = g.conv(y, width, cout, 1, 1, relu=False)
            skip = g.conv(x, cin, cout, 1, s, relu=False) if i == 0 else x
            x, cin = g.add_relu(y, skip), cout
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
    g.nodes.append(helper.make_node("Flatten", ["gap"], ["flat"]))
    w = (g.rng.standard_normal((2048, classes)) * np.sqrt(1 / 2048)).astype(np.float32)
    g.inits += [
        numpy_helper.from_array(w, "fc.w"),
        numpy_helper.from_array(np.zeros(classes, np.float32), "fc.b"),
    ]
    g.nodes.append(helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"]))
    graph = helper.make_graph(
        g.nodes,
        "resnet50_random",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def quantize_random(fp32: Path, int8: Path, shape: tuple, seed: int, samples: int = 8) -> None:
    """Static QDQ INT8 (per-channel weights) calibrated on seeded random images."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    rng = np.random.default_rng(seed)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = samples

        def get_next(self):
            if self.left == 0:
                return None
            self.left -= 1
            return {"x": rng.random((1, *shape), dtype=np.float32)}

    quantize_static(
        str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
    )  # fmt: skip


def zoo_cnn(folder: Path, seed: int) -> tuple[Path, Path]:
    """The zoo CNN, briefly trained on digits, exported and quantised by qtool."""
    from qtool.from_torch.export import export_model
    from qtool.from_torch.train import train_zoo_model
    from qtool.quantization.quantize import QuantizeOptions, quantize_model

    ckpt, fp32, int8 = folder / "cnn.pt", folder / "cnn.onnx", folder / "cnn.int8.onnx"
    train_zoo_model("cnn", None, ckpt, epochs=2, seed=seed, show_progress=False)
    export_model("cnn", fp32, weights=ckpt)
    quantize_model(fp32, int8, "digits", QuantizeOptions(seed=seed))
    return fp32, int8


def provider_rows(result, usable: list[str]) -> list[list[str]]:
    rows = []
    first_model = result.models[0]
    for group in result.groups:
        for c in group.configs:
            ratio = c.provider_ratio
            vs_cpu = "baseline" if c.provider == "cpu" else "n/a"
            if ratio is not None:
                lo, hi = ratio.latency_p50_ratio_ci95
                vs_cpu = f"{ratio.latency_p50_ratio:.3f} [{lo:.3f}, {hi:.3f}]"
            fp32 = next(
                f for f in group.configs if f.provider == c.provider and f.model == first_model
            )
            vs_fp32 = "" if c is fp32 else f"{c.latency.p50_ms / fp32.latency.p50_ms:.3f}"
            used = c.threads_used or {}
            rows.append(
                [
                    c.name.split(" · ")[0], c.provider, c.precision, group.threads, group.batch,
                    f"{c.latency.p50_ms:.3f}", vs_fp32, vs_cpu,
                    f"{used.get('busy_threads')} ({used.get('busy_besides_caller')})",
                    f"{used.get('cpu_per_wall')}",
                    "yes" if used.get("pinned") else "NO",
                ]
            )  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--batch", default="1")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "auto"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    status = {r.spec.name: r for r in list_providers() if r.spec.name in CANDIDATES}
    usable = [n for n in CANDIDATES if status[n].usable]
    plan = BenchPlan(
        batches=[int(b) for b in args.batch.split(",")],
        threads=[int(t) for t in args.threads.split(",")],
        providers=usable,
        precision=args.precision,
        seconds=args.seconds,
        energy="off",
        seed=args.seed,
    )
    reports, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cnn = zoo_cnn(folder, args.seed)
        r50 = folder / "resnet50.onnx", folder / "resnet50.int8.onnx"
        onnx.save(resnet50(args.seed), str(r50[0]))
        quantize_random(r50[0], r50[1], (3, 224, 224), args.seed)
        for name, pair in (("cnn", cnn), ("resnet50", r50)):
            data = "digits" if name == "cnn" else None
            result = run_bench(list(pair), plan, data=data)
            reports[name] = result
            rows += provider_rows(result, usable)
    for n in CANDIDATES:
        if n not in usable:
            rows.append(["(all)", n, "", "", "", "unavailable", "", "(reason below)", "", "", ""])
    columns = ["model", "provider", "precision", "threads", "batch", "p50 ms", "INT8/FP32",
               "vs cpu [95 % CI]", "busy threads (besides caller)", "CPU/wall",
               "pinned"]  # fmt: skip
    show(table(f"providers on {cpu_line()}", columns, rows))
    for n in CANDIDATES:
        if n not in usable:
            show(f"{n}: unavailable: {status[n].reason}")
    for name, result in reports.items():
        for a in result.accuracy:
            if a.provider != "cpu":
                show(f"{name} {a.model} on {a.provider}: accuracy {100 * a.accuracy:.2f} % "
                     f"(cpu {100 * a.cpu_accuracy:.2f} %), top-1 agreement "
                     f"{100 * a.top1_agreement_with_cpu:.2f} %, max |score diff| "
                     f"{a.max_abs_score_diff_vs_cpu:.2g}")  # fmt: skip
    show("ratios: median latency of each model on each provider / the same model on the CPU "
         "provider, from the same interleaved rounds (bootstrap 95 % CI); 2 shared cores here, "
         "so absolute figures are noisy and the ratios are the result.")  # fmt: skip
    if args.json:
        write_json(args.json, reports)


if __name__ == "__main__":
    main()
