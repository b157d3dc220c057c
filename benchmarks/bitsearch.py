"""Targeted (progressive bit search) vs random bit flips: CNN vs MLP, FP32 vs INT8.

Trains the zoo `cnn` (digits) and `mlp` (breast-cancer), exports them to ONNX, quantises them
to INT8 QDQ with `qtool quantize`, then for each model runs the Bit-Flip Attack with several
seeded attack batches and the random-flip campaign at the same budgets, and prints one table:
accuracy at each budget (mean +- std over seeds, ONNX Runtime, test split) and the number of
chosen flips needed to reach the accuracy target.

    python benchmarks/bitsearch.py [--seeds 5] [--budgets 1,2,5,10,20] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from qtool.data import load_dataset


def export_zoo(name: str, data: str, out: Path, seed: int = 0, epochs: int | None = None) -> Path:
    """Train a zoo model and export it to ONNX (qtool's exporter when present, else torch)."""
    import onnx
    import torch

    from qtool.models import get_spec
    from qtool.models.train import train
    from qtool.onnxfile import set_metadata

    spec = get_spec(name)
    tr, va = load_dataset(data, "train"), load_dataset(data, "val")
    result = train(
        spec,
        tr.x,
        tr.y,
        va.x,
        va.y,
        class_names=tr.class_names,
        dataset=data,
        kind=tr.kind,
        seed=seed,
        epochs=epochs,
    )
    cfg = result.config
    module = result.module.eval()
    example = torch.zeros([1] + list(cfg["input_shape"])[1:])
    torch.onnx.export(
        module,
        (example,),
        str(out),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        opset_version=17,
        dynamo=False,
    )
    model = onnx.load(str(out))
    set_metadata(
        model,
        {
            "qtool.model": name,
            "qtool.dataset": data,
            "qtool.input_shape": cfg["input_shape"],
            "qtool.normalization": cfg["normalization"],
            "qtool.class_names": cfg["class_names"],
            "qtool.seed": seed,
        },
    )
    onnx.save(model, str(out))
    return out


def build_models(workdir: Path, epochs: int | None = None) -> dict[str, dict[str, Path]]:
    """{"cnn": {"fp32": path, "int8": path}, "mlp": {...}}, reusing files already built."""
    from qtool.quantize import quantize_model

    out: dict[str, dict[str, Path]] = {}
    for name, data in (("cnn", "digits"), ("mlp", "breast-cancer")):
        fp32, int8 = workdir / f"{name}.onnx", workdir / f"{name}.int8.onnx"
        if not fp32.exists():
            export_zoo(name, data, fp32, epochs=epochs)
        if not int8.exists():
            quantize_model(fp32, int8, f"{data}:train")
        out[name] = {"fp32": fp32, "int8": int8}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("bitsearch-bench"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budgets", default="1,2,5,10,20")
    parser.add_argument("--attack-samples", type=int, default=128)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--models", default="cnn,mlp", help="zoo models to compare")
    args = parser.parse_args(argv)
    from qtool.bitsearch import compare_targeted_random, comparison_table

    args.workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    models = build_models(args.workdir)
    budgets = [int(b) for b in args.budgets.split(",")]
    rows = []
    for name, data in (("cnn", "digits"), ("mlp", "breast-cancer")):
        if name not in args.models.split(","):
            continue
        rows += compare_targeted_random(
            [models[name]["fp32"], models[name]["int8"]],
            data,
            budgets,
            seeds=args.seeds,
            attack_samples=args.attack_samples,
        )
    from qtool.report import show

    show(comparison_table(rows))
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.json:
        from qtool.onnxfile import write_json

        write_json(args.json, {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
