"""Targeted (progressive bit search) vs random bit flips: CNN vs MLP, FP32 vs INT8.

Trains the zoo `cnn` (digits) and `mlp` (breast-cancer), exports and quantises them exactly
as `qtool demo` does (cached checkpoints, QDQ INT8 within a 1 pp budget). For each model it
runs the Bit-Flip Attack with several seeded attack batches and the random-flip campaign at
the same budgets, and prints one table: accuracy at each budget (mean +- std over seeds,
ONNX Runtime, test split) and the number of chosen flips needed to reach the target.

    python benchmarks/bitsearch.py [--seeds 5] [--budgets 1,2,5,10,20] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def build_models(workdir: Path, epochs: int | None = None) -> dict[str, dict[str, Path]]:
    """{"cnn": {"fp32": path, "int8": path}, "mlp": {...}}: the demo's own train, export and
    quantise stages (checkpoints cached as the demo caches them), so the numbers describe the
    files `qtool demo` makes."""
    from qtool.demo.pipeline import STAGES, run_demo

    wanted = {"train", "export", "quantize"}
    ctx = run_demo(
        workdir,
        force=True,
        models=[("cnn", "cnn", "digits"), ("mlp", "mlp", "breast-cancer")],
        stages=[(name, fn) for name, fn in STAGES if name in wanted],
    )
    return {
        name: {"fp32": r.paths["fp32"], "int8": r.paths["int8"]} for name, r in ctx.records.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("bitsearch-bench"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budgets", default="1,2,5,10,20")
    parser.add_argument("--attack-samples", type=int, default=128)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--models", default="cnn,mlp", help="zoo models to compare")
    args = parser.parse_args(argv)
    from qtool.commands.flip_views import comparison_table
    from qtool.faults.search import compare_targeted_random

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
        from qtool.outputs import write_json

        write_json(args.json, {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
