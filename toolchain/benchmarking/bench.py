"""Latency and energy of several ONNX models on several execution providers, side by side.

For every configuration (intra-op threads x batch) every (model, provider) pair is timed
interleaved, round by round in a seeded order (recorded), on inputs prepared before the clock
starts. The first pair is the baseline: every other gets its median-latency ratio with a
bootstrap 95 % interval, and an energy ratio; with several providers each pair also gets its
ratio against the same model on the first provider. Energy comes from RAPL counters where they
can be read, else from a CPU-time estimate that is labelled as such, with its formula,
wherever it appears. Sessions come from the provider specs (qtool.runtimes.providers), which
pin every provider to the same thread count and precision; the threads each pair really used
are measured (qtool.runtimes.threads), not assumed. With labelled data every pair is also
scored against the CPU provider (qtool.evaluation.providers). A pair whose provider cannot
load the model is left out and reported in `failures`; the others are still measured.
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
    add_provider_ratios,
    add_ratios,
    analytic_result,
    config_result,
    energy_info,
    energy_result,
    mean_idle,
    order_summary,
)
from qtool.errors import QtoolError
from qtool.evaluation.providers import compare_providers
from qtool.machine import cpu_info
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
from qtool.runtimes.providers import ProviderSpec, compared_specs
from qtool.runtimes.session import make_session
from qtool.runtimes.threads import check_pinning
from qtool.runtimes.timing import TIMER, InterleavedRun, measure_interleaved

if TYPE_CHECKING:
    from qtool.data.datasets import Dataset


@dataclass(frozen=True)
class Pair:
    """One model on one provider: a column of every configuration."""

    label: str
    path: Path
    model: int  # index of the model among the bench's models
    spec: ProviderSpec


@dataclass
class _Measured:
    """One configuration as measured, before idle power (taken at the end) is known."""

    threads: int
    batch: int
    pairs: list[Pair]  # no sessions, so none outlives its group
    inputs: list[str]
    raw: InterleavedRun
    windows: list[list[EnergyWindow]]  # per pair
    energy_order: list[list[int]]
    thread_checks: list[dict | None]


def run_bench(
    models: Sequence[str | Path],
    plan: BenchPlan | None = None,
    data: str | Dataset | None = None,
    on_group: Callable[[str], None] | None = None,
) -> BenchResult:
    """Measure every model on every provider in every (threads, batch) configuration.

    `data` is a data set spec (e.g. "digits:val") or a loaded Dataset whose samples feed the
    models' sample input (and, when labelled, score every pair); without it inputs are seeded
    random values. `on_group` hears the label of each configuration before it is measured.
    A pair whose provider cannot load its model is recorded in `failures` and left out; when
    every pair fails, that is bad input (QtoolError).
    """
    plan = plan or BenchPlan()
    plan.check()
    if not models:
        raise QtoolError("give at least one model to bench", param="models")
    specs = compared_specs(plan.providers)
    for spec in specs:
        spec.check_precision(plan.precision)
    paths = [Path(m) for m in models]
    metas = [qtool_metadata(load_model(p)) for p in paths]  # clear errors for bad files
    dataset = _load_data(data)
    energy = _energy_plan(plan)
    pairs = _pairs(paths, specs)
    failures: list[dict] = []
    names = model_names(paths)
    analytic = _analytic(paths, names) if plan.analytic_energy else None  # fails before timing
    idle_before = measure_idle(energy.reader, plan.idle_seconds) if energy.reader else None
    measured = []
    for threads in plan.threads:
        sessions, pairs = _sessions(pairs, metas, threads, plan, failures)
        for batch in plan.batches:
            args = (threads, batch, pairs, sessions, plan, energy, dataset, on_group)
            measured.append(_measure_group(*args))
        del sessions  # idle thread pools of one thread count never overlap the next
    idle_after = measure_idle(energy.reader, plan.idle_seconds) if energy.reader else None
    idle = mean_idle(idle_before, idle_after)
    info = energy_info(
        energy, idle, idle_before, idle_after, plan.energy_window_s, plan.energy_rounds
    )
    return BenchResult(
        models=[str(p) for p in paths],
        baseline=pairs[0].label,
        groups=[_group_result(m, plan, energy, idle) for m in measured],
        settings=plan.settings([s.name for s in specs], _data_spec(data, dataset)),
        energy=info,
        timer=TIMER,
        environment=environment(),
        notes=[
            "every (model, provider) pair measured interleaved round by round in a seeded "
            "random order, so drift hits all alike; each configuration's `order_summary` "
            "records it (the seed regenerates it, a sha256 checks it; every round in `order` "
            "with raw samples)",
            SPINNING_NOTE[plan.spinning],
            f"latency: {TIMER} (session.run on inputs prepared before timing)",
            info["formula"],
            *([] if analytic is None else [ANALYTIC_NOTE]),
        ],
        providers=[s.describe(plan.precision) for s in specs],
        accuracy=_accuracy(pairs, dataset, plan),
        failures=failures,
        analytic=analytic,
    )


def _pairs(paths: list[Path], specs: list[ProviderSpec]) -> list[Pair]:
    """Provider-major pairs, labelled by file name (and provider when there are several)."""
    names = model_names(paths)
    return [
        Pair(f"{name} · {spec.name}" if len(specs) > 1 else name, path, i, spec)
        for spec in specs
        for i, (name, path) in enumerate(zip(names, paths, strict=True))
    ]


def _accuracy(pairs: list[Pair], dataset: Dataset | None, plan: BenchPlan) -> list:
    """Every pair scored against the CPU provider, when the data set has labels."""
    if dataset is None or dataset.y is None:
        return []
    rows = []
    for model in dict.fromkeys(p.model for p in pairs):
        mine = [p for p in pairs if p.model == model]
        rows += compare_providers(
            mine[0].path,
            [p.spec for p in mine],
            dataset,
            threads=plan.threads[0],
            precision=plan.precision,
            max_accuracy_drop=plan.max_accuracy_drop,
            label=mine[0].label.split(" · ")[0],
        )
    return rows


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
    pairs: list[Pair], metas: list[dict], threads: int, plan: BenchPlan, failures: list[dict]
) -> tuple[list[BenchModel], list[Pair]]:
    """One session per pair for one thread count, shared by every batch. A pair whose
    provider cannot load its model goes to `failures` and out of the bench."""
    sessions, kept = [], []
    for pair in pairs:
        try:
            session = make_session(
                pair.path, [pair.spec.name], threads, plan.opt_level, plan.spinning,
                precision=plan.precision,
            )  # fmt: skip
        except QtoolError as exc:
            failures.append(
                {"model": str(pair.path), "provider": pair.spec.name, "error": str(exc)}
            )
            continue
        sessions.append(BenchModel(pair.label, str(pair.path), session, metas[pair.model]))
        kept.append(pair)
    if not kept:
        raise QtoolError("; ".join(f["error"] for f in failures))
    return sessions, kept


def _measure_group(
    threads: int,
    batch: int,
    pairs: list[Pair],
    sessions: list[BenchModel],
    plan: BenchPlan,
    energy: EnergyPlan,
    dataset: Dataset | None,
    on_group: Callable[[str], None] | None,
) -> _Measured:
    """Latency rounds of one configuration, then the threads used, then energy windows."""
    if on_group is not None:
        providers = ", ".join(dict.fromkeys(p.spec.name for p in pairs))
        on_group(f"{providers}, {threads} thread(s), batch {batch}")
    prepared = prepare_sessions(sessions, batch, plan.seed, dataset)
    contenders = [p.contender(batch) for p in prepared]
    seconds = plan.measured_seconds()
    raw = measure_interleaved(contenders, plan.runs, seconds, plan.warmup, plan.seed)
    checks: list[dict | None] = [None] * len(contenders)
    if plan.thread_check_s > 0:
        checks = [
            check_pinning(c, threads, plan.thread_check_s, background=not plan.spinning)
            for c in contenders
        ]
    windows: list[list[EnergyWindow]] = [[] for _ in contenders]
    order: list[list[int]] = []
    if energy.method != "off":
        found, order = energy_windows(
            contenders, plan.energy_window_s, plan.energy_rounds, plan.seed, energy.reader
        )
        for w in found:
            windows[w.contender].append(w)
    inputs = [p.inputs for p in prepared]
    return _Measured(threads, batch, list(pairs), inputs, raw, windows, order, checks)


def _group_result(
    m: _Measured, plan: BenchPlan, energy: EnergyPlan, idle: IdlePower | None
) -> GroupResult:
    """Summaries, energy, threads used and ratios of one measured configuration."""
    configs = [
        config_result(
            str(pair.path), pair.label, (pair.spec, plan.precision, m.threads, m.batch),
            inputs, samples, plan.raw_samples,
        )
        for pair, inputs, samples in zip(m.pairs, m.inputs, m.raw.latencies_ns, strict=True)
    ]  # fmt: skip
    for config, windows, check in zip(configs, m.windows, m.thread_checks, strict=True):
        config.energy = energy_result(energy, m.batch, windows, idle)
        config.threads_used = check
    group = GroupResult(
        providers=list(dict.fromkeys(p.spec.name for p in m.pairs)),
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
    same_model = _same_model_on_first_provider(m.pairs)
    add_provider_ratios(group, samples_ms, same_model, plan.bootstrap_resamples, plan.seed)
    return group


def _same_model_on_first_provider(pairs: list[Pair]) -> list[int | None]:
    """For each pair on another provider, the index of its model's pair on the first one."""
    first = pairs[0].spec.name
    index = {p.model: i for i, p in enumerate(pairs) if p.spec.name == first}
    return [None if p.spec.name == first else index.get(p.model) for p in pairs]


def environment() -> dict:
    """The machine and library versions a reader needs to compare two reports."""
    info = cpu_info()
    return {
        "cpu": info.get("model") or info["processor"],
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
    }
