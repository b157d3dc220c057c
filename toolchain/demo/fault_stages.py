"""The demo's fault stages: random bit-flip campaigns (FP32 vs INT8) and the progressive
bit search on the INT8 models."""

from __future__ import annotations

from pathlib import Path

from qtool.demo.context import (
    DEMO_FLIP_BUDGETS,
    DEMO_FLIP_MODELS,
    DEMO_FLIP_TRIALS,
    DEMO_SEARCH_BITS,
    DemoContext,
)
from qtool.errors import QtoolError
from qtool.outputs import write_json
from qtool.report import fmt_pct, info


def stage_flip(ctx: DemoContext) -> None:
    """Random bit flips in the stored weights: accuracy vs number of flipped bits."""
    from qtool.faults.campaign import CampaignPlan, run_campaign

    for name in DEMO_FLIP_MODELS:
        rec = ctx.records.get(name)
        if rec is None or "int8" not in rec.paths:
            continue
        info(f"bit-flip campaign on {name}: FP32 vs INT8, {DEMO_FLIP_TRIALS} trials per budget")
        plan = CampaignPlan(budgets=DEMO_FLIP_BUDGETS, trials=DEMO_FLIP_TRIALS, seed=ctx.seed)
        result = run_campaign(
            [rec.paths["fp32"], rec.paths["int8"]], rec.data, plan, show_progress=False
        )
        report = ctx.out_dir / f"{name}.flips.json"
        write_json(report, result)
        rec.paths["flips"] = report
        try:  # the curve as a picture too, when the command draws and matplotlib is here
            if ctx.campaign_plot is not None:
                plot = ctx.campaign_plot(result, ctx.out_dir / f"{name}.flips.png")
                rec.paths["flips_plot"] = plot
        except QtoolError as exc:
            ctx.notes.append(f"no flip plot: {exc}")
        by_model = {}
        for stat in result.stats:
            kind = "int8" if Path(stat.model) == rec.paths["int8"] else "fp32"
            by_model.setdefault(kind, {})[stat.bits] = stat.mean
        rec.results["random_flip_accuracy"] = by_model
        top = max(DEMO_FLIP_BUDGETS)
        rec.results[f"fp32_acc_{top}_random"] = by_model["fp32"][top]
        rec.results[f"int8_acc_{top}_random"] = by_model["int8"][top]
        ctx.tables.append(
            (
                f"{name}: mean test accuracy under N random bit flips in the stored weights "
                f"({DEMO_FLIP_TRIALS} trials each; storage faults, see README)",
                ["weights", *(f"{b} bits" for b in DEMO_FLIP_BUDGETS)],
                [
                    [kind.upper(), *(fmt_pct(acc[b], 1) for b in DEMO_FLIP_BUDGETS)]
                    for kind, acc in by_model.items()
                ],
            )
        )


def stage_targeted(ctx: DemoContext) -> None:
    """Chosen bits (progressive bit search) vs random bits, on the INT8 CNN and MLP."""
    from qtool.faults.search import progressive_search

    rows = []
    for name in DEMO_FLIP_MODELS:
        rec = ctx.records.get(name)
        if rec is None or "int8" not in rec.paths:
            continue
        info(f"progressive bit search on {name} INT8 (up to {DEMO_SEARCH_BITS} chosen bits)")
        chance_plus = 0.2 if name == "cnn" else None
        result = progressive_search(
            rec.paths["int8"], rec.data, DEMO_SEARCH_BITS, chance_plus, seed=ctx.seed
        )
        report = ctx.out_dir / f"{name}.int8.search.json"
        write_json(report, {k: v for k, v in vars(result).items() if k != "files"})
        used = len(result.accuracies) - 1
        rec.results["targeted_flips"] = used
        rec.results["targeted_accuracy"] = result.final_accuracy
        random_acc = rec.results.get("random_flip_accuracy", {}).get("int8", {})
        same = min((b for b in random_acc if b >= used), default=None)
        rows.append(
            [
                f"{name} INT8",
                fmt_pct(result.clean_accuracy, 1),
                f"{used}",
                fmt_pct(result.final_accuracy, 1),
                f"{fmt_pct(random_acc[same], 1)} ({same} bits)" if same else "",
                result.method,
            ]
        )
    if rows:
        ctx.tables.append(
            (
                "chosen vs random bit flips (Bit-Flip Attack, progressive bit search; accuracy "
                "measured in ONNX Runtime on the test split)",
                [
                    "model",
                    "clean",
                    "chosen flips",
                    "after chosen",
                    "after random flips",
                    "search",
                ],
                rows,
            )
        )
