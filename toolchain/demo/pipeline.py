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

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtool import __version__
from qtool.demo.attack_stage import stage_attack
from qtool.demo.bench_stage import stage_bench
from qtool.demo.context import (
    DEFAULT_OUT,
    DEMO_FLIP_TRIALS,
    DEMO_MODELS,
    SUMMARY_FILE,
    Column,
    DemoContext,
    ModelRecord,
    Stage,
    cache_dir,
    fmt_ms,
    fmt_ratio,
)
from qtool.demo.fault_stages import stage_flip, stage_targeted
from qtool.demo.model_stages import stage_evaluate, stage_export, stage_quantize, stage_train
from qtool.demo.package_stage import stage_package
from qtool.errors import QtoolError, option
from qtool.outputs import write_json
from qtool.report import fmt_bytes, fmt_count, fmt_pct

__all__ = [
    "COLUMNS",
    "DEFAULT_OUT",
    "STAGES",
    "SUMMARY_FILE",
    "TABLE_TITLES",
    "Column",
    "DemoContext",
    "ModelRecord",
    "cache_dir",
    "run_demo",
    "summary_table",
]

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
    Column("float nodes", "float_nodes"),
    Column("trained", "trained"),
    Column("FP32 b1", "p50_fp32_b1_ms", fmt_ms, "cpu"),
    Column("INT8 b1", "p50_int8_b1_ms", fmt_ms, "cpu"),
    Column("ratio b1", "latency_ratio_b1", fmt_ratio, "cpu"),
    Column("FP32 b32", "p50_fp32_b32_ms", fmt_ms, "cpu"),
    Column("INT8 b32", "p50_int8_b32_ms", fmt_ms, "cpu"),
    Column("ratio b32", "latency_ratio_b32", fmt_ratio, "cpu"),
    Column("energy ratio b32", "energy_ratio_b32", fmt_ratio, "cpu"),
    Column("FP32 b1", "ov_fp32_b1_ms", fmt_ms, "openvino"),
    Column("vs MLAS", "ov_fp32_ratio_b1", fmt_ratio, "openvino"),
    Column("INT8 b1", "ov_int8_b1_ms", fmt_ms, "openvino"),
    Column("vs MLAS", "ov_int8_ratio_b1", fmt_ratio, "openvino"),
    Column("FP32 b32", "ov_fp32_b32_ms", fmt_ms, "openvino"),
    Column("vs MLAS", "ov_fp32_ratio_b32", fmt_ratio, "openvino"),
    Column("INT8 b32", "ov_int8_b32_ms", fmt_ms, "openvino"),
    Column("vs MLAS", "ov_int8_ratio_b32", fmt_ratio, "openvino"),
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
    """Create the output folder; refuse one holding files unless forced."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise QtoolError(f"demo output {out_dir} is a file; give a folder", param="out_dir")
    previous_demo = (out_dir / SUMMARY_FILE).is_file()  # a demo folder is the demo's to rewrite
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force and not previous_demo:
        raise QtoolError(
            f"demo output folder {out_dir} is not empty: pass {option('force')} to overwrite "
            "it or choose another folder"
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
