"""`qtool demo`: the whole pipeline on the zoo models, one summary table at the end.

Built for growth. A `DemoContext` (output folder, one `ModelRecord` per model) is passed
through `STAGES`, a list of (name, function) pairs run in order; each stage reads and writes
`record.paths` (files) and `record.results` (facts). The summary table and summary.json are
built from the records through `COLUMNS`, so a later stage (quantise, bench, flip, package)
adds itself with one stage function, one `STAGES` entry and a few `Column`s:

    def stage_quantize(ctx: DemoContext) -> None:
        for rec in ctx.records.values():
            rec.paths["int8"] = ...; rec.results["int8_accuracy"] = ...

    STAGES.append(("quantize", stage_quantize))
    COLUMNS.append(Column("INT8 acc", "int8_accuracy", fmt_pct))

Checkpoints are cached under the user cache dir ($QTOOL_CACHE_DIR, else ~/.cache/qtool),
keyed by model, data set, seed, epochs and qtool version, so a second run skips training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtool import __version__
from qtool.demo.attack_stage import stage_attack
from qtool.errors import QtoolError
from qtool.outputs import write_json
from qtool.report import fmt_bytes, fmt_count, fmt_pct, info

DEFAULT_OUT = Path("qtool-demo")
SUMMARY_FILE = "summary.json"
# (record name, zoo model, data set): the CNN / self-attention pair of the seed paper on the
# same images, and a fully connected net on a medical table
DEMO_MODELS: list[tuple[str, str, str]] = [
    ("cnn", "cnn", "digits"),
    ("sasa", "sasa", "digits"),
    ("mlp", "mlp", "breast-cancer"),
]


@dataclass
class ModelRecord:
    """One model's way through the demo: files made and facts measured."""

    name: str
    model: str
    data: str
    paths: dict[str, Path] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoContext:
    out_dir: Path
    seed: int = 0
    force: bool = False
    cache_dir: Path | None = None
    records: dict[str, ModelRecord] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list]]] = field(default_factory=list)
    # draws a campaign's curve to a PNG (the flip command's plot; the library draws none)
    campaign_plot: Callable[[Any, Path], Path] | None = None


Stage = Callable[[DemoContext], None]


@dataclass(frozen=True)
class Column:
    """A summary-table column: header, the `record.results` key, and how to print it."""

    header: str
    key: str
    fmt: Callable[[Any], str] = str
    group: str = "model"  # which summary table: model, cpu (FP32 vs INT8), robustness


def _ms(x: float) -> str:
    return f"{x:.3f}"


def _ratio(x: float) -> str:
    return f"{x:.2f}"


