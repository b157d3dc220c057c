"""The demo's bench stage: FP32 vs INT8 latency and energy, on OpenVINO too where usable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from qtool.demo.context import (
    DEMO_BENCH_BATCHES,
    DEMO_BENCH_SECONDS,
    DemoContext,
)
from qtool.errors import QtoolError
from qtool.outputs import write_json
from qtool.report import info


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
