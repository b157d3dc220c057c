"""Tables and the plot of `qtool attack` (the library returns numbers; this decides the looks)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.table import Table

from qtool.attacks.campaign import AttackReport, Summary
from qtool.errors import QtoolError
from qtool.outputs import atomic_path
from qtool.report import table


def fmt_eps(eps: float) -> str:
    """8/255 for budgets on the 1/255 grid, else a short decimal."""
    steps = eps * 255
    return f"{round(steps)}/255" if abs(steps - round(steps)) < 1e-6 else f"{eps:.4g}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _interval(s: Summary) -> str:
    return f"{_pct(s.success.value)} [{_pct(s.success.low)}, {_pct(s.success.high)}]"


def verdict(s: Summary) -> str:
    """Against the floor: the paired interval of (success - noise) must lie above zero."""
    if s.beats_floor is None:
        return "-"
    return f"+{100 * s.excess.value:.1f} pp" if s.beats_floor else "FAILS"


def results_table(report: AttackReport) -> Table:
    norm = report.settings["norm"]
    rows = []
    for s in sorted(report.summaries, key=_order):
        queries = ""
        if s.kind == "query":
            queries = "?" if s.median_queries is None else f"{s.median_queries:g}"
        rows.append(
            [
                Path(s.model).name,
                s.method,
                s.k,
                fmt_eps(s.eps),
                _pct(s.clean_accuracy),
                _interval(s),
                _pct(s.noise.value),
                verdict(s),
                _pct(s.accuracy_under_attack),
                f"{255 * (s.linf_max if norm == 'linf' else s.l2_max):.2f}",
                f"{1000 * s.per_example_seconds:.2f}",
                queries,
            ]
        )
    seeds = report.settings["seeds"]
    title = (
        f"attack success (%) on correctly classified {report.settings['target_split']} samples, "
        f"{norm}, {seeds} seed{'s' * (seeds > 1)}, 95 % bootstrap interval over samples and "
        "seeds; K = attacker's images per class (transfer methods never query the target); "
        "vs noise: the excess over the noise floor when the paired interval of success - noise "
        f"is above 0, else FAILS; max {norm} x 255; ms per crafted example; median queries per "
        "fooled image"
    )
    columns = [
        "model",
        "method",
        "K",
        "eps",
        "clean",
        "success [95 % CI]",
        "noise",
        "vs noise",
        "acc attacked",
        "max",
        "ms",
        "queries",
    ]
    return table(title, columns, rows)


def _order(s: Summary) -> tuple:
    kind = {"transfer": 0, "query": 1, "floor": 2}[s.kind]
    k = 10**9 if s.k in ("all", "-") else int(s.k)
    return (s.eps, kind, s.method, k, s.model)


def attack_plot(report: AttackReport, out: Path) -> Path:
    """Success rate vs eps (first K) and vs K (first eps), one line per model and method,
    the noise floor dashed; error bars are the bootstrap intervals."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise QtoolError("--plot needs matplotlib: pip install 'qtool[plot]'") from exc
    settings = report.settings
    first_k = str(settings["samples_per_class"][0])
    first_eps = max(settings["eps"])  # the largest budget shows the K trend best
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    by_line: dict[tuple[str, str], list[Summary]] = {}
    for s in report.summaries:
        by_line.setdefault((Path(s.model).name, s.method), []).append(s)
    for (model, method), items in by_line.items():
        dashed = "--" if method == "noise" else "-"
        vs_eps = sorted((s for s in items if s.k in (first_k, "-")), key=lambda s: s.eps)
        _line(left, [s.eps for s in vs_eps], vs_eps, f"{model} {method}", dashed)
        vs_k = [s for s in items if s.eps == first_eps and s.k != "-"]
        if vs_k:
            vs_k.sort(key=lambda s: settings["samples_per_class"].index(_k_value(s.k)))
            _line(right, [s.k for s in vs_k], vs_k, f"{model} {method}", dashed)
        elif method == "noise":
            floor = next((s for s in items if s.eps == first_eps), None)
            if floor is not None:
                right.axhline(
                    100 * floor.success.value, linestyle="--", linewidth=1, label=f"{model} noise"
                )
    left.set(xlabel=f"budget eps ({settings['norm']}), K = {first_k}", ylabel="success rate (%)")
    right.set(xlabel=f"samples per class K, eps = {fmt_eps(first_eps)}", ylabel="success rate (%)")
    for ax in (left, right):
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    right.legend(fontsize=7, loc="best")
    fig.suptitle("qtool attack: success rate on correctly classified samples (noise floor dashed)")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return out


def _k_value(k: str) -> int | str:
    return k if k == "all" else int(k)


def _line(ax, xs: Sequence, items: Sequence[Summary], label: str, style: str) -> None:
    if not items:
        return
    ys = [100 * s.success.value for s in items]
    err = [
        [100 * (s.success.value - s.success.low) for s in items],
        [100 * (s.success.high - s.success.value) for s in items],
    ]
    ax.errorbar(
        [str(x) if isinstance(x, str) else x for x in xs],
        ys,
        yerr=err,
        label=label,
        linestyle=style,
        marker="o",
        capsize=3,
    )
