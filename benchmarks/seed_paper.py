"""The seed paper's table at a medium size: CNN vs SASA, FP32 vs INT8, one run per data set.

The first research thread claims that quantised stand-alone self-attention (SASA) networks
give "50-80 % reduction in model size, 60-80 % fewer parameters, 40-85 % fewer FLOPs and
65-80 % more energy efficiency during inference on CPUs". This script trains the zoo's
`cnn` and `sasa` at `--size medium` (same skeleton, 3x3 convolutions vs local attention) for
a few epochs on `synthetic:lesion:64` (made-up images: a pipeline measurement, not an accuracy
claim) and on any `--npz` file given, keeps the epoch best on the validation split, exports,
quantises to INT8 (qtool.quantization as it stands) and prints per model: parameters, FLOPs,
file size, test accuracy, p50 latency at batch 1 and 32 (1 thread, the four models timed
interleaved by qtool's bench library) and energy per inference, estimated from CPU time (or
RAPL where readable) and analytic (`qtool.runtimes.analytic_energy`: operation counts x a
45 nm energy table). Then the paper's ranges beside SASA INT8 / CNN FP32, and the
issue's targets. It reports; it does not assert.

SASA INT8 is quantised as any model is (qtool's placement: the fixed one-hot gather Convs
kept in float, and Q/DQ only where ONNX Runtime runs an integer kernel that pays, decided
from the graph it executes). `--sasa-exclude Mul,Softmax` adds hand-listed op types to keep
in float, for comparison.

`--pipeline` also runs export, quantize, bench, a flip campaign, the bit search and package
on the medium CNN and SASA, each stage as its own `qtool` process, and prints wall time and
peak memory (max RSS) per stage.

    python benchmarks/seed_paper.py [--workdir bench-seed] [--npz PATH] [--epochs 3]
        [--seconds 8] [--pipeline] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from qtool.benchmarking.bench import environment, run_bench
from qtool.benchmarking.plan import BenchPlan
from qtool.data.datasets import load_dataset
from qtool.evaluation.evaluate import evaluate_session, model_io
from qtool.machine import cpu_line
from qtool.modelfile.load import load_model
from qtool.modelfile.metadata import qtool_metadata
from qtool.modelfile.roles import is_fixed
from qtool.modelfile.summary import count_fixed_flops, count_flops, summarize
from qtool.outputs import write_json
from qtool.quantization.quantize import QuantizeOptions, quantize_model
from qtool.report import fmt_bytes, fmt_count, show, table
from qtool.runtimes import make_session
from qtool.runtimes.analytic_energy import analytic_energy

MODELS = ("cnn", "sasa")
BATCHES = (1, 32)
# the paper's claims: (row, low %, high %): reduction of quantised SASA against the CNN
PAPER = {
    "file size": (50, 80),
    "parameters": (60, 80),
    "FLOPs": (40, 85),
    "energy per inference": (65, 80),
}
TARGETS = "SASA INT8/FP32 size <= 0.30; SASA INT8 faster than FP32 at b1 and b32; " \
    "SASA FP32 within 3x the CNN's latency; INT8 accuracy within 0.5 pp of FP32"  # fmt: skip


def train_export(name: str, data: str, workdir: Path, args) -> Path:
    """FP32 ONNX of the medium zoo model, trained and exported (reused when in workdir)."""
    from qtool.from_torch.export import export_model
    from qtool.from_torch.train import train_zoo_model

    ckpt, onnx_path = workdir / f"{name}.pt", workdir / f"{name}.onnx"
    if not ckpt.exists():
        print(f"training {name} ({args.size}) on {data}, {args.epochs} epochs", file=sys.stderr)
        train_zoo_model(
            name, data, ckpt, epochs=args.epochs, seed=args.seed, size=args.size, force=True
        )
    if not onnx_path.exists():
        export_model(name, onnx_path, weights=ckpt, force=True)
    return onnx_path


def fixed_nodes(path: Path) -> list[str]:
    """Names of the Convs marked fixed (the attention's one-hot gathers)."""
    return [n.name for n in load_model(path).graph.node if is_fixed(n)]


def quantise(name: str, data: str, src: Path, args) -> tuple[Path, dict]:
    """INT8 with qtool.quantization; SASA with its attention core kept in FP32 (see above)."""
    out = src.with_suffix(".int8.onnx")
    options = QuantizeOptions(seed=args.seed)
    if name == "sasa" and args.sasa_exclude != "none":
        op_types = [t for t in args.sasa_exclude.split(",") if t]
        options = QuantizeOptions(
            seed=args.seed, exclude_op_types=op_types, exclude_nodes=fixed_nodes(src)
        )
    if not out.exists():
        quantize_model(src, out, data, options, force=True)
    kept = {"exclude_op_types": options.exclude_op_types, "fixed_nodes": len(options.exclude_nodes)}
    return out, kept


def test_accuracy(path: Path, data: str) -> float:
    session = make_session(path, threads=1)
    io = model_io(session, qtool_metadata(load_model(path)))
    return evaluate_session(session, io, load_dataset(data, "test")).accuracy


def describe(path: Path, data: str) -> dict:
    """Static facts of one ONNX file, its test accuracy and (if available) analytic energy."""
    model = load_model(path)
    summary = summarize(path, model)
    facts = {
        "path": str(path),
        "parameters": summary.parameters,
        "flops": count_flops(model),
        "fixed_flops": count_fixed_flops(model),
        "file_bytes": summary.file_bytes,
        "test_accuracy": test_accuracy(path, data),
    }
    result = analytic_energy(model)
    facts["analytic_pj"] = float(result.pj_per_inference)
    facts["analytic"] = {k: v for k, v in vars(result).items() if _plain(v)}
    return facts


def _plain(value) -> bool:
    return isinstance(value, (int, float, str, dict, list)) or value is None


def measure(paths: dict[str, Path], data: str, seconds: float, seed: int) -> dict:
    """p50 latency and energy per inference of every model at batch 1 and 32 (1 thread)."""
    plan = BenchPlan(batches=list(BATCHES), threads=[1], seconds=seconds, energy="auto", seed=seed)
    result = run_bench(list(paths.values()), plan, data=f"{data}:test")
    labels = dict(zip([str(p) for p in paths.values()], paths, strict=True))
    out: dict[str, dict] = {label: {} for label in paths}
    for group in result.groups:
        for config in group.configs:
            entry = out[labels[config.model]]
            entry[f"p50_ms_b{group.batch}"] = config.latency.p50_ms
            if config.energy is not None:
                entry[f"mj_per_item_b{group.batch}"] = config.energy.mj_per_item
                entry["energy_method"] = config.energy.method
    out["_energy"] = {"formula": result.energy.get("formula"), "notes": result.notes}
    return out


def run_data(data: str, workdir: Path, args) -> dict:
    """Train, export, quantise, describe and time CNN and SASA on one data set."""
    workdir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    kept: dict[str, dict] = {}
    for name in MODELS:
        fp32 = train_export(name, data, workdir, args)
        int8, kept[name] = quantise(name, data, fp32, args)
        paths[f"{name} FP32"], paths[f"{name} INT8"] = fp32, int8
    facts = {label: describe(path, data) for label, path in paths.items()}
    timing = measure(paths, data, args.seconds, args.seed)
    for label in paths:
        facts[label].update(timing[label])
    return {"data": data, "models": facts, "quantisation": kept, "energy": timing["_energy"]}


def _cell(facts: dict, key: str) -> str:
    value = facts.get(key)
    if value is None:
        return "-"
    if key in ("parameters", "flops"):
        return fmt_count(value)
    if key == "file_bytes":
        return fmt_bytes(value)
    if key == "test_accuracy":
        return f"{100 * value:.2f} %"
    if key.startswith("p50"):
        return f"{value:.2f} ms"
    if key.startswith("mj"):
        return f"{value:.3f} mJ"
    if key == "analytic_pj":
        return f"{value / 1e9:.3f} mJ"
    return str(value)


ROWS = [
    ("parameters", "parameters"),
    ("FLOPs (batch 1)", "flops"),
    ("file size", "file_bytes"),
    ("test accuracy (val-chosen epoch)", "test_accuracy"),
    *[(f"p50 latency b{b}", f"p50_ms_b{b}") for b in BATCHES],
    *[(f"energy/inference b{b} (measured or estimated)", f"mj_per_item_b{b}") for b in BATCHES],
    ("energy/inference (analytic, 45 nm)", "analytic_pj"),
]


def model_table(result: dict) -> None:
    models = result["models"]
    labels = list(models)
    rows = [[title, *[_cell(models[m], key) for m in labels]] for title, key in ROWS]
    method = next((m.get("energy_method") for m in models.values() if "energy_method" in m), "-")
    show(table(f"{result['data']}: medium CNN vs SASA (energy: {method})", ["", *labels], rows))


def reduction(new: float | None, old: float | None) -> str:
    if not new or not old:
        return "-"
    return f"{100 * (1 - new / old):.0f} %"


def claims_table(result: dict) -> None:
    """The paper's ranges beside what this run measured (SASA vs the FP32 CNN)."""
    m = result["models"]
    cnn, s8, s32 = m["cnn FP32"], m["sasa INT8"], m["sasa FP32"]
    energy_key = "mj_per_item_b1"
    keys = {"file size": "file_bytes", "parameters": "parameters", "FLOPs": "flops"}
    rows = []
    for claim, (low, high) in PAPER.items():
        key = keys.get(claim, energy_key)
        row = [claim, f"{low}-{high} %", reduction(s8.get(key), cnn.get(key))]
        row.append(reduction(s32.get(key), cnn.get(key)))
        if claim == "energy per inference":
            row[1] += " (analytic)"
            row.append(reduction(s8.get("analytic_pj"), cnn.get("analytic_pj")))
        else:
            row.append("")
        rows.append(row)
    headers = ["reduction vs CNN FP32", "paper", "SASA INT8", "SASA FP32", "SASA INT8 analytic"]
    show(table(f"{result['data']}: the paper's claims", headers, rows))


def verdicts(result: dict) -> list[str]:
    m = result["models"]
    s32, s8, c32, c8 = m["sasa FP32"], m["sasa INT8"], m["cnn FP32"], m["cnn INT8"]
    size = s8["file_bytes"] / s32["file_bytes"]
    lines = [f"SASA INT8/FP32 file size {size:.3f} ({'<=' if size <= 0.30 else '>'} 0.30)"]
    for b in BATCHES:
        key = f"p50_ms_b{b}"
        lines.append(f"b{b}: SASA INT8/FP32 latency {s8[key] / s32[key]:.2f} (target < 1); "
                     f"SASA FP32/CNN FP32 {s32[key] / c32[key]:.2f} (target <= 3)")  # fmt: skip
    for name, fp, i8 in (("cnn", c32, c8), ("sasa", s32, s8)):
        drop = 100 * (fp["test_accuracy"] - i8["test_accuracy"])
        lines.append(f"{name} INT8 accuracy drop {drop:+.2f} pp (target <= 0.5)")
    return lines


# --- the pipeline, stage by stage --------------------------------------------------------------

# runs one command as its only child, so RUSAGE_CHILDREN's max RSS is that stage's peak memory
WRAPPER = """import json, resource, subprocess, sys, time
t = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
wall = time.perf_counter() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"exit": code, "wall_s": wall, "max_rss_mb": r.ru_maxrss / 1024,
                  "cpu_s": r.ru_utime + r.ru_stime}))"""


def run_stage(args: list[str]) -> dict:
    """One `qtool` command in its own process: exit code, wall s, CPU s, peak RSS MB."""
    cmd = [sys.executable, "-c", WRAPPER, sys.executable, "-m", "qtool", "--quiet", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        return {"exit": done.returncode, "error": done.stderr.strip()[-300:]}
    return json.loads(lines[-1])


def stage_commands(
    name: str, workdir: Path, data: str, seed: int, sasa_exclude: str = "none"
) -> list[tuple]:
    """(stage, qtool arguments) of the whole pipeline for one model, into workdir/pipeline;
    quantised as the table's models are (placement, plus `--sasa-exclude` if given)."""
    src, ckpt, d = workdir / f"{name}.onnx", workdir / f"{name}.pt", workdir / "pipeline"
    fp32, int8 = d / f"{name}.onnx", d / f"{name}.int8.onnx"
    quant = ["quantize", str(fp32), "--calib", data, "--out", str(int8), "--seed", str(seed)]
    if name == "sasa" and sasa_exclude != "none":
        nodes = ",".join(fixed_nodes(src))
        quant += ["--exclude-op-types", sasa_exclude, "--exclude-nodes", nodes]
    flips = ["--bits", "1,10", "--trials", "5", "--data", data, "--seed", str(seed)]
    return [
        ("export", ["export", name, "--weights", str(ckpt), "--out", str(fp32)]),
        ("quantize", quant),
        ("bench", ["bench", str(fp32), str(int8), "--batch", "1,32", "--seconds", "3",
                   "--data", f"{data}:test"]),
        ("flip campaign", ["flip", str(fp32), str(int8), *flips]),
        ("bit search", ["flip", str(int8), "--search", "progressive", "--bits", "5",
                        "--data", data, "--out", str(d / f"{name}.attacked.onnx"),
                        "--manifest", str(d / f"{name}.flips.json")]),
        ("package", ["package", str(int8), "--out", str(d / f"{name}.bundle")]),
    ]  # fmt: skip


def pipeline_stages(
    workdir: Path, data: str, seed: int, sasa_exclude: str = "none"
) -> dict[str, dict]:
    """Wall time and peak memory of every stage on the medium CNN and SASA."""
    out: dict[str, dict] = {}
    for name in ("sasa", "cnn"):
        (workdir / "pipeline").mkdir(exist_ok=True)
        for stage, args in stage_commands(name, workdir, data, seed, sasa_exclude):
            print(f"$ qtool {' '.join(args)[:150]}", file=sys.stderr)
            out[f"{name} {stage}"] = run_stage([*args, "--force"])
    return out


def stage_table(stages: dict[str, dict]):
    rows = [
        [label, r.get("exit"), f"{r.get('wall_s', 0):.1f}", f"{r.get('cpu_s', 0):.1f}",
         f"{r.get('max_rss_mb', 0):.0f}", r.get("error", "")[-80:]]
        for label, r in stages.items()
    ]  # fmt: skip
    headers = ["stage", "exit", "wall s", "CPU s", "peak RSS MB", "error"]
    return table("the pipeline on the medium models, one process per stage", headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench-seed"))
    parser.add_argument("--data", default="synthetic:lesion:64")
    parser.add_argument("--npz", type=Path, action="append", default=[], help="MedMNIST .npz")
    parser.add_argument("--size", default="medium")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="timed s per batch size")
    parser.add_argument("--sasa-exclude", default="none", help="op types, or none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pipeline", action="store_true", help="time each CLI stage too")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    env = environment()
    print(f"CPU: {cpu_line()}; onnxruntime {env['onnxruntime']}")
    datasets = [args.data, *[f"npz:{p}" for p in args.npz]]
    results = []
    for i, data in enumerate(datasets):
        t0 = time.perf_counter()
        result = run_data(data, args.workdir / f"data{i}", args)
        result["seconds"] = time.perf_counter() - t0
        model_table(result)
        claims_table(result)
        result["verdicts"] = verdicts(result)
        print("targets: " + TARGETS)
        print("\n".join(result["verdicts"]))
        results.append(result)
    payload = {"environment": env, "results": results, "analytic": True}
    if args.pipeline:
        stages = pipeline_stages(args.workdir / "data0", args.data, args.seed, args.sasa_exclude)
        show(stage_table(stages))
        payload["pipeline"] = stages
    if args.json:
        write_json(args.json, payload)


if __name__ == "__main__":
    main()
