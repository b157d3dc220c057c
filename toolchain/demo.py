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
from qtool.errors import QtoolError
from qtool.onnxfile import write_json
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


Stage = Callable[[DemoContext], None]


@dataclass(frozen=True)
class Column:
    """A summary-table column: header, the `record.results` key, and how to print it."""

    header: str
    key: str
    fmt: Callable[[Any], str] = str


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
    from qtool.models import get_spec
    from qtool.models.checkpoint import load_checkpoint
    from qtool.training import train_zoo_model

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
    from qtool.export import export_model

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


def stage_evaluate(ctx: DemoContext) -> None:
    """FP32 accuracy on the test split, in ONNX Runtime (what a server would run)."""
    from qtool.data import load_dataset
    from qtool.evaluate import evaluate_session, model_io
    from qtool.onnxfile import load_model, qtool_metadata
    from qtool.runtimes import make_session

    for rec in ctx.records.values():
        path = rec.paths["fp32"]
        session = make_session(path)
        io = model_io(session, qtool_metadata(load_model(path)))
        result = evaluate_session(session, io, load_dataset(rec.data, "test"))
        rec.results["fp32_accuracy"] = result.accuracy
        rec.results["test_samples"] = result.samples
        if result.sensitivity is not None:
            rec.results["fp32_sensitivity"] = result.sensitivity


STAGES: list[tuple[str, Stage]] = [
    ("train", stage_train),
    ("export", stage_export),
    ("evaluate", stage_evaluate),
]

COLUMNS: list[Column] = [
    Column("params", "params", fmt_count),
    Column("FLOPs", "flops", fmt_count),
    Column("FP32 size", "fp32_bytes", fmt_bytes),
    Column("FP32 acc", "fp32_accuracy", fmt_pct),
    Column("trained", "trained"),
]


# --- running ---------------------------------------------------------------------------------


def prepare_out_dir(out_dir: Path, force: bool) -> Path:
    """Create the output folder; refuse one holding files unless --force."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise QtoolError(f"demo output {out_dir} is a file; give a folder with --out")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
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
) -> DemoContext:
    """Run every stage over every demo model; write summary.json; return the context."""
    start = time.perf_counter()
    ctx = DemoContext(
        out_dir=prepare_out_dir(Path(out_dir), force),
        seed=seed,
        force=force,
        cache_dir=Path(cache) if cache is not None else None,
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


def summary_table(ctx: DemoContext) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of the final table: model, data, then every `COLUMNS` entry that
    at least one record has a result for."""
    columns = [c for c in COLUMNS if any(c.key in r.results for r in ctx.records.values())]
    rows = []
    for rec in ctx.records.values():
        cells = [rec.name, rec.data]
        for col in columns:
            value = rec.results.get(col.key)
            cells.append("" if value is None else col.fmt(value))
        rows.append(cells)
    return ["model", "data", *(c.header for c in columns)], rows


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
    }
