"""The demo's model stages: train (or reuse the cache), export with parity, evaluate in
ONNX Runtime, quantise within the accuracy budget."""

from __future__ import annotations

import shutil

from qtool.demo.context import (
    DEMO_ACCURACY_BUDGET_PP,
    DemoContext,
    cache_dir,
    checkpoint_cache_path,
    evaluate_test_split,
)
from qtool.errors import QtoolError
from qtool.outputs import write_json
from qtool.report import info


def stage_train(ctx: DemoContext) -> None:
    """Train each model, or reuse a cached checkpoint; copy it into the output folder."""
    from qtool.from_torch.train import train_zoo_model
    from qtool.models import get_spec
    from qtool.models.checkpoint import load_checkpoint

    root = ctx.cache_dir or cache_dir()
    for rec in ctx.records.values():
        spec = get_spec(rec.model)
        cached = checkpoint_cache_path(root, spec, rec.data, ctx.seed, spec.epochs)
        config, resume = None, None
        if cached.is_file():
            try:
                checkpoint = load_checkpoint(cached)
                # an interrupted earlier demo left a partial run: continue it
                resume = cached if "resume" in checkpoint else None
                config = None if resume else checkpoint["config"]
            except QtoolError as exc:
                ctx.notes.append(f"cached checkpoint {cached} unusable ({exc}); retrained")
        if config is None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            info(f"training {rec.name} on {rec.data} (cached in {cached.parent} afterwards)")
            report = train_zoo_model(
                rec.model, None if resume else rec.data, cached, seed=None if resume else ctx.seed,
                resume=resume, force=True,
            )  # fmt: skip
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


def stage_evaluate(ctx: DemoContext) -> None:
    """FP32 accuracy on the test split, in ONNX Runtime (what a server would run)."""
    for rec in ctx.records.values():
        result = evaluate_test_split(rec.paths["fp32"], rec.data)
        rec.results["fp32_accuracy"] = result.accuracy
        rec.results["test_samples"] = result.samples
        if result.sensitivity is not None:
            rec.results["fp32_sensitivity"] = result.sensitivity


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
            # kept in float: for speed (placement) or for the accuracy budget (fallback)
            float_nodes=len(
                set(report.placement.get("excluded", [])) | set(report.settings.fp32_nodes)
            ),
        )
        ev = evaluate_test_split(out, rec.data)
        write_json(ctx.out_dir / f"{rec.name}.int8.eval.json", {"model": str(out), **vars(ev)})
        rec.paths["int8_eval"] = ctx.out_dir / f"{rec.name}.int8.eval.json"
