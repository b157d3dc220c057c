"""Q/DQ placement computed from the graph (`int8-kernels`) against ORT's full placement (`ort`).

For each zoo model (cnn, sasa on digits; mlp on breast-cancer; trained and exported by the
CLI into --workdir unless given with --fp32 NAME=PATH): quantise twice with
`quantize_model`, defaults apart from the placement, then time FP32 and both INT8 models at
batch 1 and 32 with 1 intra-op thread, all sessions interleaved round by round in one run.
Prints per model: file size and size ratio, validation and test accuracy, Q/DQ nodes in the
file and left at run time (ORT's optimised graph), which nodes the placement kept out, and the
latency ratio int8-kernels / ort with a bootstrap 95 % interval. The question it answers (issue
17): does the computed placement ever cost accuracy or size on the zoo models? The 2 cores
here may be shared, so latencies are noisy; ratios come from one interleaved run.

    python benchmarks/placement.py [--workdir DIR] [--seconds 20] [--json out.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
from quantize import BATCHES, default_data, fp32_model, zoo_arguments

from qtool.data.datasets import load_dataset
from qtool.evaluation.model_io import model_io
from qtool.modelfile.load import load_model
from qtool.modelfile.metadata import qtool_metadata
from qtool.outputs import write_json
from qtool.quantization.quantize import QuantizeOptions, quantize_model
from qtool.report import fmt_bytes, show, table
from qtool.runtimes import make_session
from qtool.runtimes.executed import executed_graph
from qtool.runtimes.timing import Contender, bootstrap_median_ratio, measure_interleaved

PLACEMENTS = ("ort", "int8-kernels")


def quantise_both(name: str, data: str, src: Path, workdir: Path, seed: int) -> dict:
    out = {}
    for placement in PLACEMENTS:
        path = workdir / f"{name}.{placement}.int8.onnx"
        options = QuantizeOptions(seed=seed, placement=placement)
        report = quantize_model(src, path, data, options, force=True)
        model = onnx.load(str(path))
        qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
        out[placement] = {
            "path": str(path),
            "report": report.to_dict(),
            "qdq_nodes": qdq,
            "runtime_conversions": executed_graph(path).conversions(),
        }
    return out


def contenders(name: str, data: str, src: Path, found: dict) -> list[Contender]:
    test = load_dataset(data, "test")
    meta = qtool_metadata(load_model(src))
    paths = {"fp32": src, **{p: Path(found[p]["path"]) for p in PLACEMENTS}}
    out = []
    for kind, path in paths.items():
        session = make_session(path, threads=1, spinning=False)
        io = model_io(session, meta)
        x = io.prepare(test.x)
        for batch in BATCHES:
            feed = {io.input_name: x[:batch]}
            out.append(Contender(f"{name}/{kind}/b{batch}", session.run, (None, feed), batch))
    return out


def rows(name: str, found: dict, lat: dict, seed: int) -> list[list[str]]:
    out = []
    for placement in PLACEMENTS:
        r = found[placement]["report"]
        val, test = r["validation"], r["test"]
        timing = []
        for batch in BATCHES:
            base = lat[f"{name}/ort/b{batch}"]
            mine = lat[f"{name}/{placement}/b{batch}"]
            fp32 = lat[f"{name}/fp32/b{batch}"]
            vs_ort = bootstrap_median_ratio(base, mine, seed=seed)
            vs_fp32 = bootstrap_median_ratio(fp32, mine, seed=seed)
            timing.append(
                f"{vs_fp32.ratio:.2f} / {vs_ort.ratio:.2f} "
                f"[{vs_ort.ci95_low:.2f}, {vs_ort.ci95_high:.2f}]"
            )
        kept = r["settings"]["placement"].get("excluded", [])
        out.append(
            [
                f"{name} {placement}",
                f"{fmt_bytes(r['size_after'])} ({r['size_ratio']:.3f})",
                f"{100 * val['int8']:.2f} / {100 * test['int8']:.2f}",
                f"{found[placement]['qdq_nodes']} / {found[placement]['runtime_conversions']}",
                str(len(kept)),
                *timing,
            ]
        )
    return out


COLUMNS = [
    "model placement",
    "INT8 size (ratio)",
    "INT8 accuracy % val / test",
    "Q/DQ in file / at run time",
    "kept out",
    *[f"b{b} latency vs FP32 / vs ort [95% CI]" for b in BATCHES],
]


def main() -> None:
    args, given, names = zoo_arguments(__doc__.splitlines()[0], 20.0)
    results, timed = {}, []
    for name in names:
        data = default_data(name)
        src = fp32_model(name, data, args.workdir, given, args.seed)
        results[name] = quantise_both(name, data, src, args.workdir, args.seed)
        timed += contenders(name, data, src, results[name])
    print(f"timing {len(timed)} sessions interleaved for {args.seconds:.0f} s", file=sys.stderr)
    run = measure_interleaved(timed, seconds=args.seconds, warmup=20, seed=args.seed)
    lat = dict(zip(run.names, run.latencies_ns, strict=True))
    body = [row for name in names for row in rows(name, results[name], lat, args.seed)]
    show(table(f"Q/DQ placement, 1 thread, {run.rounds} interleaved rounds", COLUMNS, body))
    if args.json:
        write_json(args.json, {"results": results, "rounds": run.rounds})


if __name__ == "__main__":
    main()
