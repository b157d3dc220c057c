"""What `qtool quantize` prints: settings and sizes, accuracy per split (named, with its role),
the Q/DQ placement, the accuracy-aware steps and the worst tensors."""

from __future__ import annotations

from qtool.quantization.report import QuantizeReport, SplitAccuracy
from qtool.report import fmt_bytes, fmt_pct, show, table

TOP_TENSORS = 10
ROLES = {"budget": "budget judged here", "reported": "reported only"}


def show_report(r: QuantizeReport) -> None:
    """The report as tables on stdout."""
    s = r.settings
    rows = [
        ["output", r.output or "(not written)"],
        ["method / format", f"{s.method} / {s.format}"],
        ["weights", f"{s.weight_type}, {'per channel' if s.per_channel else 'per tensor'}"],
        ["activations", s.activation_type],
        ["reduce_range", f"{s.reduce_range} ({s.reduce_range_reason})"],
        ["pre-processed", "yes" if s.preprocessed else "no (failed, see notes)"],
        ["calibration", f"{s.calibration} ({s.calibration_split}), {s.samples} samples, "
                        f"{s.calibration_batch} at a time"],
        ["seed", s.seed],
        ["size FP32 -> INT8", f"{fmt_bytes(r.size_before)} -> {fmt_bytes(r.size_after)}"],
        ["size ratio", f"{r.size_ratio:.3f}"],
        ["tensor bytes ratio", f"{r.initializer_bytes_after / r.initializer_bytes_before:.3f}"],
        *_placement_rows(r.placement),
    ]  # fmt: skip
    for split in (r.validation, r.test):
        if split is not None:
            rows += _accuracy_rows(split)
    if len({p["provider"] for p in r.providers}) > 1:
        rows += [
            [
                f"  {p['split']} on {p['provider']} ({p['precision']})",
                f"{fmt_pct(p['fp32'])} -> {fmt_pct(p['int8'])}, drop {p['drop_pp']:.2f} pp, "
                f"agreement {fmt_pct(p['top1_agreement'])}",
            ]
            for p in r.providers
        ]
    if r.max_accuracy_drop_pp is not None:
        verdict = "met" if r.within_budget else "NOT met"
        where = f" on {r.validation.data}" if r.validation else ""
        rows.append(["budget", f"{r.max_accuracy_drop_pp} pp{where}: {verdict}"])
    fp32 = s.exclude_nodes + s.fp32_nodes
    rows.append(["nodes kept FP32", ", ".join(fp32) if fp32 else "none"])
    for note in r.notes:
        rows.append(["note", note])
    show(table(f"qtool quantize {r.source}", ["", "value"], rows))
    if r.fallback_steps:
        show(
            table(
                f"accuracy-aware steps ({r.fallback_step_size} tensor(s) per step, "
                f"{r.validation.data if r.validation else 'validation split'})",
                ["step", "nodes added to FP32", "FP32 nodes", "accuracy", "drop (pp)"],
                [
                    [st.step, ", ".join(st.added), st.fp32_nodes, fmt_pct(st.accuracy),
                     f"{st.drop_pp:.2f}"]
                    for st in r.fallback_steps
                ],
            )
        )  # fmt: skip
    errors = r.tensor_errors[:TOP_TENSORS]
    if errors:
        show(
            table(
                f"per-tensor error, worst first ({len(errors)} of {len(r.tensor_errors)}, "
                f"{r.debug_samples} samples; SQNR in dB, higher is better; "
                "noise added: % of signal power)",
                ["source module", "tensor", "op", "SQNR FP32 vs INT8", "noise added here"],
                [
                    [e.module or "-", e.tensor, e.op_type, f"{e.sqnr_db:.1f}",
                     _pct3(e.added_noise)]
                    for e in errors
                ],
            )
        )  # fmt: skip


def _accuracy_rows(a: SplitAccuracy) -> list[list[str]]:
    return [
        [f"accuracy ({a.split})", f"FP32 {fmt_pct(a.fp32)} -> INT8 {fmt_pct(a.int8)}, "
                                  f"drop {a.drop_pp:.2f} pp, "
                                  f"top-1 agreement {fmt_pct(a.top1_agreement)}"],
        ["  measured on", f"{a.data}, {a.samples} samples ({ROLES.get(a.role, a.role)})"],
    ]  # fmt: skip


def _placement_rows(placement: dict) -> list[list[str]]:
    if not placement:
        return []
    mode = placement.get("mode", "")
    if mode == "ort" or placement.get("note"):
        return [["Q/DQ placement", placement.get("note") or "ort (ONNX Runtime's full placement)"]]
    kinds = ", ".join(f"{n} {k}" for k, n in placement.get("kinds", {}).items()) or "none"
    rows = [
        ["Q/DQ placement", f"{mode}: wrapped nodes as ORT runs them: {kinds}"],
    ]
    rounds = placement.get("rounds", [])
    if len(rounds) > 1:
        first, chosen = rounds[0], [r for r in rounds if r["accepted"]][-1]
        rows.append(
            [
                "  kept out of Q/DQ",
                f"{len(placement['excluded'])} node(s) ORT runs in float; Q/DQ left on "
                f"activations {first['conversions']} -> {chosen['conversions']}, file "
                f"{fmt_bytes(first['file_bytes'])} -> {fmt_bytes(chosen['file_bytes'])}",
            ]
        )
        rejected = [r for r in rounds[1:] if not r["accepted"]]
        if rejected:
            rows.append(
                [
                    "  not kept out",
                    f"{len(rejected[-1]['excluded'])} node(s): that placement left more Q/DQ "
                    "or a larger file",
                ]
            )
    if placement.get("float_kept"):
        rows.append(
            [
                "  float, left wrapped",
                f"{len(placement['float_kept'])} node(s) feeding 8-bit data movement",
            ]
        )
    return rows


def _pct3(x: float) -> str:
    return f"{100 * x:.3g} %"
