"""What `qtool bench` prints and draws: one table per configuration, the provider list, and
the latency histograms and energy bars of the plot. Everything is drawn from the report
(summaries and histograms), so a saved --json report could be drawn the same way."""

from __future__ import annotations

from pathlib import Path

from qtool.benchmarking.plan import SPINNING_NOTE
from qtool.benchmarking.results import BenchResult, ConfigResult, RatioResult
from qtool.errors import MissingExtra
from qtool.report import table
from qtool.runtimes.providers import ProviderStatus


def _fmt_ms(x: float) -> str:
    return f"{x:.4f}" if x < 0.1 else f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _fmt_mj(x: float) -> str:
    return f"{x:.4g}"


def _ratio(config: ConfigResult, what: str, r: RatioResult | None = None) -> str:
    r = r if r is not None else config.ratio
    if r is None:
        return "baseline" if what != "ci" else ""
    if what == "latency":
        return f"{r.latency_p50_ratio:.3f}"
    if what == "ci":
        lo, hi = r.latency_p50_ratio_ci95
        return f"[{lo:.3f}, {hi:.3f}]"
    return "" if r.energy_ratio is None else f"{r.energy_ratio:.3f}"


def _threads_used(config: ConfigResult) -> str:
    """Measured threads: busy threads of the pinned count, flagged when more were used."""
    check = config.threads_used
    if not check:
        return ""
    busy = check["busy_threads"]
    if check["pinned"] is None:
        return f"CPU/wall {check['cpu_per_wall']:.2f} (per-thread times unreadable)"
    mark = "ok" if check["pinned"] else "NOT PINNED"
    workers = check["busy_besides_caller"]
    return f"{busy} busy ({workers} besides caller), CPU/wall {check['cpu_per_wall']:.2f} ({mark})"


def _provider_rows(cs: list[ConfigResult], first: str) -> list[list[str]]:
    """With several providers: each pair against the same model on the first provider."""

    def cell(c: ConfigResult, what: str) -> str:
        if c.provider_ratio is None:
            return "" if what == "ci" else ("—" if c.provider == first else "")
        return _ratio(c, what, c.provider_ratio)

    return [
        [f"p50 ratio vs same model on {first}", *(cell(c, "latency") for c in cs)],
        ["  bootstrap 95 % CI", *(cell(c, "ci") for c in cs)],
    ]


