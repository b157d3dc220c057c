"""Latency and energy of several ONNX models side by side, measured honestly.

For every configuration (provider x intra-op threads x batch) the models are timed interleaved,
round by round in a seeded order (recorded), on inputs prepared before the clock starts. The
first model is the baseline: every other gets its median-latency ratio with a bootstrap 95 %
interval, and an energy ratio. Energy comes from RAPL counters where they can be read, else
from a CPU-time estimate that is labelled as such, with its formula, wherever it appears.
Sessions come from the provider specs (qtool.runtimes.providers), which pin threads alike.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

from qtool.benchmarking.inputs import BenchModel, model_names, prepare_sessions
from qtool.benchmarking.plan import SPINNING_NOTE, BenchPlan
from qtool.benchmarking.results import (
    BenchResult,
    GroupResult,
    add_ratios,
    analytic_result,
    config_result,
    energy_info,
    energy_result,
    mean_idle,
    order_summary,
)
from qtool.errors import QtoolError
from qtool.modelfile.load import load_model
from qtool.modelfile.metadata import qtool_metadata
from qtool.runtimes.analytic_energy import analytic_energy
from qtool.runtimes.energy import (
    MIN_RAPL_WINDOW_S,
    EnergyPlan,
    EnergyWindow,
    IdlePower,
    choose_energy,
    energy_windows,
    measure_idle,
)
from qtool.runtimes.providers import ProviderSpec, provider_specs
from qtool.runtimes.session import make_session
from qtool.runtimes.timing import TIMER, InterleavedRun, measure_interleaved

if TYPE_CHECKING:
    from qtool.data.datasets import Dataset


@dataclass
class _Measured:
    """One configuration as measured, before idle power (taken at the end) is known."""

    spec: ProviderSpec
    threads: int
    batch: int
    models: list[tuple[str, str]]  # (label, path): no sessions, so none outlives its group
    inputs: list[str]
    raw: InterleavedRun
    windows: list[list[EnergyWindow]]  # per model
    energy_order: list[list[int]]


def run_bench(
    models: Sequence[str | Path],
    plan: BenchPlan | None = None,
    data: str | Dataset | None = None,
    on_group: Callable[[str], None] | None = None,
) -> BenchResult:
    """Measure every model in every (provider, threads, batch) configuration of the plan.

    `data` is a data set spec (e.g. "digits:val") or a loaded Dataset whose samples feed the
    models' sample input; without it inputs are seeded random values. `on_group` hears the
    label of each configuration before it is measured.
    """
    plan = plan or BenchPlan()
    plan.check()
    if not models:
        raise QtoolError("give at least one model to bench", param="models")
    specs = provider_specs(plan.providers)
    paths = [Path(m) for m in models]
    metas = [qtool_metadata(load_model(p)) for p in paths]  # clear errors for bad files
    dataset = _load_data(data)
    energy = _energy_plan(plan)
    names = model_names(paths)
    analytic = _analytic(paths, names) if plan.analytic_energy else None  # fails before timing
    idle_before = measure_idle(energy.reader, plan.idle_seconds) if energy.reader else None
    measured = []
    for spec in specs:
        for threads in plan.threads:
            sessions = _sessions(paths, metas, spec, threads, plan)
            for batch in plan.batches:
                args = (spec, threads, batch, sessions, plan, energy, dataset, on_group)
                measured.append(_measure_group(*args))
            del sessions  # idle thread pools of one thread count never overlap the next
    idle_after = measure_idle(energy.reader, plan.idle_seconds) if energy.reader else None
    idle = mean_idle(idle_before, idle_after)
    info = energy_info(
        energy, idle, idle_before, idle_after, plan.energy_window_s, plan.energy_rounds
    )
    return BenchResult(
        models=[str(p) for p in paths],
        baseline=names[0],
        groups=[_group_result(m, plan, energy, idle) for m in measured],
        settings=plan.settings([s.ort_name for s in specs], _data_spec(data, dataset)),
        energy=info,
        timer=TIMER,
        environment=environment(),
        notes=[
            "models measured interleaved round by round in a seeded random order, so drift "
            "hits all alike; each configuration's `order_summary` records it (the seed "
            "regenerates it, a sha256 checks it; every round in `order` with raw samples)",
            SPINNING_NOTE[plan.spinning],
            f"latency: {TIMER} (session.run on inputs prepared before timing)",
            info["formula"],
            *([] if analytic is None else [ANALYTIC_NOTE]),
        ],
        providers=[s.describe() for s in specs],
        analytic=analytic,
    )


ANALYTIC_NOTE = (
    "analytic energy: operation counts by executed dtype x Horowitz's 45 nm table, per "
    "inference at batch 1; a different kind from measured or estimated energy, never compared "
    "with them as if alike"
)


def _analytic(paths: list[Path], names: list[str]) -> dict:
    """The analytic bill of every model, on the CPU provider's graph (the table prices CPU
    arithmetic; other providers fuse differently)."""
    bills = {}
    for name, path in zip(names, paths, strict=True):
        try:
            bills[name] = analytic_energy(path)
        except QtoolError as exc:
            raise QtoolError(f"analytic energy of {path}: {exc}", param="energy") from exc
    return analytic_result(bills, names[0])


def _load_data(data: str | Dataset | None) -> Dataset | None:
    """A data set from its spec (or as given), refusing an empty one."""
    if data is None or not isinstance(data, str):
        dataset = data
    else:
        from qtool.data.datasets import load_dataset

        dataset = load_dataset(data)
    if dataset is not None and len(dataset) == 0:
        raise QtoolError(f"data set {dataset.spec} is empty; nothing to feed the models")
    return dataset


def _data_spec(data: str | Dataset | None, dataset: Dataset | None) -> str | None:
    return data if isinstance(data, str) or data is None else dataset.spec


def _energy_plan(plan: BenchPlan) -> EnergyPlan:
    """The energy method resolved (auto -> rapl or estimate); RAPL needs windows >= 1 s."""
    energy = choose_energy(plan.energy, plan.cpu_watts_per_core, plan.powercap_root)
    short = plan.energy_window_s < MIN_RAPL_WINDOW_S and not plan.allow_short_rapl_windows
    if energy.method == "rapl" and short:
        raise QtoolError(
            f"RAPL windows must last >= {MIN_RAPL_WINDOW_S:g} s (got {plan.energy_window_s:g} "
            "s): the counters are coarse and count every process on the package",
            param="energy_window",
        )
    return energy


def _sessions(
    paths: list[Path], metas: list[dict], spec: ProviderSpec, threads: int, plan: BenchPlan
) -> list[BenchModel]:
    """One session per model for one provider and thread count, shared by every batch."""
    return [
        BenchModel(
            name,
            str(path),
            make_session(path, [spec.name], threads, plan.opt_level, plan.spinning),
            meta,
        )
        for name, path, meta in zip(model_names(paths), paths, metas, strict=True)
    ]


def _measure_group(
    spec: ProviderSpec,
    threads: int,
    batch: int,
    sessions: list[BenchModel],
    plan: BenchPlan,
    energy: EnergyPlan,
    dataset: Dataset | None,
    on_group: Callable[[str], None] | None,
) -> _Measured:
    """Latency rounds of one configuration, then its energy windows."""
    if on_group is not None:
        on_group(f"{spec.ort_name}, {threads} thread(s), batch {batch}")
    prepared = prepare_sessions(sessions, batch, plan.seed, dataset)
    contenders = [p.contender(batch) for p in prepared]
    seconds = plan.measured_seconds()
    raw = measure_interleaved(contenders, plan.runs, seconds, plan.warmup, plan.seed)
    windows: list[list[EnergyWindow]] = [[] for _ in contenders]
    order: list[list[int]] = []
    if energy.method != "off":
        found, order = energy_windows(
            contenders, plan.energy_window_s, plan.energy_rounds, plan.seed, energy.reader
        )
        for w in found:
            windows[w.contender].append(w)
    models = [(s.name, s.path) for s in sessions]
    inputs = [p.inputs for p in prepared]
    return _Measured(spec, threads, batch, models, inputs, raw, windows, order)


def _group_result(
    m: _Measured, plan: BenchPlan, energy: EnergyPlan, idle: IdlePower | None
) -> GroupResult:
    """Summaries, energy and ratios of one measured configuration."""
    key = (m.spec.ort_name, m.threads, m.batch)
    configs = [
        config_result(path, name, key, inputs, samples, plan.raw_samples)
        for (name, path), inputs, samples in zip(
            m.models, m.inputs, m.raw.latencies_ns, strict=True
        )
    ]
    for config, windows in zip(configs, m.windows, strict=True):
        config.energy = energy_result(energy, m.batch, windows, idle)
    group = GroupResult(
        provider=m.spec.ort_name,
        threads=m.threads,
        batch=m.batch,
        rounds=m.raw.rounds,
        warmup_rounds=m.raw.warmup_rounds,
        wall_s=m.raw.wall_s,
        order_method=m.raw.order_method,
        order_summary=order_summary(m.raw.order, len(configs), m.raw.warmup_rounds, plan.seed),
        configs=configs,
        energy_order=m.energy_order,
        order=m.raw.order if plan.raw_samples else None,
    )
    samples_ms = [np.asarray(ns, dtype=np.float64) / 1e6 for ns in m.raw.latencies_ns]
    add_ratios(group, samples_ms, plan.bootstrap_resamples, plan.seed, energy.method)
    return group


def environment() -> dict:
    """The machine and library versions a reader needs to compare two reports."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
    }
