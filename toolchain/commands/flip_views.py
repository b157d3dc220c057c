"""What `qtool flip` prints and draws: the flips, the clean-vs-flipped evaluation, replay,
campaign and search tables, and the campaign plot. Data comes typed from `qtool.faults`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.table import Table

from qtool.errors import MissingExtra
from qtool.faults.campaign import CampaignResult, FlipEvaluation
from qtool.faults.campaign.stats import COLLAPSE_MARGIN
from qtool.faults.incremental import EvaluationMode
from qtool.faults.search import SearchResult
from qtool.outputs import atomic_path
from qtool.report import fmt_pct, table

SHOWN_FLIPS = 20


def _value(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def flips_table(manifest: dict) -> Table:
    """The first flips of a manifest, where each is and what it changed."""
    flips = manifest["flips"]
    rows = [
        [
            e["tensor"],
            e["role"],
            ",".join(map(str, e["coords"])) or e["flat_index"],
            e["bit"],
            f"{e['file'] or 'model'}@{e['byte_offset']}",
            _value(e["old_value"]),
            _value(e["new_value"]),
        ]
        for e in flips[:SHOWN_FLIPS]
    ]
    if len(flips) > SHOWN_FLIPS:
        rows.append(
            [f"... {len(flips) - SHOWN_FLIPS} more (see --manifest)", "", "", "", "", "", ""]
        )
    return table(
        f"{len(flips)} of {manifest['eligible_bits']} eligible bits ({manifest['fault']}, "
        f"targets={manifest['targets']}, positions={manifest['positions']}, "
        f"seed={manifest['seed']})",
        ["tensor", "role", "element", "bit", "file@byte", "old", "new"],
        rows,
    )


def evaluation_table(ev: FlipEvaluation) -> Table:
    return table(
        f"clean vs flipped on {ev.data} ({ev.split}), in ONNX Runtime on {ev.provider} "
        f"({ev.precision})",
        ["metric", "clean", "flipped"],
        [
            ["accuracy", fmt_pct(ev.clean_accuracy), fmt_pct(ev.flipped_accuracy)],
            [
                "silent data corruption",
                "",
                f"{fmt_pct(ev.sdc_rate)} ({ev.sdc_inputs} of {ev.clean_correct} clean-correct "
                "inputs)",
            ],
            ["NaN/Inf outputs", ev.clean_nonfinite_rows, ev.nonfinite_rows],
        ],
    )


def evaluation_line(model: str, mode: EvaluationMode) -> str:
    """How faulted versions of a model were evaluated, in one line."""
    name = Path(model).name
    if mode.mode == "full":
        return f"{name}: whole model per evaluation ({mode.reason})"
    given_up = []
    if mode.cuts_over_limit:
        given_up.append(f"{mode.cuts_over_limit} earliest cuts over the cache limit")
    if mode.cuts_not_identical:
        given_up.append(f"{mode.cuts_not_identical} cuts ONNX Runtime fuses across")
    rows = ", skipping rows that match the clean run" if mode.rowwise else ""
    return (
        f"{name}: incremental, {mode.segments} segments{rows}, activation cache "
        f"{mode.cache_mb:.0f} MB of {mode.limit_mb:g} MB"
        + (f" ({'; '.join(given_up)} left out)" if given_up else "")
    )


def replay_table(verb: str, count: int, manifest: Path, rows: list[list[str]]) -> Table:
    return table(f"{verb} {count} flips from {manifest}", ["file", "sha256"], rows)


def _label(path: str, provider: str, result: CampaignResult) -> str:
    """The model's file name, with the provider when the campaign ran on several."""
    name = Path(path).name
    return f"{name} · {provider}" if len(result.providers) > 1 else name


def campaign_table(result: CampaignResult) -> Table:
    """The campaign: one row per model (and provider) and budget."""
    clean = {(m.path, m.provider): m.clean_accuracy for m in result.models}
    rows = [
        [
            _label(s.model, s.provider, result),
            s.bits,
            fmt_pct(clean[(s.model, s.provider)], 1),
            fmt_pct(s.mean, 1),
            fmt_pct(s.std, 1),
            fmt_pct(s.min, 1),
            fmt_pct(s.median, 1),
            fmt_pct(s.max, 1),
            f"{100 * s.ci95_low:.1f}-{100 * s.ci95_high:.1f} %",
            fmt_pct(s.collapsed_fraction, 0),
            fmt_pct(s.sdc_rate, 2),
            s.nonfinite_trials,
        ]
        for s in result.stats
    ]
    title = (
        f"bit-flip campaign: {_trials(result)} trials per budget, {result.data} "
        f"({result.split}, {result.samples} samples), targets={result.targets}, "
        f"positions={result.positions}, fault={result.fault}, seed={result.seed}, "
        f"run on {', '.join(result.providers)} ({result.models[0].precision}); "
        f"95 % CI: {result.ci_method}; collapsed: accuracy <= chance "
        f"({100 * result.chance:.1f} %) + {100 * COLLAPSE_MARGIN:.0f} pp"
    )
    columns = ["model", "bits", "clean", "mean", "std", "min", "median", "max", "95 % CI"]
    return table(title, [*columns, "collapsed", "SDC rate", "NaN/Inf trials"], rows)