def _latency_rows(cs: list[ConfigResult]) -> list[list[str]]:
    return [
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


def _energy_rows(cs: list[ConfigResult], label: str) -> list[list[str]]:
    return [
        [
            f"energy/item (mJ, {label})",
            *(_fmt_mj(c.energy.mj_per_item) if c.energy else "" for c in cs),
        ],
        ["energy ratio vs baseline", *(_ratio(c, "energy") for c in cs)],
        [
            "energy windows: CPU ms/call",
            *(_fmt_ms(c.energy.cpu_ms_per_call) if c.energy else "" for c in cs),
        ],
    ]


def _analytic_rows(cs: list[ConfigResult], analytic: dict | None) -> list[list[str]]:
    """The analytic kind in rows of its own: per inference at batch 1, whatever the
    configuration, with ratios between analytic figures only."""
    if not analytic:
        return []
    mj, ratio = analytic["mj_per_inference"], analytic["ratio_vs_baseline"]
    models = [c.name.split(" · ")[0] for c in cs]  # pair labels are "model · provider"
    base = next(iter(mj))
    return [
        ["energy/inference (mJ, ANALYTIC)", *(_fmt_mj(mj[m]) for m in models)],
        [
            "analytic ratio vs baseline",
            *("baseline" if m == base else f"{ratio[m]:.3f}" for m in models),
        ],
    ]


def render_bench(result: BenchResult) -> list:
    """One table per configuration, models side by side as columns (the first is the
    baseline), then the lines saying how each figure was obtained."""
    method = result.energy.get("method")
    energy_label = {"estimate": "ESTIMATED", "rapl": "RAPL, idle subtracted"}.get(method)
    out: list = []
    for group in result.groups:
        cs = group.configs
        rows = [["provider · precision", *(f"{c.provider} · {c.precision}" for c in cs)]]
        rows += _latency_rows(cs)
        if len(group.providers) > 1:
            rows += _provider_rows(cs, group.providers[0])
        rows += _energy_rows(cs, energy_label) if energy_label else []
        if any(c.threads_used for c in cs):
            rows.append(["threads used (measured)", *(_threads_used(c) for c in cs)])
        rows += _analytic_rows(cs, result.analytic)
        title = (
            f"{group.threads} thread(s) · batch {group.batch} · "
            f"{group.rounds} rounds interleaved after {group.warmup_rounds} warm-up"
        )
        out.append(table(title, ["", *(c.name for c in cs)], rows))
    if len(result.groups) > 1:
        out.append(_ratio_table(result))
    if result.accuracy:
        out.append(_accuracy_table(result))
    return out + _method_lines(result, method)


def _ratio_table(result: BenchResult) -> object:
    """Every configuration's median-latency ratios against its baseline, in one table."""
    names = list(dict.fromkeys(c.name for g in result.groups for c in g.configs))
    rows = []
    for group in result.groups:
        by_name = {c.name: c for c in group.configs}
        cells = []
        for name in names:
            c = by_name.get(name)
            cells.append("" if c is None else f"{_ratio(c, 'latency')} {_ratio(c, 'ci')}".strip())
        rows.append([f"{group.threads} thread(s), batch {group.batch}", *cells])
    title = f"p50 latency ratio vs {result.baseline} [bootstrap 95 % CI]"
    return table(title, ["configuration", *names], rows)


def _accuracy_table(result: BenchResult) -> object:
    """Each model on each provider, scored against the CPU provider on the same model."""
    rows = []
    for a in result.accuracy:
        if a.within_budget is None:
            flag = ""
        else:
            flag = "ok" if a.within_budget else f"OUTSIDE {a.max_accuracy_drop_pp:g} pp"
        rows.append(
            [
                a.model,
                f"{a.provider} · {a.precision}",
                f"{100 * a.accuracy:.2f} %",
                f"{a.accuracy_drop_pp:+.2f}",
                f"{100 * a.top1_agreement_with_cpu:.2f} %",
                f"{a.max_abs_score_diff_vs_cpu:.2g}",
                flag,
            ]
        )
    first = result.accuracy[0]
    title = f"accuracy per provider on {first.data}, {first.samples} samples (vs the CPU provider)"
    columns = [
        "model", "provider · precision", "accuracy", "drop vs cpu (pp)", "top-1 agree",
        "max |score diff|", "budget",
    ]  # fmt: skip
    return table(title, columns, rows)


def _method_lines(result: BenchResult, method: str | None) -> list[str]:
    energy = result.energy
    if method == "estimate":
        out = [
            f"energy: {energy['formula']} ({energy['watts_per_core_source']}).",
            f"energy method: {energy['reason']}.",
        ]
    elif method == "rapl":
        out = [f"energy: {energy['formula']}. {energy['reason']}."]
    else:
        out = ["energy: not measured (--energy off)."]
    if method in ("estimate", "rapl"):
        out.append(
            "energy windows run each model back to back (warm caches), while latency rounds "
            "alternate the models, so CPU time per call in the windows can be below the p50."
        )
    if result.analytic:
        a = result.analytic
        out += [
            f"ANALYTIC energy: per inference at batch 1 (the same in every configuration), "
            f"operation counts by the dtype ONNX Runtime's CPU provider runs them in x the "
            f"table of {a['source']}; memory: {a['memory_choice']}.",
            "ANALYTIC is a different kind from the measured or estimated energy above: a "
            "model of the arithmetic and memory traffic, not a measurement; the two are never "
            "compared as if alike (`qtool inspect --energy MODEL` itemises the count).",
        ]
    out.append(f"{SPINNING_NOTE[result.settings['spinning']]}.")
    out.append(
        f"ratios: vs the baseline {result.baseline} (first model on the first provider); "
        f"latency ratio = ratio of "
        f"medians, percentile bootstrap over rounds, seed {result.settings['seed']}."
    )
    return out


def render_providers(rows: list[ProviderStatus]) -> list:
    """Every provider qtool knows: usable here or why not, how threads are pinned, precision."""
    body = [
        [
            r.spec.name,
            r.spec.ort_name,
            r.spec.source,
            "yes" if r.usable else f"no: {r.reason}",
            r.spec.threads_pinned_by if r.usable else "",
        ]
        for r in rows
    ]
    columns = ["provider", "onnxruntime name", "source", "usable here", "threads pinned by"]
    out: list = [table("execution providers qtool knows", columns, body)]
    out += [f"{r.spec.name} precision: {r.spec.precision}." for r in rows if r.usable]
    out += [
        f"{r.spec.name} at --precision {mode}: {text}."
        for r in rows
        if r.usable and r.spec.name != "cpu"
        for mode, text in r.spec.precision_modes.items()
    ]
    out.append(
        "out of scope: qtool targets CPU servers, so GPU, NPU, mobile, browser and remote "
        "providers are listed but never used."
    )
    return out


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtra("matplotlib", "plot", "--plot") from None


def plot_bench(result: BenchResult, out: str | Path) -> Path:
    """Latency histograms (share of calls per log-spaced bin, p50 marked) and energy per item
    (bars), written atomically."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from qtool.outputs import atomic_path

    configs = [c for g in result.groups for c in g.configs]
    labels = [f"{c.name} t{c.threads} b{c.batch}" for c in configs]
    has_energy = result.energy.get("method") in ("estimate", "rapl")
    fig = Figure(figsize=(14.0 if has_energy else 7.5, 4.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if has_energy else 1, squeeze=False)[0]
    _plot_histograms(axes[0], configs, labels)
    if has_energy:
        _plot_energy(axes[1], configs, [label.replace(" ", "\n", 1) for label in labels], result)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(out)


def _plot_histograms(ax, configs: list[ConfigResult], labels: list[str]) -> None:
    for i, (config, label) in enumerate(zip(configs, labels, strict=True)):
        hist = config.latency_histogram
        total = sum(hist.counts) or 1
        share = [100 * c / total for c in hist.counts]
        color = f"C{i % 10}"
        ax.stairs(share, hist.edges_ms, color=color, label=label)
        ax.axvline(config.latency.p50_ms, color=color, linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("latency per call (ms, log scale)")
    ax.set_ylabel("share of calls per bin (%)")
    ax.set_title("latency histograms (dotted: p50)", fontsize=9)
    ax.legend(fontsize=7)


def _plot_energy(ax, configs: list[ConfigResult], labels: list[str], result: BenchResult) -> None:
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
