"""What a bench reports: per model and configuration the latency summary and histogram, the
energy (measured or estimated, always labelled), and the ratios against the baseline model.

Raw latency samples stay out of the report unless the plan asks for them: a summary and a
histogram say what a reader needs in a few hundred bytes, where every sample of a 3 s run of a
small model is megabytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from qtool.runtimes.energy import (
    EnergyPlan,
    EnergyWindow,
    IdlePower,
    estimate_formula,
    rapl_formula,
)
from qtool.runtimes.providers import ProviderSpec
from qtool.runtimes.timing import (
    LatencyHistogram,
    LatencyStats,
    RatioEstimate,
    bootstrap_median_ratio,
    latency_histogram,
    latency_stats,
)


@dataclass
class EnergyResult:
    """Energy of one configuration; `method` says whether it was measured or estimated."""

    method: str  # "rapl" (measured) or "estimated"
    mj_per_call: float
    mj_per_item: float
    formula: str
    unit: str = "mJ"
    cpu_ms_per_call: float = 0.0
    windows: int = 0
    calls: int = 0
    seconds: float = 0.0
    watts_per_core: float | None = None
    rapl: dict | None = None


@dataclass
class RatioResult:
    """This configuration against the baseline model of the same configuration."""

    baseline: str
    latency_p50_ratio: float
    latency_p50_ratio_ci95: list[float]
    bootstrap: RatioEstimate
    energy_ratio: float | None = None
    energy_ratio_note: str = ""
    definition: str = "median latency of this model / median latency of the baseline"


@dataclass
class ConfigResult:
    """One model on one provider in one configuration.

    `precision` is the mode asked (fp32: reduced precision forbidden; auto: the provider's
    choice) and `precision_detail` what that means on this provider; `threads_used` is the
    measured check of the thread count (qtool.runtimes.threads.pinning_check)."""

    model: str
    name: str
    provider: str  # qtool's name (cpu, openvino)
    ort_provider: str  # onnxruntime's name
    precision: str
    precision_detail: str
    threads: int
    batch: int
    inputs: str
    latency: LatencyStats
    latency_histogram: LatencyHistogram
    energy: EnergyResult | None = None
    ratio: RatioResult | None = None
    provider_ratio: RatioResult | None = None  # vs the same model on the first provider
    threads_used: dict | None = None
    latencies_ms: list[float] | None = field(default=None, repr=False)  # only when asked


@dataclass
class GroupResult:
    """One configuration: every (model, provider) pair measured interleaved under the same
    thread count and batch."""

    providers: list[str]
    threads: int
    batch: int
    rounds: int
    warmup_rounds: int
    wall_s: float
    order_method: str
    order_summary: dict
    configs: list[ConfigResult]
    energy_order: list[list[int]] = field(default_factory=list)
    order: list[list[int]] | None = None  # every round's order, only with the raw samples


@dataclass
class BenchResult:
    models: list[str]
    baseline: str
    groups: list[GroupResult]
    settings: dict
    energy: dict
    timer: str
    environment: dict
    notes: list[str]
    providers: list[dict] = field(default_factory=list)  # the spec of each provider measured
    accuracy: list = field(default_factory=list)  # ProviderAccuracy per pair, with labelled data
    failures: list[dict] = field(default_factory=list)  # pairs a provider could not load
    # kind "analytic": per model, energy per inference (batch 1) by operation counts x a
    # 45 nm table, and its ratio to the baseline's analytic figure; None unless asked for
    analytic: dict | None = None


def analytic_result(bills: dict, baseline: str) -> dict:
    """The analytic figures of a bench, one kind apart: per model the bill, and ratios
    between analytic figures only (never against a measured or estimated one)."""
    base = bills[baseline].pj_per_inference
    any_bill = next(iter(bills.values()))
    return {
        "kind": "analytic",
        "label": any_bill.label,
        "unit": "mJ per inference (batch 1)",
        "source": any_bill.source,
        "memory_choice": any_bill.memory_choice,
        "models": {name: bill.to_dict() for name, bill in bills.items()},
        "mj_per_inference": {name: bill.mj_per_inference for name, bill in bills.items()},
        "ratio_vs_baseline": {
            name: bill.pj_per_inference / base if base else None for name, bill in bills.items()
        },
    }


def config_result(
    model: str,
    name: str,
    group: tuple[ProviderSpec, str, int, int],
    inputs: str,
    samples_ns: list[int],
    raw_samples: bool,
) -> ConfigResult:
    """Summary and histogram of one pair's latencies; the samples only when asked.
    `group` is (provider spec, precision mode, threads, batch)."""
    spec, precision, threads, batch = group
    return ConfigResult(
        model=model,
        name=name,
        provider=spec.name,
        ort_provider=spec.ort_name,
        precision=precision,
        precision_detail=spec.precision_modes.get(precision, spec.precision),
        threads=threads,
        batch=batch,
        inputs=inputs,
        latency=latency_stats(samples_ns, batch),
        latency_histogram=latency_histogram(samples_ns),
        latencies_ms=[t / 1e6 for t in samples_ns] if raw_samples else None,
    )


def order_summary(order: list[list[int]], models: int, warmup: int, seed: int) -> dict:
    """The round order of a configuration in a few fields: it is drawn from a seeded stream,
    so the seed regenerates it and the digest checks the regenerated one."""
    first = np.bincount([o[0] for o in order], minlength=models) if order else []
    return {
        "rounds": len(order),
        "first_counts": [int(c) for c in first],
        "sha256": hashlib.sha256(json.dumps(order).encode()).hexdigest(),
        "sha256_of": "json.dumps of the list of per-round orders",
        "regenerate": f"list(itertools.islice(qtool.runtimes.timing.round_orders({models}, "
        f"{seed}), {warmup}, {warmup + len(order)}))",
    }


def mean_idle(a: IdlePower | None, b: IdlePower | None) -> IdlePower | None:
    """Idle power before and after the bench, averaged per kind."""
    if a is None or b is None:
        return a or b
    kinds = set(a.watts) | set(b.watts)
    watts = {k: (a.watts.get(k, 0.0) + b.watts.get(k, 0.0)) / 2 for k in sorted(kinds)}
    return IdlePower(watts, a.seconds + b.seconds)


def energy_result(
    plan: EnergyPlan, batch: int, windows: list[EnergyWindow], idle: IdlePower | None
) -> EnergyResult | None:
    """Energy per call and item of one model over its windows, measured or estimated."""
    if plan.method == "off" or not windows:
        return None
    calls = sum(w.calls for w in windows)
    cpu_ms = sum(w.cpu_s for w in windows) / calls * 1e3
    common = dict(
        cpu_ms_per_call=cpu_ms,
        windows=len(windows),
        calls=calls,
        seconds=sum(w.seconds for w in windows),
    )
    if plan.method == "estimate":
        mj = cpu_ms / 1e3 * plan.watts_per_core * 1e3
        return EnergyResult(
            method="estimated",
            mj_per_call=mj,
            mj_per_item=mj / batch,
            formula=estimate_formula(plan.watts_per_core),
            watts_per_core=plan.watts_per_core,
            **common,
        )
    rapl = _rapl_figures(windows, idle, calls, common["seconds"])
    mj_call = rapl["package_net_mj_per_call"]
    return EnergyResult(
        method="rapl",
        mj_per_call=mj_call,
        mj_per_item=mj_call / batch,
        formula=rapl_formula(idle),
        rapl=rapl,
        **common,
    )


def _rapl_figures(
    windows: list[EnergyWindow], idle: IdlePower | None, calls: int, seconds: float
) -> dict:
    """Gross, idle and net RAPL energy per call: package, and dram apart where present."""
    idle_w = idle.watts if idle else {}
    gross = {k: sum(w.joules.get(k, 0.0) for w in windows) for k in ("package", "dram")}
    net = {k: gross[k] - idle_w.get(k, 0.0) * seconds for k in gross}
    has_dram = any("dram" in w.joules for w in windows)
    return {
        "window_seconds": [w.seconds for w in windows],
        "package_gross_mj_per_call": gross["package"] / calls * 1e3,
        "package_idle_w": idle_w.get("package"),
        "package_net_mj_per_call": net["package"] / calls * 1e3,
        "dram_gross_mj_per_call": gross["dram"] / calls * 1e3 if has_dram else None,
        "dram_idle_w": idle_w.get("dram"),
        "dram_net_mj_per_call": net["dram"] / calls * 1e3 if has_dram else None,
        "domains_used": "package (dram reported apart); psys/core/uncore never summed",
    }


def add_ratios(
    group: GroupResult,
    samples_ms: list[np.ndarray],
    resamples: int,
    seed: int,
    method: str,
) -> None:
    """Latency (bootstrap over rounds) and energy ratios of every model against the first."""
    base = group.configs[0]
    for config, samples in zip(group.configs[1:], samples_ms[1:], strict=True):
        est = bootstrap_median_ratio(samples_ms[0], samples, resamples, seed)
        energy_ratio, note = None, ""
        if config.energy is not None and base.energy is not None and base.energy.mj_per_item:
            energy_ratio = config.energy.mj_per_item / base.energy.mj_per_item
            note = (
                "estimated: equals the CPU-time ratio of the measured calls"
                if method == "estimate"
                else "measured: RAPL package energy per item, idle subtracted"
            )
        config.ratio = RatioResult(
            baseline=base.name,
            latency_p50_ratio=est.ratio,
            latency_p50_ratio_ci95=[est.ci95_low, est.ci95_high],
            bootstrap=est,
            energy_ratio=energy_ratio,
            energy_ratio_note=note,
        )


def add_provider_ratios(
    group: GroupResult,
    samples_ms: list[np.ndarray],
    baselines: list[int | None],
    resamples: int,
    seed: int,
) -> None:
    """Latency ratio of each pair against the same model on the first provider (index in
    `baselines`; None for the first provider's own pairs), from the same interleaved rounds."""
    for config, samples, base in zip(group.configs, samples_ms, baselines, strict=True):
        if base is None:
            continue
        est = bootstrap_median_ratio(samples_ms[base], samples, resamples, seed)
        config.provider_ratio = RatioResult(
            baseline=group.configs[base].name,
            latency_p50_ratio=est.ratio,
            latency_p50_ratio_ci95=[est.ci95_low, est.ci95_high],
            bootstrap=est,
            definition="median latency of this pair / median latency of the same model on "
            "the first provider",
        )


def energy_info(
    plan: EnergyPlan,
    idle: IdlePower | None,
    before: IdlePower | None,
    after: IdlePower | None,
    window_s: float,
    rounds: int,
) -> dict:
    """How energy was obtained, in the report's words: method, label, formula, assumptions."""
    info: dict = {"requested": plan.requested, "method": plan.method, "reason": plan.reason}
    if plan.method != "off":
        info["windows"] = (
            f"{rounds} window(s) per model and configuration of >= {window_s:g} s of "
            "back-to-back calls, interleaved in a seeded order (recorded in energy_order)"
        )
    if plan.method == "estimate":
        info.update(
            label="estimated",
            formula=estimate_formula(plan.watts_per_core),
            watts_per_core=plan.watts_per_core,
            watts_per_core_source=plan.watts_per_core_source,
            assumptions="each busy CPU-second draws TDP / physical cores; idle, uncore and "
            "DRAM power are not included; the energy ratio equals the CPU-time ratio",
        )
    elif plan.method == "rapl":
        info.update(
            label="measured (RAPL)",
            formula=rapl_formula(idle),
            idle_w=idle.watts if idle else None,
            idle_before_w=before.watts if before else None,
            idle_after_w=after.watts if after else None,
            idle_seconds=idle.seconds if idle else None,
        )
    else:
        info.update(label="off", formula="energy not measured (energy method off)")
    info["unit"] = "mJ"
    return info
