"""What static INT8 buys on the zoo models: size, accuracy and latency ratios, one run.

For each of cnn, sasa and mlp (trained on the zoo's default data set, digits for cnn/sasa and
breast-cancer for mlp, by `qtool train` and exported by `qtool export`, unless given with
--fp32 NAME=PATH): quantise with `qtool.quantization.quantize.quantize_model` (defaults:
QDQ, per-channel int8 weights, uint8 activations, minmax on 256 train samples), then time the
FP32 and INT8 sessions at batch 1 and 32 with 1 intra-op thread. All 12 sessions are timed
round by round in one interleaved run (seeded random order per round), so machine drift hits
them alike; the headline numbers are median-latency ratios INT8/FP32 with bootstrap 95 %
intervals. Targets (issue #4): size ratio <= 0.27, accuracy drop <= 0.5 pp, INT8 faster than
FP32 on cnn at batch 32. The script reports what it measures; it does not assert.

    python benchmarks/quantize.py [--workdir DIR] [--seconds 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from qtool.data.datasets import load_dataset
from qtool.evaluation.evaluate import model_io
from qtool.modelfile.load import load_model
from qtool.modelfile.metadata import qtool_metadata
from qtool.outputs import write_json
from qtool.quantization.quantize import BudgetNotMet, QuantizeOptions, quantize_model
from qtool.report import fmt_bytes, show, table
from qtool.runtimes import make_session
from qtool.runtimes.timing import (
    Contender,
    bootstrap_median_ratio,
    latency_stats,
    measure_interleaved,
)

MODELS = ("cnn", "sasa", "mlp")
BATCHES = (1, 32)
TARGET_SIZE, TARGET_DROP_PP = 0.27, 0.5


def default_data(name: str) -> str:
    """The zoo's default data set for a model (torch-free registry), digits if unknown."""
    try:
        from qtool.models.registry import get_spec

        return get_spec(name).default_data
    except Exception:  # zoo not importable: every model here trains on digits fine
        return "digits"


def fp32_model(name: str, data: str, workdir: Path, given: dict[str, Path], seed: int) -> Path:
    """The FP32 ONNX model: given, cached in workdir, or trained and exported by the CLI."""
    if name in given:
        return given[name]
    onnx_path = workdir / f"{name}.onnx"
    if onnx_path.exists():
        return onnx_path
    weights = workdir / f"{name}.pt"
    steps = [
        ["train", name, "--data", data, "--out", str(weights), "--seed", str(seed)],
        ["export", name, "--weights", str(weights), "--out", str(onnx_path)],
    ]
    for args in steps:
        if args[0] == "train" and weights.exists():
            continue
        cmd = [sys.executable, "-m", "qtool", "--quiet", *args]
        print("$ qtool " + " ".join(args), file=sys.stderr)
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL)
        if done.returncode != 0:
            sys.exit(
                f"`qtool {args[0]}` failed for {name} (exit {done.returncode}); "
                f"pass --fp32 {name}=PATH to use an existing FP32 model"
            )
    return onnx_path


def quantise(name: str, data: str, src: Path, out: Path, seed: int) -> dict:
    """Plain INT8 first; when it drops more than the target on the validation split, let the
    accuracy-aware loop try (judged on val too: the test split is only reported)."""
    t0 = time.perf_counter()
    report = quantize_model(src, out, data, QuantizeOptions(seed=seed), force=True)
    plain = report.to_dict()
    result = {"data": data, "plain": plain, "quantize": plain}
    if report.validation is not None and report.validation.drop_pp > TARGET_DROP_PP:
        budgeted = QuantizeOptions(seed=seed, max_accuracy_drop=TARGET_DROP_PP, keep_best=True)
        try:
            report = quantize_model(src, out, data, budgeted, force=True)
        except BudgetNotMet as exc:
            report = exc.report
        result["quantize"] = report.to_dict()
    result["quantize_s"] = time.perf_counter() - t0
    return result


def contenders_for(name: str, data: str, src: Path, out: Path) -> list[Contender]:
    """One single-threaded session per model and batch size, fed the test split."""
    test = load_dataset(data, "test")
    meta = qtool_metadata(load_model(src))
    found = []
    for kind, path in (("fp32", src), ("int8", out)):
        session = make_session(path, threads=1, spinning=False)
        io = model_io(session, meta)
        x = io.prepare(test.x)
        for batch in BATCHES:
            feed = {io.input_name: x[:batch]}
            found.append(
                Contender(f"{name}/{kind}/b{batch}", session.run, ([io.output_name], feed), batch)
            )
    return found


def latency_ratios(name: str, lat: dict, seed: int) -> dict:
    ratios = {}
    for batch in BATCHES:
        fp, i8 = lat[f"{name}/fp32/b{batch}"], lat[f"{name}/int8/b{batch}"]
        ratios[batch] = {
            "fp32": latency_stats(fp, batch),
            "int8": latency_stats(i8, batch),
            "int8_over_fp32": bootstrap_median_ratio(fp, i8, seed=seed),
        }
    return ratios


