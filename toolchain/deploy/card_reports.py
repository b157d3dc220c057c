"""The bundled reports a model card reads: one entry per report kind qtool writes.

Each kind says how to recognise its JSON (by the keys its command writes), which section of
the card it belongs to, and the Markdown lines it contributes there. A bundled report no kind
recognises is listed as such, never silently dropped. Reports are data from a file: every
field is read with a fallback, so an old or partial report gives "n/a", not an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qtool.registry import Registry

# card sections in order: (title, the command whose --json report belongs there)
SECTIONS = {
    "accuracy": ("Accuracy", "eval"),
    "quantisation": ("Quantisation", "quantize"),
    "latency": ("Latency and energy", "bench"),
    "bitflips": ("Robustness to bit flips in stored weights", "flip"),
    "attacks": ("Robustness to adversarial examples", "attack"),
}
NOISIEST_SHOWN = 3  # tensors of the quantisation error table on the card


@dataclass(frozen=True)
class ReportKind:
    """One kind of report: recognised by its keys, rendered into its card sections."""

    recognise: Callable[[dict], bool]
    sections: dict[str, Callable[[str, dict], list[str]]]  # section -> (file name, report) -> lines


REPORT_KINDS: Registry[ReportKind] = Registry("report kind")


def pct(x) -> str:
    return f"{100 * float(x):.2f} %" if isinstance(x, (int, float)) else "n/a"


def _from(name: str) -> str:
    return f"from `reports/{name}`"


# --- eval ------------------------------------------------------------------------------------


def _eval_accuracy(name: str, r: dict) -> list[str]:
    line = f"- {pct(r.get('accuracy'))} on {r.get('samples')} samples of {r.get('data')} "
    line += f"({r.get('split')}), {_from(name)}"
    if r.get("sensitivity") is not None:
        line += f"; sensitivity {pct(r['sensitivity'])}, specificity "
        line += f"{pct(r.get('specificity'))} (positive: {r.get('positive_class')})"
    if isinstance(r.get("roc_auc"), (int, float)):
        line += f"; ROC AUC {r['roc_auc']:.4f}"
    point = r.get("operating_point")
    if isinstance(point, dict):
        line += (
            f"; at sensitivity >= {pct(point.get('target_sensitivity'))}: threshold "
            f"p >= {point.get('threshold', float('nan')):.4g}, specificity "
            f"{pct(point.get('specificity'))}"
        )
    return [line]


REPORT_KINDS.add(
    "eval",
    ReportKind(lambda r: "accuracy" in r and "confusion" in r, {"accuracy": _eval_accuracy}),
)


# --- quantize --------------------------------------------------------------------------------


def _quantize_accuracy(name: str, r: dict) -> list[str]:
    lines = []
    for key in ("test", "validation"):
        s = r.get(key)
        if not isinstance(s, dict):
            continue
        role = "reported, never tuned on" if s.get("role") == "reported" else "budget judged here"
        lines.append(
            f"- FP32 {pct(s.get('fp32'))} -> INT8 {pct(s.get('int8'))} "
            f"({s.get('drop_pp', float('nan')):.2f} pp drop; top-1 agreement "
            f"{pct(s.get('top1_agreement'))}) on {s.get('samples')} samples of {s.get('data')} "
            f"({role}), {_from(name)}"
        )
    return lines


def _quantize_details(name: str, r: dict) -> list[str]:
    settings = r.get("settings") or {}
    budget = r.get("max_accuracy_drop_pp")
    lines = [
        f"- {settings.get('format', '?')} {settings.get('weight_type', '?')} weights "
        f"({'per channel' if settings.get('per_channel') else 'per tensor'}), "
        f"{settings.get('activation_type', '?')} activations, calibrated by "
        f"{settings.get('method', '?')} on {settings.get('samples', '?')} samples of "
        f"{settings.get('calibration', '?')}, {_from(name)}",
        f"- Size {r.get('size_before', 0):,} -> {r.get('size_after', 0):,} bytes "
        f"(x{r.get('size_ratio', float('nan')):.3f})",
    ]
    if budget is not None:
        met = "met" if r.get("within_budget") else "NOT met"
        lines.append(f"- Accuracy budget {budget:g} pp on validation: {met}")
    errors = [e for e in r.get("tensor_errors") or [] if isinstance(e, dict)][:NOISIEST_SHOWN]
    if errors:
        shown = "; ".join(
            f"{e.get('module') or e.get('tensor')} ({e.get('sqnr_db', float('nan')):.1f} dB)"
            for e in errors
        )
        lines.append(f"- Noisiest activations (SQNR): {shown}")
    return lines


REPORT_KINDS.add(
    "quantize",
    ReportKind(
        lambda r: "size_ratio" in r and "settings" in r and "tensor_errors" in r,
        {"accuracy": _quantize_accuracy, "quantisation": _quantize_details},
    ),
)


# --- bench -----------------------------------------------------------------------------------


def _bench(name: str, r: dict) -> list[str]:
    """Latency and energy per model and batch, the energy method stated on every row."""
    rows = [
        f"- See `reports/{name}`.",
        "",
        "| model | provider | batch | threads | p50 latency | items/s | energy per item |",
        "|---|---|---|---|---|---|---|",
    ]
    methods = set()
    for group in r.get("groups") or []:
        for c in group.get("configs") or []:
            lat, energy = c.get("latency") or {}, c.get("energy") or {}
            methods.add(energy.get("method"))
            joules = (
                f"{energy['mj_per_item']:.4g} mJ ({energy.get('method', '?')})"
                if energy.get("mj_per_item") is not None
                else "not measured"
            )
            rows.append(
                f"| {c.get('name')} | {c.get('provider', 'cpu')} | {group.get('batch')} | "
                f"{group.get('threads')} | {lat.get('p50_ms', float('nan')):.4g} ms | "
                f"{lat.get('throughput_items_per_s', float('nan')):,.0f} | {joules} |"
            )
    if "estimated" in methods:
        rows.append(
            "\nEnergy is ESTIMATED from process CPU time x watts per core, not measured; "
            "the energy ratio between models equals their CPU-time ratio."
        )
    return rows if len(rows) > 4 else rows[:1]


REPORT_KINDS.add(
    "bench", ReportKind(lambda r: isinstance(r.get("groups"), list), {"latency": _bench})
)


# --- flip: campaign, one injection, targeted search ------------------------------------------


def _campaign(name: str, r: dict) -> list[str]:
    """Mean accuracy per number of random flipped weight bits, one row per model."""
    stats = [s for s in r.get("stats") or [] if isinstance(s, dict)]
    budgets = sorted({s["bits"] for s in stats if "bits" in s})
    if not budgets:
        return [f"- See `reports/{name}` (no budgets in it)."]
    clean = {m.get("path"): m.get("clean_accuracy") for m in r.get("models") or []}
    rows = [
        f"- See `reports/{name}`.",
        "",
        f"Mean test accuracy over {r.get('trials')} trials per budget ({r.get('data')}, "
        f"targets={r.get('targets')}):",
        "",
        "| model | clean | " + " | ".join(f"{b} bits" for b in budgets) + " |",
        "|---" * (len(budgets) + 2) + "|",
    ]
    for model in dict.fromkeys(s.get("model") for s in stats):
        by_bits = {s["bits"]: s.get("mean") for s in stats if s.get("model") == model}
        cells = [pct(by_bits.get(b)) for b in budgets]
        short = str(model).rsplit("/", 1)[-1]
        rows.append(f"| {short} | {pct(clean.get(model))} | " + " | ".join(cells) + " |")
    return rows


def _injection(name: str, r: dict) -> list[str]:
    manifest, ev = r.get("manifest") or {}, r.get("evaluation") or {}
    line = f"- {len(manifest.get('flips') or [])} random bit flips ({manifest.get('targets')}, "
    line += f"seed {manifest.get('seed')})"
    if ev:
        line += (
            f": accuracy {pct(ev.get('clean_accuracy'))} -> {pct(ev.get('flipped_accuracy'))} "
            f"on {ev.get('samples')} samples of {ev.get('data')}, silent data corruption "
            f"{pct(ev.get('sdc_rate'))}"
        )
    return [f"{line}, {_from(name)}"]


def _search(name: str, r: dict) -> list[str]:
    s = r.get("search") or {}
    accuracies = s.get("accuracies") or []
    line = (
        f"- Bit-Flip Attack ({s.get('method')}): {len(accuracies) - 1 if accuracies else 0} "
        f"chosen flips take accuracy from {pct(s.get('clean_accuracy'))} to "
        f"{pct(s.get('final_accuracy'))} on {s.get('data')}"
    )
    if s.get("until_accuracy") is not None:
        line += f"; {s.get('flips_to_target')} flips to reach {pct(s['until_accuracy'])}"
    return [f"{line}, {_from(name)}"]


REPORT_KINDS.add(
    "flip-campaign",
    ReportKind(lambda r: "stats" in r and "budgets" in r, {"bitflips": _campaign}),
)
REPORT_KINDS.add(
    "flip", ReportKind(lambda r: isinstance(r.get("manifest"), dict), {"bitflips": _injection})
)
REPORT_KINDS.add(
    "flip-search", ReportKind(lambda r: isinstance(r.get("search"), dict), {"bitflips": _search})
)


# --- attack ----------------------------------------------------------------------------------


def _attack(name: str, r: dict) -> list[str]:
    lines = [f"- See `reports/{name}`."]
    for s in r.get("summaries") or []:
        if not isinstance(s, dict) or s.get("method") == "noise":
            continue
        success, noise = s.get("success") or {}, s.get("noise") or {}
        verdict = {True: "beats the noise floor", False: "FAILS to beat the noise floor"}
        lines.append(
            f"- {str(s.get('model')).rsplit('/', 1)[-1]}, {s.get('method')} (K={s.get('k')}, "
            f"eps {s.get('eps', float('nan')):.4g}): success {pct(success.get('value'))} vs "
            f"noise {pct(noise.get('value'))}, {verdict.get(s.get('beats_floor'), 'n/a')}"
        )
    return lines


REPORT_KINDS.add(
    "attack", ReportKind(lambda r: "summaries" in r and "units" in r, {"attacks": _attack})
)


def kind_of(report: object) -> str | None:
    """The name of the first report kind that recognises `report` (None: unknown)."""
    if not isinstance(report, dict):
        return None
    return next((name for name, kind in REPORT_KINDS.items() if kind.recognise(report)), None)
