"""Bit-flip speed, measured in one run and printed as ratios.

1. Injection into a >= 100 MB float32 model: qtool's path (read bytes, locate initializers in
   the wire format, XOR, write, with the manifest's two sha256 passes) vs the naive path
   (onnx.load -> numpy edit -> onnx.save), same bits; and the same two in memory (bytes
   already loaded, no disk, no hashing), which is what a campaign trial does. Goal: >= 50x.
2. Campaign throughput (trials/s) on an INT8 digits CNN with the full digits test split
   (360 samples) and 2 worker processes. Goal: >= 20 trials/s.
3. Session-creation + scoring time per trial for each graph optimisation level (why the
   campaign default is what it is).

Usage: python benchmarks/flip.py [--model INT8.onnx] [--mb 100] [--trials 40] [--workers 2]
Without --model, the zoo CNN is trained (or its cached demo checkpoint reused), exported and
quantised to INT8 by the demo's own stages.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from flip_models import large_mlp  # noqa: E402

from qtool.data.datasets import load_dataset  # noqa: E402
from qtool.faults.campaign import CampaignPlan, run_campaign  # noqa: E402
from qtool.faults.campaign.trials import prepare_model, run_trial  # noqa: E402
from qtool.faults.storage import FlipSettings, Selection, inject  # noqa: E402
from qtool.faults.storage.space import bit_space  # noqa: E402
from qtool.faults.storage.targets import select_targets  # noqa: E402
from qtool.modelfile.buffers import write_model_files  # noqa: E402


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def naive_flip(src: Path, out: Path, flips: list[dict]) -> None:
    """What one would write without a locator: parse, edit arrays, re-serialise."""
    model = onnx.load(str(src))
    by_name = {t.name: t for t in model.graph.initializer}
    for e in flips:
        t = by_name[e["tensor"]]
        arr = numpy_helper.to_array(t).copy()
        words = arr.reshape(-1).view(np.uint32)
        words[e["flat_index"]] ^= np.uint32(1 << e["bit"])
        t.CopyFrom(numpy_helper.from_array(arr, t.name))
    onnx.save(model, str(out))


def bench_injection(folder: Path, megabytes: int, bits: int) -> dict:
    src = large_mlp(folder / "large.onnx", megabytes)
    size = src.stat().st_size
    settings = FlipSettings(bits=bits, seed=0)
    flips = inject(src, settings).manifest["flips"]

    def ours() -> None:
        injection = inject(src, settings)
        write_model_files(injection.files, folder / "ours.onnx", force=True)

    data = bytearray(src.read_bytes())

    def ours_in_memory() -> None:  # locate, select by role, draw, apply: what a campaign does
        buffers = {None: data}
        targets = select_targets(data, Selection())
        space = bit_space(targets, buffers, settings.fault_model)
        hits = space.fault.draw(space, bits, np.random.default_rng(0), buffers)
        space.fault.apply(buffers, [targets[h.target].site(h.word, h.bit) for h in hits])

    def naive_in_memory() -> None:  # parse, numpy edit, re-serialise, no disk
        model = onnx.ModelProto.FromString(bytes(data))
        by_name = {t.name: t for t in model.graph.initializer}
        for e in flips:
            t = by_name[e["tensor"]]
            arr = numpy_helper.to_array(t).copy()
            arr.reshape(-1).view(np.uint32)[e["flat_index"]] ^= np.uint32(1 << e["bit"])
            t.CopyFrom(numpy_helper.from_array(arr, t.name))
        model.SerializeToString()

    t_mem = _median_time(ours_in_memory, 21)
    t_naive_mem = _median_time(naive_in_memory, 3)
    t_ours = _median_time(ours, 5)
    t_naive = _median_time(lambda: naive_flip(src, folder / "naive.onnx", flips), 3)
    same = (folder / "ours.onnx").read_bytes() == (folder / "naive.onnx").read_bytes()
    return {
        "bytes": size,
        "ours": t_ours,
        "naive": t_naive,
        "same_output": same,
        "ours_mem": t_mem,
        "naive_mem": t_naive_mem,
    }


def default_int8_model(folder: Path) -> Path:
    """The zoo CNN on digits, trained (or taken from the demo's checkpoint cache), exported
    and quantised by the demo's own stages: the INT8 digits CNN the issue asks about."""
    from qtool.demo.pipeline import STAGES, run_demo

    wanted = {"train", "export", "quantize"}
    ctx = run_demo(
        folder / "zoo",
        force=True,
        models=[("cnn", "cnn", "digits")],
        stages=[(name, fn) for name, fn in STAGES if name in wanted],
    )
    return ctx.records["cnn"].paths["int8"]


def bench_opt_levels(model: Path, repeat: int = 30) -> dict[str, float]:
    data = load_dataset("digits")
    out = {}
    for level in ("disable", "basic", "extended", "all"):
        prepared = prepare_model(model, data, Selection(), opt_level=level)
        out[level] = _median_time(lambda p=prepared: run_trial(p, 0, data.y, 5, 0, 0), repeat)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="INT8 digits model (default: built here)")
    parser.add_argument("--mb", type=int, default=100, help="size of the injection model")
    parser.add_argument("--bits", type=int, default=20, help="bits per injection")
    parser.add_argument("--trials", type=int, default=40, help="campaign trials per budget")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qtool-flip-bench-") as tmp:
        folder = Path(tmp)
        inj = bench_injection(folder, args.mb, args.bits)
        print(
            f"injection of {args.bits} bits into a {inj['bytes'] / 1e6:.1f} MB model "
            f"(read, locate, flip, write): qtool {1000 * inj['ours']:.1f} ms, "
            f"onnx.load->numpy->onnx.save {1000 * inj['naive']:.1f} ms: "
            f"{inj['naive'] / inj['ours']:.1f}x faster (goal >= 50x); "
            f"identical output files: {inj['same_output']}"
        )
        print(
            f"in memory (model bytes already loaded; what each campaign trial does): qtool "
            f"{1000 * inj['ours_mem']:.2f} ms, ModelProto parse->numpy->serialise "
            f"{1000 * inj['naive_mem']:.1f} ms: {inj['naive_mem'] / inj['ours_mem']:.0f}x faster"
        )
        (folder / "large.onnx").unlink()
        model = args.model or default_int8_model(folder)
        levels = bench_opt_levels(model)
        print(
            "per trial (5 flips, session from bytes, 360 samples, 1 thread): "
            + ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in levels.items())
        )
        budgets = [1, 2, 5, 10, 20]
        for workers in sorted({1, args.workers}):
            start = time.perf_counter()
            plan = CampaignPlan(budgets=budgets, trials=args.trials, workers=workers)
            result = run_campaign([model], "digits", plan, show_progress=False)
            wall = time.perf_counter() - start
            n = len(result.trial_results)
            print(
                f"campaign on {model.name} ({n} trials, digits test {result.samples} samples, "
                f"{workers} worker(s)): {result.trials_per_s:.1f} trials/s over the trials, "
                f"{n / wall:.1f} trials/s including model/data preparation and worker start "
                f"(goal >= 20); clean accuracy {100 * result.models[0].clean_accuracy:.1f} %"
            )
            for s in result.stats:
                print(
                    f"  {s.bits:>3} bits: mean {100 * s.mean:.1f} %, min {100 * s.min:.1f} %, "
                    f"SDC {100 * s.sdc_rate:.1f} %"
                )


if __name__ == "__main__":
    main()
