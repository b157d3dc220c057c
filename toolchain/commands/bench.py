"""`qtool bench`: latency and energy of ONNX models side by side (e.g. FP32 vs INT8)."""

from __future__ import annotations

from pathlib import Path

import click

from qtool.benchmarking.bench import run_bench
from qtool.benchmarking.plan import DEFAULT_THREAD_CHECK_S, BenchPlan
from qtool.commands.bench_views import (
    plot_bench,
    render_bench,
    render_providers,
    require_matplotlib,
)
from qtool.commands.options import (
    check_outputs,
    force_option,
    int_list,
    json_option,
    split_list,
    write_json_report,
)
from qtool.errors import QtoolError
from qtool.report import info, show
from qtool.runtimes.analytic_energy import KIND as ANALYTIC
from qtool.runtimes.energy import ENERGY_METHODS, WATTS_PER_CORE_SOURCE
from qtool.runtimes.providers import DEFAULT_PRECISION, PRECISIONS
from qtool.runtimes.providers import list_providers as known_providers
from qtool.runtimes.session import OPT_LEVELS


@click.command("bench")
@click.argument("models", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--batch", "batches", default="1", show_default=True, help="Batch sizes, e.g. 1,8,32."
)
@click.option("--threads", default="1", show_default=True, help="Intra-op thread counts, e.g. 1,2.")
@click.option(
    "--provider",
    "--providers",
    "providers",
    multiple=True,
    help="Execution providers to compare, e.g. cpu (default) or cpu,openvino: every model "
    "runs on each, interleaved; see --list-providers.",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=DEFAULT_PRECISION,
    show_default=True,
    help="fp32: forbid reduced precision (e.g. OpenVINO's bf16 on AMX/AVX512_BF16 CPUs); "
    "auto: each provider's own choice (recorded).",
)
@click.option(
    "--max-accuracy-drop",
    type=click.FloatRange(min=0),
    default=None,
    help="With --data: flag a provider whose accuracy is more than this many percentage "
    "points below the CPU provider's on the same model.",
)
@click.option("--runs", type=int, default=None, help="Measured rounds per configuration.")
@click.option(
    "--seconds",
    type=float,
    default=None,
    help="Measure for this long per configuration instead (default 3 s if no --runs).",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Warm-up rounds, discarded.",
)
@click.option(
    "--data",
    "data",
    default=None,
    help="Feed samples of this data set (e.g. digits) instead of random inputs.",
)
@click.option(
    "--energy",
    default="auto",
    show_default=True,
    help="rapl: Linux powercap counters; estimate: CPU time x W/core (labelled estimated); "
    "auto: rapl where readable, else estimate; off. Add analytic (e.g. auto,analytic) for "
    "the analytic figure beside it: operation counts x a 45 nm table, labelled analytic.",
)
@click.option(
    "--cpu-watts-per-core",
    type=float,
    default=None,
    help=f"Watts per busy core for --energy estimate [{WATTS_PER_CORE_SOURCE}].",
)
@click.option(
    "--energy-window",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Seconds per energy window of back-to-back calls (rapl needs >= 1).",
)
@click.option(
    "--energy-rounds",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Energy windows per model and configuration (interleaved).",
)
@click.option(
    "--thread-check",
    "thread_check_s",
    type=click.FloatRange(min=0),
    default=DEFAULT_THREAD_CHECK_S,
    show_default=True,
    help="Seconds of back-to-back calls per model and configuration that measure the "
    "threads really used (CPU time per OS thread); 0 skips the check.",
)
@click.option(
    "--opt-level",
    type=click.Choice(list(OPT_LEVELS)),
    default="all",
    show_default=True,
    help="ONNX Runtime graph optimisation level.",
)
@click.option(
    "--spinning/--no-spinning",
    default=False,
    show_default=True,
    help="ORT thread spinning (off: idle threads do not burn CPU outside the timed calls).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the random inputs, round order and bootstrap.",
)
@json_option
@click.option(
    "--raw-samples",
    is_flag=True,
    help="Keep every latency sample in the --json report (megabytes; default: summaries "
    "and a log-spaced histogram per model and configuration).",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write latency box plots and energy bars to this PNG.",
)
@force_option
@click.option(
    "--list-providers",
    is_flag=True,
    help="List every execution provider qtool knows, usable here or why not, and exit.",
)
def command(
    models: tuple[Path, ...],
    batches: str,
    threads: str,
    providers: tuple[str, ...],
    precision: str,
    max_accuracy_drop: float | None,
    runs: int | None,
    seconds: float | None,
    warmup: int,
    data: str | None,
    energy: str,
    cpu_watts_per_core: float | None,
    energy_window: float,
    energy_rounds: int,
    thread_check_s: float,
    opt_level: str,
    spinning: bool,
    seed: int,
    json_path: Path | None,
    raw_samples: bool,
    plot_path: Path | None,
    force: bool,
    list_providers: bool,
) -> None:
    """Latency (p50/p90/p99, throughput) and energy per inference of MODELs, side by side.

    Every MODEL on every --provider is timed interleaved, round by round in a seeded random
    order, so machine drift hits all alike. The first MODEL on the first provider is the
    baseline: the others get the ratio of median latencies with a bootstrap 95 % interval,
    and an energy ratio; with several providers, also the ratio against the same MODEL on
    the first provider. Every provider is pinned to the same --threads (OpenVINO through its
    own INFERENCE_NUM_THREADS) and the threads each really used are measured. With --data,
    every MODEL is also scored on each provider against the CPU provider (accuracy, top-1
    agreement). A provider that cannot load a MODEL is reported in one line (exit 2) after
    the other results are printed and written.

    \b
    Energy (mJ per item):
      rapl      Linux powercap counters, package domain (dram apart), over >= 1 s
                windows of back-to-back calls, idle power subtracted; needs read
                access to energy_uj (root).
      estimate  process CPU time over the same windows x W per core, labelled
                "estimated": not a measurement; its ratio equals the CPU-time ratio.
      auto      rapl where readable, otherwise estimate (the output says which and why).
      off       latency only.
      analytic  added to one of the above (auto,analytic; alone it means auto,analytic):
                per model, energy of one inference at batch 1 from operation counts
                by the dtype ONNX Runtime runs them in x Horowitz's 45 nm table (ISSCC
                2014). Shown in its own rows, labelled ANALYTIC: a model of the
                arithmetic, not a measurement, never set against the measured figure.
    Energy windows run after each configuration's latency rounds, so they add
    about (models x --energy-rounds x --energy-window) seconds per configuration.

    \b
    Examples:
      qtool bench model.onnx model.int8.onnx
      qtool bench fp32.onnx int8.onnx --batch 1,32 --threads 1,2 --seconds 5 --json b.json
      qtool bench model.onnx --data digits --runs 500 --plot bench.png
      qtool bench cnn.onnx cnn.int8.onnx --provider cpu,openvino --batch 1,32 --data digits
      qtool bench fp32.onnx int8.onnx --energy auto,analytic
      qtool bench --list-providers
    """
    if list_providers:
        check_outputs(force, json_path=json_path)
        rows = known_providers()
        show(*render_providers(rows))
        write_json_report(json_path, {"providers": [r.to_dict() for r in rows]})
        return
    if not models:
        raise QtoolError("give at least one MODEL to bench (e.g. qtool bench fp32.onnx int8.onnx)")
    measured, analytic = energy_kinds(energy)
    plan = BenchPlan(
        batches=int_list(batches, "batch"),
        threads=int_list(threads, "threads"),
        providers=split_list(providers) or ["cpu"],
        precision=precision,
        max_accuracy_drop=max_accuracy_drop,
        runs=runs,
        seconds=seconds,
        warmup=warmup,
        energy=measured,
        analytic_energy=analytic,
        cpu_watts_per_core=cpu_watts_per_core,
        energy_window_s=energy_window,
        energy_rounds=energy_rounds,
        thread_check_s=thread_check_s,
        opt_level=opt_level,
        spinning=spinning,
        seed=seed,
        raw_samples=raw_samples,
    )
    check_outputs(force, models, json_path=json_path, plot_path=plot_path)
    if plot_path is not None:
        require_matplotlib()
    result = run_bench(
        list(models), plan, data=data, on_group=lambda label: info(f"measuring {label} ...")
    )
    show(*render_bench(result))
    write_json_report(json_path, result)
    if plot_path is not None:
        plot_bench(result, plot_path)
        info(f"plot written to {plot_path}")
    if result.failures:  # after the other pairs' results are shown and written
        raise QtoolError("\n".join(f["error"] for f in result.failures))


def energy_kinds(text: str) -> tuple[str, bool]:
    """'auto,analytic' -> ("auto", True): at most one measured/estimated method (auto when
    none is named) and whether the analytic figure goes beside it."""
    items = split_list(text)
    methods = [i for i in items if i != ANALYTIC]
    unknown = [i for i in methods if i not in ENERGY_METHODS]
    if unknown or len(methods) > 1 or not items:
        raise click.BadParameter(
            f"{text!r}: give one of {', '.join(ENERGY_METHODS)}, optionally with ,{ANALYTIC} "
            f"(e.g. auto,{ANALYTIC}), or {ANALYTIC} alone (= auto,{ANALYTIC})",
            param_hint="--energy",
        )
    return (methods[0] if methods else "auto"), ANALYTIC in items