def campaign_plot(result: CampaignResult, out: str | Path) -> Path:
    """Mean accuracy vs faulted bits with its bootstrap 95 % interval (band), one line per
    model, chance dashed; below it the collapse rate (trials at or below chance + 5 pp)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingExtra("matplotlib", "plot", "the campaign plot") from exc
    fig, (acc_ax, col_ax) = plt.subplots(
        2, 1, figsize=(6.4, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]}
    )
    for m in result.models:
        rows = [s for s in result.stats if (s.model, s.provider) == (m.path, m.provider)]
        x = [max(s.bits, 0.5) for s in rows]  # log axis: 0 bits drawn at 0.5
        label = _label(m.path, m.provider, result)
        (line,) = acc_ax.plot(x, [100 * s.mean for s in rows], marker="o", label=label)
        acc_ax.fill_between(
            x,
            [100 * s.ci95_low for s in rows],
            [100 * s.ci95_high for s in rows],
            color=line.get_color(),
            alpha=0.2,
            linewidth=0,
        )
        col_ax.plot(
            x, [100 * s.collapsed_fraction for s in rows], marker="o", color=line.get_color()
        )
    acc_ax.axhline(100 * result.chance, color="grey", linestyle="--", label="chance")
    acc_ax.set_ylabel("accuracy (%)")
    acc_ax.set_title(
        f"{result.data}: mean of {_trials(result)} trials per budget\n"
        "band: bootstrap 95 % interval of the mean",
        fontsize=10,
    )
    acc_ax.legend(fontsize=8)
    col_ax.set_xscale("log")
    col_ax.set_xticks([max(b, 0.5) for b in result.budgets], [str(b) for b in result.budgets])
    col_ax.minorticks_off()
    col_ax.set_ylim(-5, 105)
    col_ax.set_xlabel("flipped bits")
    col_ax.set_ylabel(f"collapsed (%)\n<= chance + {100 * COLLAPSE_MARGIN:.0f} pp", fontsize=8)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return Path(out)


def search_table(result: SearchResult) -> Table:
    """The search's per-iteration log."""
    rows = [
        [
            0,
            "clean",
            "",
            "",
            "",
            f"{result.clean_attack_loss:.3f}",
            fmt_pct(result.clean_accuracy, 1),
        ]
    ]
    for s in result.steps:
        rows.append(
            [
                s.step,
                f"{s.tensor}[{','.join(map(str, s.coords)) or s.flat_index}]",
                s.bit,
                f"{s.old_value:g} -> {s.new_value:g}",
                f"{s.loss:.3f}",
                f"{s.attack_loss:.3f}",
                fmt_pct(s.test_accuracy, 1),
            ]
        )
    target = (
        "" if result.until_accuracy is None else f", target {100 * result.until_accuracy:.1f} %"
    )
    return table(
        f"progressive bit search ({result.method}) on {Path(result.model).name}: attack batch "
        f"{result.attack_samples} {result.attack_split} samples (seed {result.seed}), accuracy on "
        f"{result.eval_samples} {result.eval_split} samples in ONNX Runtime on "
        f"{result.provider} ({result.precision}) (chance "
        f"{100 * result.chance:.1f} %{target})",
        ["flip", "element", "bit", "value", "search loss", "ORT attack loss", "test accuracy"],
        rows,
    )


def _trials(result: CampaignResult) -> str:
    return "auto-sized" if result.trials == "auto" else str(result.trials)


def sizing_table(sizing: dict) -> Table:
    """--trials auto: how many trials each budget took and which rule stopped it."""
    margin, confidence = 100 * sizing["margin"], 100 * sizing["confidence"]
    rows = [
        [
            Path(s.model).name,
            s.bits,
            f"10^{s.population_log10:.1f}",
            s.leveugle_trials,
            s.trials,
            f"± {100 * s.halfwidth:.2f} pp",
            s.stopped_by,
        ]
        for s in sizing["budgets"]
    ]
    return table(
        f"Trials per budget for ± {margin:g} pp at {confidence:g} % confidence (bootstrap: the "
        "interval got that narrow; leveugle: the sample-size formula's n; limit: --max-trials)",
        ["model", "bits", "bit sets N", "formula n", "trials", "bootstrap", "stopped by"],
        rows,
    )


def seeds_table(summary: dict, until_accuracy: float | None, seed: int) -> Table:
    """Mean ± std over the seeded attack batches (`until_accuracy` in percent)."""
    ftt = summary["flips_to_target"]
    rows = [
        [f"accuracy after {b} flips", f"{100 * v['mean']:.1f} ± {100 * v['std']:.1f} %"]
        for b, v in summary["accuracy_at"].items()
    ]
    if until_accuracy is not None:
        rows.append(
            [
                f"flips to reach {until_accuracy:g} %",
                f"{ftt['mean']:.1f} ± {ftt['std']:.1f} (reached in {ftt['reached']} of "
                f"{ftt['runs']} runs)",
            ]
        )
    seeds = len(summary["seeds"])
    return table(f"{seeds} attack batches (seeds {seed}..{seed + seeds - 1})", ["", ""], rows)


def comparison_table(rows: list[dict]) -> Table:
    """Targeted vs random flips (`qtool.faults.search.compare_targeted_random` rows)."""

    def pm(mean: float, std: float) -> str:
        return f"{100 * mean:.1f} ± {100 * std:.1f}"

    body = []
    for r in rows:
        ftt = (
            "—"
            if not np.isfinite(r["flips_to_target_mean"])
            else f"{r['flips_to_target_mean']:.1f} ± {r['flips_to_target_std']:.1f} "
            f"({r['reached']})"
        )
        body.append(
            [
                r["model"],
                r["family"],
                r["precision"],
                fmt_pct(r["clean"], 1),
                r["budget"],
                pm(r["targeted_mean"], r["targeted_std"]),
                pm(r["random_mean"], r["random_std"]),
                f"{100 * r['target']:.0f} %: {ftt}",
            ]
        )
    seeds = rows[0]["seeds"] if rows else 0
    return table(
        f"targeted (progressive bit search) vs random bit flips: test accuracy %, mean ± std over "
        f"{seeds} seeds (ONNX Runtime)",
        ["model", "net", "weights", "clean", "flips", "targeted", "random", "flips to target"],
        body,
    )
