"""`qtool bench`: latency and energy of several ONNX models side by side, measured honestly.

For every configuration (provider x intra-op threads x batch) the models are timed interleaved,
round by round in a seeded order (recorded), on inputs prepared before the clock starts. The
first model is the baseline; every other gets its median-latency ratio with a bootstrap 95 %
interval, and an energy ratio. Energy comes from RAPL counters where they can be read, else
from a CPU-time estimate that is labelled as such, with its formula, wherever it appears.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from qtool.errors import QtoolError
from qtool.modelfile.load import load_model
from qtool.modelfile.metadata import qtool_metadata
from qtool.runtimes import make_session, resolve_providers
from qtool.runtimes.energy import (
    MIN_RAPL_WINDOW_S,
    EnergyPlan,
    EnergyWindow,
    IdlePower,
    choose_energy,
    energy_windows,
    estimate_formula,
    measure_idle,
    rapl_formula,
)
from qtool.runtimes.timing import (
    TIMER,
    Contender,
    LatencyStats,
    RatioEstimate,
    bootstrap_median_ratio,
    latency_stats,
    measure_interleaved,
)

DEFAULT_SECONDS = 3.0  # per configuration, when neither runs nor seconds is given
DEFAULT_WARMUP = 10
TENSOR_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int16)": np.int16,
    "tensor(uint16)": np.uint16,
    "tensor(int32)": np.int32,
    "tensor(uint32)": np.uint32,
    "tensor(int64)": np.int64,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}
SPINNING_NOTE = {
    False: "thread spinning off (session.intra_op/inter_op.allow_spinning=0): idle ORT threads "
    "sleep instead of burning CPU outside the timed calls",
    True: "thread spinning on: idle ORT threads spin after each call; energy windows run calls "
    "back to back and take all of the process's CPU time (and RAPL energy), so the spinning "
    "is counted",
}


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
    model: str
    name: str
    provider: str
    threads: int
    batch: int
    inputs: str
    latency: LatencyStats
    energy: EnergyResult | None = None
    ratio: RatioResult | None = None
    latencies_ms: list[float] = field(default_factory=list, repr=False)


@dataclass
class GroupResult:
    """One configuration: all models measured interleaved under the same settings."""

    provider: str
    threads: int
    batch: int
    rounds: int
    warmup_rounds: int
    wall_s: float
    order_method: str
    order: list[list[int]]
    configs: list[ConfigResult]
    energy_order: list[list[int]] = field(default_factory=list)


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


@dataclass
class Prepared:
    """A session with its inputs prepared (contiguous arrays of the input dtypes, output names
    resolved), so the timed call is the plain `session.run` a user makes and nothing else.

    (`run_with_ort_values` was measured and rejected: in ORT 1.32 its Python wrapper adds tens
    of microseconds per call, more than a small model's whole inference.)"""

    name: str
    session: ort.InferenceSession
    feeds: dict
    output_names: list[str]
    inputs: str

    def contender(self, items_per_call: int = 1) -> Contender:
        return Contender(
            self.name, self.session.run, (self.output_names, self.feeds), items_per_call
        )


def parse_int_list(text: str | Sequence[int], what: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32]; each must be a positive integer."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        try:
            value = int(str(item).strip())
        except ValueError:
            raise QtoolError(
                f"{what} must be positive integers like 1,8,32; got {text!r}"
            ) from None
        if value < 1:
            raise QtoolError(f"{what} must be positive integers like 1,8,32; got {text!r}")
        out.append(value)
    if not out:
        raise QtoolError(f"{what} needs at least one value")
    return out


def model_names(models: Sequence[Path]) -> list[str]:
    """Short, unique labels: file names, made unique with #2, #3 when repeated."""
    names: list[str] = []
    for path in models:
        base = Path(path).name
        name, k = base, 2
        while name in names:
            name, k = f"{base}#{k}", k + 1
        names.append(name)
    return names


def input_arrays(
    session: ort.InferenceSession,
    model: str,
    batch: int,
    rng: np.random.Generator,
    cache: dict,
    metadata: dict,
    data_x: np.ndarray | None = None,
    data_input: str | None = None,
) -> list[tuple[str, np.ndarray]]:
    """Arrays for every input of a session: data for the sample input when given, else random.

    Symbolic first dimensions become `batch`; a fixed first dimension must equal it. Inputs
    with the same name, type and shape share one array across models, so models compared in
    one configuration see the same values.
    """
    out = []
    declared = metadata.get("input_shape")
    for inp in session.get_inputs():
        if inp.type not in TENSOR_DTYPES:
            raise QtoolError(
                f"{model}: input {inp.name!r} has type {inp.type}; qtool bench feeds numeric "
                "and bool tensors only (no strings, sequences, maps or optionals)"
            )
        shape = _resolve_shape(model, inp.name, list(inp.shape or []), batch, declared)
        dtype = TENSOR_DTYPES[inp.type]
        if data_x is not None and inp.name == data_input:
            out.append((inp.name, np.ascontiguousarray(data_x, dtype=dtype)))
            continue
        key = (inp.name, inp.type, tuple(shape))
        if key not in cache:
            cache[key] = _random_array(rng, dtype, shape)
        out.append((inp.name, cache[key]))
    return out


def _resolve_shape(model: str, name: str, dims: list, batch: int, declared: object) -> list[int]:
    shape = []
    for i, dim in enumerate(dims):
        fixed = isinstance(dim, int) and dim > 0
        if i == 0:
            if fixed and dim != batch:
                raise QtoolError(
                    f"{model}: input {name!r} has a fixed batch of {dim} (shape {dims}), "
                    f"so it cannot run batch {batch}; use --batch {dim} or export the model "
                    "with a dynamic batch dimension"
                )
            shape.append(batch)
        elif fixed:
            shape.append(dim)
        elif (
            isinstance(declared, list)
            and len(declared) == len(dims)
            and isinstance(declared[i], int)
            and declared[i] > 0
        ):
            shape.append(declared[i])
        else:
            raise QtoolError(
                f"{model}: input {name!r} has a symbolic dimension {dim!r} at position {i} "
                f"(shape {dims}) that bench cannot guess; export the model with that "
                "dimension fixed or record qtool.input_shape in its metadata"
            )
    return shape


def _random_array(rng: np.random.Generator, dtype, shape: list[int]) -> np.ndarray:
    """Floats uniform in [0, 1) (image-like); integers 0 or 1 (safe as indices); random bools."""
    if np.issubdtype(dtype, np.floating):
        return rng.random(shape, dtype=np.float64).astype(dtype)
    if dtype is np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    return rng.integers(0, 2, size=shape).astype(dtype)


def _data_batch(x: np.ndarray, batch: int) -> np.ndarray:
    """The first `batch` samples, repeated cyclically when the data set is smaller."""
    return np.take(x, np.arange(batch) % len(x), axis=0)


def prepare_sessions(
    sessions: list[tuple[str, str, ort.InferenceSession, dict]],
    batch: int,
    seed: int,
    dataset=None,
) -> list[Prepared]:
    """Inputs of every session prepared up front and checked by one run, ready to be timed.

    `sessions` holds (label, model path, session, qtool metadata) tuples."""
    from qtool.evaluation.evaluate import model_io

    rng = np.random.default_rng([seed, batch])
    cache: dict = {}
    prepared = []
    for name, path, session, meta in sessions:
        data_x = data_input = None
        source = f"random (seed {seed}): floats U[0,1), integers 0/1"
        if dataset is not None:
            io = model_io(session, meta, output_name=session.get_outputs()[0].name)
            if io.fixed_batch and io.fixed_batch != batch:
                _resolve_shape(path, io.input_name, io.input_shape, batch, None)
            data_x = io.prepare(_data_batch(dataset.x, batch))
            data_input = io.input_name
            source = (
                f"data {dataset.spec} ({dataset.split}), first {batch} samples, "
                f"into {io.input_name!r}"
            )
        arrays = input_arrays(session, path, batch, rng, cache, meta, data_x, data_input)
        feeds = {k: np.ascontiguousarray(v) for k, v in arrays}
        outputs = [o.name for o in session.get_outputs()]
        item = Prepared(name, session, feeds, outputs, source)
        try:
            item.contender()()
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise QtoolError(
                f"ONNX Runtime failed running {path} on {source.split(':')[0]} inputs of batch "
                f"{batch}: {first}; give real inputs with --data"
            ) from exc
        prepared.append(item)
    return prepared


def environment() -> dict:
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


def run_bench(
    models: Sequence[str | Path],
    batches: Sequence[int] = (1,),
    threads: Sequence[int] = (1,),
    providers: Sequence[str] | None = None,
    runs: int | None = None,
    seconds: float | None = None,
    warmup: int = DEFAULT_WARMUP,
    data: str | None = None,
    energy: str = "auto",
    seed: int = 0,
    cpu_watts_per_core: float | None = None,
    opt_level: str = "all",
    spinning: bool = False,
    energy_window_s: float = MIN_RAPL_WINDOW_S,
    energy_rounds: int = 2,
    idle_seconds: float = 1.0,
    bootstrap_resamples: int = 2000,
    powercap_root: str | Path | None = None,
    on_group: Callable[[str], None] | None = None,
    _allow_short: bool = False,
) -> BenchResult:
    """Measure every model in every (provider, threads, batch) configuration, interleaved.

    `runs` is the number of measured rounds per configuration (each model runs once per
    round); `seconds` measures rounds for that long instead (default 3 s when neither is
    given). The first model is the baseline of the ratios. Energy (unless "off") is taken
    after each configuration's latency rounds, over `energy_rounds` windows per model of
    >= `energy_window_s` seconds of back-to-back calls, interleaved in a seeded order.
    """
    if not models:
        raise QtoolError("give at least one model to bench")
    if runs is not None and seconds is not None:
        raise QtoolError("give --runs or --seconds, not both")
    if runs is not None and runs < 2:
        raise QtoolError(f"--runs must be at least 2 (got {runs})")
    if seconds is not None and not seconds > 0:
        raise QtoolError(f"--seconds must be > 0 (got {seconds})")
    if warmup < 0:
        raise QtoolError(f"--warmup must be >= 0 (got {warmup})")
    if runs is None and seconds is None:
        seconds = DEFAULT_SECONDS
    batches = parse_int_list(batches, "--batch")
    threads = parse_int_list(threads, "--threads")
    chosen_providers = resolve_providers(list(providers) if providers else None)
    paths = [Path(m) for m in models]
    protos = [load_model(p) for p in paths]  # clear errors for missing or broken files
    metas = [qtool_metadata(p) for p in protos]
    del protos
    names = model_names(paths)
    if not energy_window_s > 0 or energy_rounds < 1:
        raise QtoolError("energy windows need a positive length and at least one round")
    plan = choose_energy(energy, cpu_watts_per_core, powercap_root)
    if plan.method == "rapl" and energy_window_s < MIN_RAPL_WINDOW_S and not _allow_short:
        raise QtoolError(
            f"RAPL windows must last >= {MIN_RAPL_WINDOW_S:g} s (got {energy_window_s:g} s): "
            "the counters are coarse and count every process on the package"
        )
    dataset = None
    if data is not None:
        from qtool.data.datasets import load_dataset

        dataset = load_dataset(data)
        if len(dataset) == 0:
            raise QtoolError(f"data set {data} is empty; nothing to feed the models")

    idle_before = idle_after = None
    if plan.method == "rapl":
        idle_before = measure_idle(plan.reader, idle_seconds)
    groups: list[GroupResult] = []
    windows: dict[tuple[int, int], list[EnergyWindow]] = {}
    for provider in chosen_providers:
        for n_threads in threads:
            sessions = [
                (
                    name,
                    str(path),
                    make_session(path, [provider], n_threads, opt_level, spinning),
                    meta,
                )
                for name, path, meta in zip(names, paths, metas, strict=True)
            ]
            for batch in batches:
                label = f"{provider}, {n_threads} thread(s), batch {batch}"
                if on_group is not None:
                    on_group(label)
                prepared = prepare_sessions(sessions, batch, seed, dataset)
                contenders = [p.contender(batch) for p in prepared]
                raw = measure_interleaved(contenders, runs, seconds, warmup, seed)
                configs = [
                    ConfigResult(
                        model=path,
                        name=p.name,
                        provider=provider,
                        threads=n_threads,
                        batch=batch,
                        inputs=p.inputs,
                        latency=latency_stats(raw.latencies_ns[i], batch),
                        latencies_ms=[t / 1e6 for t in raw.latencies_ns[i]],
                    )
                    for i, (p, (_, path, _, _)) in enumerate(zip(prepared, sessions, strict=True))
                ]
                energy_order: list[list[int]] = []
                if plan.method != "off":
                    found, energy_order = energy_windows(
                        contenders, energy_window_s, energy_rounds, seed, plan.reader
                    )
                    for w in found:
                        windows.setdefault((len(groups), w.contender), []).append(w)
                groups.append(
                    GroupResult(
                        provider=provider,
                        threads=n_threads,
                        batch=batch,
                        rounds=raw.rounds,
                        warmup_rounds=raw.warmup_rounds,
                        wall_s=raw.wall_s,
                        order_method=raw.order_method,
                        order=raw.order,
                        configs=configs,
                        energy_order=energy_order,
                    )
                )
    if plan.method == "rapl":
        idle_after = measure_idle(plan.reader, idle_seconds)

    idle = _mean_idle(idle_before, idle_after)
    for g, group in enumerate(groups):
        for i, config in enumerate(group.configs):
            config.energy = _energy(plan, config, windows.get((g, i), []), idle)
        _ratios(group, bootstrap_resamples, seed, plan)

    energy_info = _energy_info(plan, idle, idle_before, idle_after, energy_window_s, energy_rounds)
    notes = [
        "models measured interleaved round by round in a seeded random order (recorded per "
        "configuration in `order`), so drift hits all alike",
        SPINNING_NOTE[spinning],
        f"latency: {TIMER} (session.run on inputs prepared before timing)",
        energy_info["formula"],
    ]
    settings = {
        "batches": batches,
        "threads": threads,
        "providers": chosen_providers,
        "runs": runs,
        "seconds": seconds,
        "warmup": warmup,
        "data": data,
        "seed": seed,
        "opt_level": opt_level,
        "spinning": spinning,
        "inter_op_threads": 1,
        "energy_window_s": energy_window_s,
        "energy_rounds": energy_rounds,
        "bootstrap_resamples": bootstrap_resamples,
    }
    return BenchResult(
        models=[str(p) for p in paths],
        baseline=names[0],
        groups=groups,
        settings=settings,
        energy=energy_info,
        timer=TIMER,
        environment=environment(),
        notes=notes,
    )


def _mean_idle(a: IdlePower | None, b: IdlePower | None) -> IdlePower | None:
    if a is None or b is None:
        return a or b
    kinds = set(a.watts) | set(b.watts)
    watts = {k: (a.watts.get(k, 0.0) + b.watts.get(k, 0.0)) / 2 for k in sorted(kinds)}
    return IdlePower(watts, a.seconds + b.seconds)


def _energy(
    plan: EnergyPlan,
    config: ConfigResult,
    windows: list[EnergyWindow],
    idle: IdlePower | None,
) -> EnergyResult | None:
    if plan.method == "off" or not windows:
        return None
    calls = sum(w.calls for w in windows)
    seconds = sum(w.seconds for w in windows)
    cpu_ms = sum(w.cpu_s for w in windows) / calls * 1e3
    common = dict(cpu_ms_per_call=cpu_ms, windows=len(windows), calls=calls, seconds=seconds)
    if plan.method == "estimate":
        mj = cpu_ms / 1e3 * plan.watts_per_core * 1e3
        return EnergyResult(
            method="estimated",
            mj_per_call=mj,
            mj_per_item=mj / config.batch,
            formula=estimate_formula(plan.watts_per_core),
            watts_per_core=plan.watts_per_core,
            **common,
        )
    idle_w = idle.watts if idle else {}
    gross = {k: sum(w.joules.get(k, 0.0) for w in windows) for k in ("package", "dram")}
    net = {k: gross[k] - idle_w.get(k, 0.0) * seconds for k in gross}
    has_dram = any("dram" in w.joules for w in windows)
    mj_call = net["package"] / calls * 1e3
    rapl = {
        "window_seconds": [w.seconds for w in windows],
        "package_gross_mj_per_call": gross["package"] / calls * 1e3,
        "package_idle_w": idle_w.get("package"),
        "package_net_mj_per_call": mj_call,
        "dram_gross_mj_per_call": gross["dram"] / calls * 1e3 if has_dram else None,
        "dram_idle_w": idle_w.get("dram"),
        "dram_net_mj_per_call": net["dram"] / calls * 1e3 if has_dram else None,
        "domains_used": "package (dram reported apart); psys/core/uncore never summed",
    }
    return EnergyResult(
        method="rapl",
        mj_per_call=mj_call,
        mj_per_item=mj_call / config.batch,
        formula=rapl_formula(idle),
        rapl=rapl,
        **common,
    )


def _ratios(group: GroupResult, resamples: int, seed: int, plan: EnergyPlan) -> None:
    base = group.configs[0]
    for config in group.configs[1:]:
        est = bootstrap_median_ratio(base.latencies_ms, config.latencies_ms, resamples, seed)
        energy_ratio, note = None, ""
        if config.energy is not None and base.energy is not None and base.energy.mj_per_item:
            energy_ratio = config.energy.mj_per_item / base.energy.mj_per_item
            note = (
                "estimated: equals the CPU-time ratio of the measured calls"
                if plan.method == "estimate"
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


def _energy_info(
    plan: EnergyPlan,
    idle: IdlePower | None,
    before: IdlePower | None,
    after: IdlePower | None,
    window_s: float,
    rounds: int,
) -> dict:
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
        info.update(label="off", formula="energy not measured (--energy off)")
    info["unit"] = "mJ"
    return info


def _fmt_ms(x: float) -> str:
    return f"{x:.4f}" if x < 0.1 else f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _fmt_mj(x: float) -> str:
    return f"{x:.4g}"


def render_bench(result: BenchResult) -> list:
    """One table per configuration, models side by side as columns (the first is the
    baseline), then the lines saying how each figure was obtained."""
    from qtool.report import table

    method = result.energy.get("method")
    energy_label = {"estimate": "ESTIMATED", "rapl": "RAPL, idle subtracted"}.get(method)
    out: list = []
    for group in result.groups:
        cs = group.configs
        rows = [
            ["p50 latency (ms)", *(_fmt_ms(c.latency.p50_ms) for c in cs)],
            ["p90 (ms)", *(_fmt_ms(c.latency.p90_ms) for c in cs)],
            ["p99 (ms)", *(_fmt_ms(c.latency.p99_ms) for c in cs)],
            [
                "mean ± std (ms)",
                *(f"{_fmt_ms(c.latency.mean_ms)} ± {_fmt_ms(c.latency.std_ms)}" for c in cs),
            ],
            [
                "min – max (ms)",
                *(f"{_fmt_ms(c.latency.min_ms)} – {_fmt_ms(c.latency.max_ms)}" for c in cs),
            ],
            ["throughput (items/s)", *(f"{c.latency.throughput_items_per_s:,.0f}" for c in cs)],
            ["p50 ratio vs baseline", *(_ratio(c, "latency") for c in cs)],
            ["  bootstrap 95 % CI", *(_ratio(c, "ci") for c in cs)],
        ]
        if energy_label:
            rows += [
                [
                    f"energy/item (mJ, {energy_label})",
                    *(_fmt_mj(c.energy.mj_per_item) if c.energy else "" for c in cs),
                ],
                ["energy ratio vs baseline", *(_ratio(c, "energy") for c in cs)],
                [
                    "energy windows: CPU ms/call",
                    *(_fmt_ms(c.energy.cpu_ms_per_call) if c.energy else "" for c in cs),
                ],
            ]
        title = (
            f"{group.provider} · {group.threads} thread(s) · batch {group.batch} · "
            f"{group.rounds} rounds interleaved after {group.warmup_rounds} warm-up"
        )
        out.append(table(title, ["", *(c.name for c in cs)], rows))
    energy = result.energy
    if method == "estimate":
        out.append(f"energy: {energy['formula']} ({energy['watts_per_core_source']}).")
        out.append(f"energy method: {energy['reason']}.")
    elif method == "rapl":
        out.append(f"energy: {energy['formula']}. {energy['reason']}.")
    else:
        out.append("energy: not measured (--energy off).")
    if method in ("estimate", "rapl"):
        out.append(
            "energy windows run each model back to back (warm caches), while latency rounds "
            "alternate the models, so CPU time per call in the windows can be below the p50."
        )
    out.append(f"{SPINNING_NOTE[result.settings['spinning']]}.")
    out.append(
        f"ratios: vs the baseline {result.baseline} (first model); latency ratio = ratio of "
        f"medians, percentile bootstrap over rounds, seed {result.settings['seed']}."
    )
    return out


def _ratio(config: ConfigResult, what: str) -> str:
    r = config.ratio
    if r is None:
        return "baseline" if what != "ci" else ""
    if what == "latency":
        return f"{r.latency_p50_ratio:.3f}"
    if what == "ci":
        lo, hi = r.latency_p50_ratio_ci95
        return f"[{lo:.3f}, {hi:.3f}]"
    return "" if r.energy_ratio is None else f"{r.energy_ratio:.3f}"


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise QtoolError(
            "--plot needs matplotlib, which is not installed: pip install 'qtool[plot]'"
        ) from None


def plot_bench(result: BenchResult, out: str | Path) -> Path:
    """Latency distributions (box plots) and energy per item (bars), written atomically."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from qtool.outputs import atomic_path

    configs = [c for g in result.groups for c in g.configs]
    labels = [
        f"{c.name}\n{c.provider.replace('ExecutionProvider', '')} t{c.threads} b{c.batch}"
        for c in configs
    ]
    has_energy = result.energy.get("method") in ("estimate", "rapl")
    fig = Figure(figsize=(max(6.0, 1.6 * len(configs)) * (2 if has_energy else 1), 4.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if has_energy else 1, squeeze=False)[0]
    ax = axes[0]
    ax.boxplot([c.latencies_ms for c in configs], showfliers=False, whis=(1, 99))
    ax.set_xticks(range(1, len(configs) + 1), labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("latency per call (ms, log scale)")
    ax.set_title("latency (box: p25–p75, line: p50, whiskers: p1–p99)", fontsize=9)
    if has_energy:
        ax = axes[1]
        values = [c.energy.mj_per_item if c.energy else 0.0 for c in configs]
        bars = ax.bar(range(len(configs)), values, color="#4c72b0")
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
        ax.set_xticks(range(len(configs)), labels, fontsize=8)
        if result.energy["method"] == "estimate":
            ax.set_ylabel("energy per item (mJ), ESTIMATED")
            title = (
                "ESTIMATED: energy = process CPU time x "
                f"{result.energy['watts_per_core']:g} W/core\n"
                "(not a measurement; ratio = CPU-time ratio)"
            )
        else:
            ax.set_ylabel("energy per item (mJ), RAPL package")
            title = "measured: RAPL package, idle power subtracted"
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(out)