def cache_dir() -> Path:
    """$QTOOL_CACHE_DIR if set, else ~/.cache/qtool (XDG_CACHE_HOME honoured)."""
    env = os.environ.get("QTOOL_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "qtool"


def checkpoint_cache_path(root: Path, spec, data: str, seed: int, epochs: int) -> Path:
    """Cache file for a zoo spec: model, data, seed, epochs, qtool version and a digest of
    the whole recipe (so changing a learning rate does not reuse a stale checkpoint)."""
    safe_data = re.sub(r"[^A-Za-z0-9_.-]+", "_", data)
    recipe = hashlib.sha256(repr(spec).encode()).hexdigest()[:8]
    name = f"{spec.name}-{safe_data}-seed{seed}-ep{epochs}-v{__version__}-{recipe}.pt"
    return root / "checkpoints" / name


# --- stages ----------------------------------------------------------------------------------


def stage_train(ctx: DemoContext) -> None:
    """Train each model, or reuse a cached checkpoint; copy it into the output folder."""
    from qtool.from_torch.train import train_zoo_model
    from qtool.models import get_spec
    from qtool.models.checkpoint import load_checkpoint

    root = ctx.cache_dir or cache_dir()
    for rec in ctx.records.values():
        spec = get_spec(rec.model)
        cached = checkpoint_cache_path(root, spec, rec.data, ctx.seed, spec.epochs)
        config = None
        if cached.is_file():
            try:
                config = load_checkpoint(cached)["config"]
            except QtoolError as exc:
                ctx.notes.append(f"cached checkpoint {cached} unusable ({exc}); retrained")
        if config is None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            info(f"training {rec.name} on {rec.data} (cached in {cached.parent} afterwards)")
            report = train_zoo_model(rec.model, rec.data, cached, seed=ctx.seed, force=True)
            rec.results["train_seconds"] = report.seconds
            rec.results["trained"] = f"{report.seconds:.1f} s"
            config = load_checkpoint(cached)["config"]
        else:
            info(f"reusing cached checkpoint {cached}")
            rec.results["trained"] = "cached"
        target = ctx.out_dir / f"{rec.name}.pt"
        shutil.copyfile(cached, target)
        rec.paths["checkpoint"] = target
        rec.results["torch_test_accuracy"] = config.get("test_accuracy")
        rec.results["epochs"] = config.get("epochs")


def stage_export(ctx: DemoContext) -> None:
    """Export each checkpoint to FP32 ONNX with the parity check."""
    from qtool.from_torch.export import export_model

    for rec in ctx.records.values():
        out = ctx.out_dir / f"{rec.name}.onnx"
        info(f"exporting {rec.name} -> {out}")
        report = export_model(rec.model, out, weights=rec.paths["checkpoint"], force=True)
        rec.paths["fp32"] = out
        rec.results.update(
            params=report.parameters,
            flops=report.flops,
            fp32_bytes=report.file_bytes,
            parity_max_abs=report.parity["max_abs_diff"],
        )


def _evaluate(path: Path, data: str):
    """Test-split accuracy of one ONNX file in ONNX Runtime, as `qtool eval` computes it."""
    from qtool.data.datasets import load_dataset
    from qtool.evaluation.evaluate import evaluate_session, model_io
    from qtool.modelfile.load import load_model
    from qtool.modelfile.metadata import qtool_metadata
    from qtool.runtimes import make_session

    session = make_session(path)
    io = model_io(session, qtool_metadata(load_model(path)))
    return evaluate_session(session, io, load_dataset(data, "test"))


def stage_evaluate(ctx: DemoContext) -> None:
    """FP32 accuracy on the test split, in ONNX Runtime (what a server would run)."""
    for rec in ctx.records.values():
        result = _evaluate(rec.paths["fp32"], rec.data)
        rec.results["fp32_accuracy"] = result.accuracy
        rec.results["test_samples"] = result.samples
        if result.sensitivity is not None:
            rec.results["fp32_sensitivity"] = result.sensitivity


# Demo settings of the later stages: small enough for < 5 min on 2 cores, large enough to
# show the effect. The full-size measurements live in benchmarks/.
DEMO_ACCURACY_BUDGET_PP = 1.0  # one breast-cancer test sample is 0.88 pp
DEMO_BENCH_BATCHES = [1, 32]
DEMO_BENCH_SECONDS = 1.5
DEMO_FLIP_BUDGETS = [1, 2, 5, 10, 20]
DEMO_FLIP_TRIALS = 50  # FP32 means are heavy-tailed (exponent-MSB hits); 20 gave noisy curves
DEMO_FLIP_MODELS = ("cnn", "mlp")  # convolutional vs fully connected, as in the BFA literature
DEMO_SEARCH_BITS = 20
DEMO_PACKAGE_MODEL = "cnn"
DEMO_PACKAGE_FLIPS = 3


def stage_quantize(ctx: DemoContext) -> None:
    """Static INT8 with ONNX Runtime, calibrated on the train split, accuracy kept in budget."""
    from qtool.quantization.quantize import BudgetNotMet, QuantizeOptions, quantize_model

    for rec in ctx.records.values():
        out = ctx.out_dir / f"{rec.name}.int8.onnx"
        info(f"quantising {rec.name} -> {out}")
        try:
            options = QuantizeOptions(max_accuracy_drop=DEMO_ACCURACY_BUDGET_PP, seed=ctx.seed)
            report = quantize_model(rec.paths["fp32"], out, rec.data, options, force=True)
        except BudgetNotMet as exc:
            ctx.notes.append(f"{rec.name}: INT8 budget not met ({exc}); no INT8 model")
            continue
        rec.paths["int8"] = out
        write_json(ctx.out_dir / f"{rec.name}.quantize.json", report.to_dict())
        rec.results.update(
            int8_bytes=report.size_after,
            size_ratio=report.size_ratio,
            int8_accuracy=report.accuracy_after,
            accuracy_drop_pp=report.accuracy_drop_pp,
            fp32_nodes=len(report.settings.fp32_nodes),
        )
        ev = _evaluate(out, rec.data)
        write_json(ctx.out_dir / f"{rec.name}.int8.eval.json", {"model": str(out), **vars(ev)})
        rec.paths["int8_eval"] = ctx.out_dir / f"{rec.name}.int8.eval.json"


def demo_providers() -> list[str]:
    """The CPU provider, and OpenVINO where it is installed and offers a device here."""
    from qtool.runtimes.providers import PROVIDERS

    return ["cpu"] + (["openvino"] if PROVIDERS.get("openvino").unusable_reason() is None else [])


def stage_bench(ctx: DemoContext) -> None:
    """FP32 vs INT8 latency (interleaved, 1 thread) and energy per inference; on OpenVINO
    too where it is usable (pinned to the same thread, f32), with its accuracy."""
    from qtool.benchmarking import BenchPlan, run_bench

    providers = demo_providers()
    plan = BenchPlan(
        batches=DEMO_BENCH_BATCHES,
        threads=[1],
        providers=providers,
        seconds=DEMO_BENCH_SECONDS,
        energy="auto",
        seed=ctx.seed,
        energy_window_s=1.0,
        energy_rounds=1,
        thread_check_s=0.1,
    )
    if len(providers) == 1:
        from qtool.runtimes.providers import PROVIDERS

        ctx.notes.append(f"no OpenVINO rows: {PROVIDERS.get('openvino').unusable_reason()}")
    for rec in ctx.records.values():
        if "int8" not in rec.paths:
            continue
        info(f"benchmarking {rec.name}: FP32 vs INT8, batch {DEMO_BENCH_BATCHES}")
        data = rec.data if len(providers) > 1 else None  # accuracy per provider
        try:
            result = run_bench([rec.paths["fp32"], rec.paths["int8"]], plan, data=data)
        except QtoolError as exc:  # OpenVINO failing here must not cost the CPU figures
            if len(providers) == 1:
                raise
            ctx.notes.append(f"{rec.name}: no OpenVINO rows ({exc}); CPU provider only")
            cpu_only = dataclasses.replace(plan, providers=["cpu"])
            result = run_bench([rec.paths["fp32"], rec.paths["int8"]], cpu_only)
        report = ctx.out_dir / f"{rec.name}.bench.json"
        write_json(report, result)
        rec.paths["bench"] = report
        _openvino_results(rec, result)
        for group in result.groups:
            fp32, int8 = group.configs[0], group.configs[1]
            b = group.batch
            rec.results[f"p50_fp32_b{b}_ms"] = fp32.latency.p50_ms
            rec.results[f"p50_int8_b{b}_ms"] = int8.latency.p50_ms
            rec.results[f"latency_ratio_b{b}"] = int8.ratio.latency_p50_ratio
            rec.results[f"throughput_int8_b{b}"] = int8.latency.throughput_items_per_s
            if int8.energy is not None and int8.ratio.energy_ratio is not None:
                rec.results[f"energy_int8_b{b}_mj"] = int8.energy.mj_per_item
                rec.results[f"energy_ratio_b{b}"] = int8.ratio.energy_ratio
                rec.results["energy_method"] = int8.energy.method
    methods = {r.results.get("energy_method") for r in ctx.records.values()} - {None}
    if "estimated" in methods:
        ctx.notes.append(
            "energy is ESTIMATED (process CPU time x watts per core, no RAPL here): the INT8/FP32 "
            "energy ratio equals the CPU-time ratio; see <model>.bench.json for the formula"
        )


def _openvino_results(rec, result) -> None:
    """OpenVINO's p50 and its ratio to the CPU provider on the same model, and accuracy."""
    for group in result.groups:
        for c in group.configs:
            if c.provider == "openvino" and c.provider_ratio is not None:
                kind = "fp32" if c.model == str(rec.paths["fp32"]) else "int8"
                rec.results[f"ov_{kind}_b{group.batch}_ms"] = c.latency.p50_ms
                rec.results[f"ov_{kind}_ratio_b{group.batch}"] = c.provider_ratio.latency_p50_ratio
    for a in result.accuracy:
        if a.provider == "openvino":
            kind = "fp32" if a.model == Path(rec.paths["fp32"]).name else "int8"
            rec.results[f"ov_{kind}_agreement"] = a.top1_agreement_with_cpu


def stage_flip(ctx: DemoContext) -> None:
    """Random bit flips in the stored weights: accuracy vs number of flipped bits."""
    from qtool.faults.campaign import CampaignPlan, run_campaign

    for name in DEMO_FLIP_MODELS:
        rec = ctx.records.get(name)
        if rec is None or "int8" not in rec.paths:
            continue
        info(f"bit-flip campaign on {name}: FP32 vs INT8, {DEMO_FLIP_TRIALS} trials per budget")
        plan = CampaignPlan(budgets=DEMO_FLIP_BUDGETS, trials=DEMO_FLIP_TRIALS, seed=ctx.seed)
        result = run_campaign(
            [rec.paths["fp32"], rec.paths["int8"]], rec.data, plan, show_progress=False
        )
        report = ctx.out_dir / f"{name}.flips.json"
        write_json(report, result)
        rec.paths["flips"] = report
        try:  # the curve as a picture too, when the command draws and matplotlib is here
            if ctx.campaign_plot is not None:
                plot = ctx.campaign_plot(result, ctx.out_dir / f"{name}.flips.png")
                rec.paths["flips_plot"] = plot
        except QtoolError as exc:
            ctx.notes.append(f"no flip plot: {exc}")
        by_model = {}
        for stat in result.stats:
            kind = "int8" if Path(stat.model) == rec.paths["int8"] else "fp32"
            by_model.setdefault(kind, {})[stat.bits] = stat.mean
        rec.results["random_flip_accuracy"] = by_model
        top = max(DEMO_FLIP_BUDGETS)
        rec.results[f"fp32_acc_{top}_random"] = by_model["fp32"][top]
        rec.results[f"int8_acc_{top}_random"] = by_model["int8"][top]
        ctx.tables.append(
            (
                f"{name}: mean test accuracy under N random bit flips in the stored weights "
                f"({DEMO_FLIP_TRIALS} trials each; storage faults, see README)",
                ["weights", *(f"{b} bits" for b in DEMO_FLIP_BUDGETS)],
                [
                    [kind.upper(), *(fmt_pct(acc[b], 1) for b in DEMO_FLIP_BUDGETS)]
                    for kind, acc in by_model.items()
                ],
            )
        )


def stage_targeted(ctx: DemoContext) -> None:
    """Chosen bits (progressive bit search) vs random bits, on the INT8 CNN and MLP."""
    from qtool.faults.search import progressive_search

    rows = []
    for name in DEMO_FLIP_MODELS:
        rec = ctx.records.get(name)
        if rec is None or "int8" not in rec.paths:
            continue
        info(f"progressive bit search on {name} INT8 (up to {DEMO_SEARCH_BITS} chosen bits)")
        chance_plus = 0.2 if name == "cnn" else None
        result = progressive_search(
            rec.paths["int8"], rec.data, DEMO_SEARCH_BITS, chance_plus, seed=ctx.seed
        )
        report = ctx.out_dir / f"{name}.int8.search.json"
        write_json(report, {k: v for k, v in vars(result).items() if k != "files"})
        used = len(result.accuracies) - 1
        rec.results["targeted_flips"] = used
        rec.results["targeted_accuracy"] = result.final_accuracy
        random_acc = rec.results.get("random_flip_accuracy", {}).get("int8", {})
        same = min((b for b in random_acc if b >= used), default=None)
        rows.append(
            [
                f"{name} INT8",
                fmt_pct(result.clean_accuracy, 1),
                f"{used}",
                fmt_pct(result.final_accuracy, 1),
                f"{fmt_pct(random_acc[same], 1)} ({same} bits)" if same else "",
                result.method,
            ]
        )
    if rows:
        ctx.tables.append(
            (
                "chosen vs random bit flips (Bit-Flip Attack, progressive bit search; accuracy "
                "measured in ONNX Runtime on the test split)",
                [
                    "model",
                    "clean",
                    "chosen flips",
                    "after chosen",
                    "after random flips",
                    "search",
                ],
                rows,
            )
        )


def stage_package(ctx: DemoContext) -> None:
    """Bundle the INT8 CNN with ECC; corrupt it with a few flips; verify catches and repairs."""
    from qtool.deploy.bundle import package
    from qtool.deploy.verify import verify
    from qtool.faults import FlipSettings, inject
    from qtool.modelfile.rewrite import to_flippable

    rec = ctx.records.get(DEMO_PACKAGE_MODEL)
    if rec is None or "int8" not in rec.paths:
        return
    # flip writes varint-stored tensors as raw_data; ship that layout so a flip is only bits
    source = ctx.out_dir / f"{rec.name}.int8.deploy.onnx"
    source.write_bytes(to_flippable(rec.paths["int8"].read_bytes())[0])
    reports = [rec.paths[k] for k in ("int8_eval", "bench", "flips") if k in rec.paths]
    bundle = ctx.out_dir / "bundle"
    info(f"packaging {source.name} -> {bundle}/ (with ECC) and corrupting it")
    result = package(source, bundle, ecc=True, report_paths=reports, force=True)
    model_file = bundle / source.name
    flip = inject(model_file, FlipSettings(bits=DEMO_PACKAGE_FLIPS, seed=ctx.seed))
    model_file.write_bytes(bytes(flip.files.main))
    caught = verify(bundle)
    located = sum(len(t.bits) for t in caught.tensors)
    repaired = verify(bundle, do_repair=True)
    after = verify(bundle)
    verdict = "caught" if not caught.intact else "MISSED"
    fixed = "repaired" if repaired.repaired and after.intact else "NOT repaired"
    rec.results["bundle"] = f"{DEMO_PACKAGE_FLIPS} flips {verdict}, {located} bits located, {fixed}"
    rec.results["ecc_overhead"] = result.ecc["overhead"] if result.ecc else None
    ctx.tables.append(
        (
            f"bundle {bundle}: {DEMO_PACKAGE_FLIPS} random bit flips written into its model file",
            ["tensor", "element", "bit", "verify", "repair"],
            [
                [t.name, b.element, b.bit, "caught", "restored" if repaired.repaired else "no"]
                for t in caught.tensors
                for b in t.bits
            ],
        )
    )


STAGES: list[tuple[str, Stage]] = [
    ("train", stage_train),
    ("export", stage_export),
    ("evaluate", stage_evaluate),
    ("quantize", stage_quantize),
    ("bench", stage_bench),
    ("flip", stage_flip),
    ("targeted", stage_targeted),
    ("package", stage_package),
    ("attack", stage_attack),
]

COLUMNS: list[Column] = [
    Column("params", "params", fmt_count),
    Column("FLOPs", "flops", fmt_count),
    Column("FP32 size", "fp32_bytes", fmt_bytes),
    Column("FP32 acc", "fp32_accuracy", fmt_pct),
    Column("INT8 size", "int8_bytes", fmt_bytes),
    Column("INT8 acc", "int8_accuracy", fmt_pct),
    Column("FP32 nodes", "fp32_nodes"),
    Column("trained", "trained"),
    Column("FP32 b1", "p50_fp32_b1_ms", _ms, "cpu"),
    Column("INT8 b1", "p50_int8_b1_ms", _ms, "cpu"),
    Column("ratio b1", "latency_ratio_b1", _ratio, "cpu"),
    Column("FP32 b32", "p50_fp32_b32_ms", _ms, "cpu"),
    Column("INT8 b32", "p50_int8_b32_ms", _ms, "cpu"),
    Column("ratio b32", "latency_ratio_b32", _ratio, "cpu"),
    Column("energy ratio b32", "energy_ratio_b32", _ratio, "cpu"),
    Column("FP32 b1", "ov_fp32_b1_ms", _ms, "openvino"),
    Column("vs MLAS", "ov_fp32_ratio_b1", _ratio, "openvino"),
    Column("INT8 b1", "ov_int8_b1_ms", _ms, "openvino"),
    Column("vs MLAS", "ov_int8_ratio_b1", _ratio, "openvino"),
    Column("FP32 b32", "ov_fp32_b32_ms", _ms, "openvino"),
    Column("vs MLAS", "ov_fp32_ratio_b32", _ratio, "openvino"),
    Column("INT8 b32", "ov_int8_b32_ms", _ms, "openvino"),
    Column("vs MLAS", "ov_int8_ratio_b32", _ratio, "openvino"),
    Column("FP32 top-1 agree", "ov_fp32_agreement", fmt_pct, "openvino"),
    Column("INT8 top-1 agree", "ov_int8_agreement", fmt_pct, "openvino"),
    Column("FP32, 20 random", "fp32_acc_20_random", fmt_pct, "robustness"),
    Column("INT8, 20 random", "int8_acc_20_random", fmt_pct, "robustness"),
    Column("INT8, chosen", "targeted_accuracy", fmt_pct, "robustness"),
    Column("chosen bits", "targeted_flips", str, "robustness"),
    Column("INT8 bundle", "bundle", str, "robustness"),
]
TABLE_TITLES = {
    "model": "models",
    "cpu": "FP32 vs INT8 on this CPU: p50 latency in ms, 1 thread, interleaved runs; ratio = "
    "INT8 / FP32 (energy: see note)",
    "openvino": "OpenVINO (f32 pinned, 1 thread via INFERENCE_NUM_THREADS) vs the CPU "
    "provider (MLAS), same rounds: p50 in ms, ratio = OpenVINO / MLAS; top-1 agreement with "
    "the CPU provider on the test split",
    "robustness": "test accuracy after bit flips in the stored weights (random: mean of "
    f"{DEMO_FLIP_TRIALS} trials; chosen: progressive bit search), and the bundle that catches "
    "them",
}


# --- running ---------------------------------------------------------------------------------


def prepare_out_dir(out_dir: Path, force: bool) -> Path:
    """Create the output folder; refuse one holding files unless --force."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise QtoolError(f"demo output {out_dir} is a file; give a folder with --out")
    previous_demo = (out_dir / SUMMARY_FILE).is_file()  # a demo folder is the demo's to rewrite
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force and not previous_demo:
        raise QtoolError(
            f"demo output folder {out_dir} is not empty: pass --force to overwrite it "
            "or choose another --out"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise QtoolError(f"cannot create demo output folder {out_dir}: {exc}") from exc
    return out_dir


def run_demo(
    out_dir: str | Path = DEFAULT_OUT,
    *,
    force: bool = False,
    seed: int = 0,
    models: list[tuple[str, str, str]] | None = None,
    stages: list[tuple[str, Stage]] | None = None,
    cache: str | Path | None = None,
    campaign_plot: Callable[[Any, Path], Path] | None = None,
) -> DemoContext:
    """Run every stage over every demo model; write summary.json; return the context."""
    start = time.perf_counter()
    ctx = DemoContext(
        out_dir=prepare_out_dir(Path(out_dir), force),
        seed=seed,
        force=force,
        cache_dir=Path(cache) if cache is not None else None,
        campaign_plot=campaign_plot,
    )
    for name, model, data in models or DEMO_MODELS:
        ctx.records[name] = ModelRecord(name, model, data)
    for stage_name, stage in stages if stages is not None else STAGES:
        t0 = time.perf_counter()
        stage(ctx)
        ctx.stage_seconds[stage_name] = time.perf_counter() - t0
    ctx.stage_seconds["total"] = time.perf_counter() - start
    write_json(ctx.out_dir / SUMMARY_FILE, summary_payload(ctx))
    return ctx


def summary_table(ctx: DemoContext, group: str = "model") -> tuple[list[str], list[list[str]]]:
    """Columns and rows of one summary table: model, data, then every `COLUMNS` entry of
    `group` that at least one record has a result for."""
    columns = [
        c
        for c in COLUMNS
        if c.group == group and any(c.key in r.results for r in ctx.records.values())
    ]
    rows = []
    for rec in ctx.records.values():
        if group != "model" and not any(c.key in rec.results for c in columns):
            continue
        cells = [rec.name] if group != "model" else [rec.name, rec.data]
        for col in columns:
            value = rec.results.get(col.key)
            cells.append("" if value is None else col.fmt(value))
        rows.append(cells)
    head = ["model"] if group != "model" else ["model", "data"]
    return [*head, *(c.header for c in columns)], rows


def summary_payload(ctx: DemoContext) -> dict:
    return {
        "qtool_version": __version__,
        "seed": ctx.seed,
        "out_dir": str(ctx.out_dir),
        "cache_dir": str(ctx.cache_dir or cache_dir()),
        "stage_seconds": ctx.stage_seconds,
        "models": {
            name: {
                "model": rec.model,
                "data": rec.data,
                "paths": {k: str(v) for k, v in rec.paths.items()},
                "results": rec.results,
            }
            for name, rec in ctx.records.items()
        },
        "notes": ctx.notes,
        "tables": [{"title": t, "columns": c, "rows": r} for t, c, r in ctx.tables],
    }