def row(name: str, result: dict) -> list[str]:
    q, plain, ratios = result["quantize"], result["plain"], result["latency"]
    budgeted = (
        ""
        if q is plain
        else f" -> {q['test']['drop_pp']:+.2f} ({len(q['settings']['fp32_nodes'])} FP32 nodes)"
    )
    return [
        f"{name} ({result['data']}, {q['test']['samples']})",
        f"{fmt_bytes(q['size_before'])} -> {fmt_bytes(q['size_after'])}",
        f"{q['size_ratio']:.3f} "
        f"({q['initializer_bytes_after'] / q['initializer_bytes_before']:.3f})",
        f"{100 * q['test']['fp32']:.2f} -> {100 * q['test']['int8']:.2f}",
        f"{plain['test']['drop_pp']:+.2f}" + budgeted,
        f"{100 * q['test']['top1_agreement']:.1f} %",
        *[
            f"{ratios[b]['fp32'].p50_ms:.3f} / {ratios[b]['int8'].p50_ms:.3f}"
            f"  ({ratios[b]['int8_over_fp32'].ratio:.2f} "
            f"[{ratios[b]['int8_over_fp32'].ci95_low:.2f}, "
            f"{ratios[b]['int8_over_fp32'].ci95_high:.2f}])"
            for b in BATCHES
        ],
    ]


COLUMNS = [
    "model (data, test n)",
    "size",
    "size ratio (tensors only)",
    "test accuracy % FP32 -> INT8",
    "test drop pp (plain -> budgeted on val)",
    "top-1 agreement",
    *[f"p50 ms FP32 / INT8 b{b} (ratio [95% CI])" for b in BATCHES],
]


def verdicts(results: dict[str, dict]) -> list[str]:
    """Each target of issue #4, met or not, in one line."""
    lines = []
    for name, result in results.items():
        q = result["quantize"]
        lines.append(
            f"{name}: size ratio {q['size_ratio']:.3f} "
            f"{'<=' if q['size_ratio'] <= TARGET_SIZE else '>'} {TARGET_SIZE}; "
            f"test drop {q['test']['drop_pp']:.2f} pp "
            f"{'<=' if q['test']['drop_pp'] <= TARGET_DROP_PP else '>'} {TARGET_DROP_PP}"
        )
    if "cnn" in results:
        r = results["cnn"]["latency"][32]["int8_over_fp32"]
        faster = "yes" if r.ci95_high < 1 else ("no" if r.ci95_low > 1 else "not resolved")
        lines.append(f"cnn INT8 faster than FP32 at batch 32: {faster} (ratio {r.ratio:.2f})")
    return lines


def zoo_arguments(description: str, seconds: float) -> tuple[argparse.Namespace, dict, list]:
    """The options of the zoo benchmarks (this one and placement.py): the parsed arguments,
    the FP32 models given as NAME=PATH, and the model names asked for."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workdir", type=Path, default=Path("bench-quantize"))
    parser.add_argument("--fp32", action="append", default=[], help="NAME=PATH of an FP32 model")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seconds", type=float, default=seconds, help="timed wall time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    given = {k: Path(v) for k, _, v in (item.partition("=") for item in args.fp32)}
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    return args, given, names


def main() -> None:
    args, given, names = zoo_arguments(__doc__.splitlines()[0], 30.0)

    results: dict[str, dict] = {}
    contenders: list[Contender] = []
    for name in names:
        data = default_data(name)
        src = fp32_model(name, data, args.workdir, given, args.seed)
        out = args.workdir / f"{name}.int8.onnx"
        results[name] = quantise(name, data, src, out, args.seed)
        contenders += contenders_for(name, data, src, out)

    print(
        f"timing {len(contenders)} sessions interleaved for {args.seconds:.0f} s", file=sys.stderr
    )
    run = measure_interleaved(contenders, seconds=args.seconds, warmup=20, seed=args.seed)
    lat = dict(zip(run.names, run.latencies_ns, strict=True))
    for name in names:
        results[name]["latency"] = latency_ratios(name, lat, args.seed)
    title = (
        f"static INT8 vs FP32 on the test split, 1 thread, {run.rounds} interleaved "
        f"rounds in {run.wall_s:.1f} s"
    )
    show(table(title, COLUMNS, [row(name, results[name]) for name in names]))
    lines = verdicts(results)
    for line in lines:
        print(line)
    if args.json:
        payload = {"results": results, "rounds": run.rounds, "wall_s": run.wall_s}
        payload["verdicts"] = lines
        write_json(args.json, payload)


if __name__ == "__main__":
    main()
