"""The demo's attack stage: the lightweight black-box attack on the digits CNN, FP32 vs INT8.

A small version of `qtool attack` (ETF-I at eps = 0.1 L-inf, the budget of the ETF authors'
code, and 64/255, since a digits image has only 17 grey levels of 1/16; K = 1 and the whole
train split; two seeds; the noise floor beside it), kept to seconds; `benchmarks/attack.py`
runs the full comparison. Runs after every other stage and draws only from its own seeded
generators, so the other stages' results are untouched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtool.outputs import write_json
from qtool.report import fmt_pct, info

if TYPE_CHECKING:
    from qtool.demo.context import DemoContext

DEMO_ATTACK_MODEL = "cnn"
DEMO_ATTACK_EPS = (0.1, 64 / 255)  # the ETF authors' budget, and one 8x8 digits notice
DEMO_ATTACK_K = (1, None)
DEMO_ATTACK_METHODS = ("etf-i",)
DEMO_ATTACK_SEEDS = 2
DEMO_ATTACK_SAMPLES = 70
DEMO_SURROGATE_STEPS = 80


def stage_attack(ctx: DemoContext) -> None:
    """ETF from K images per class vs the noise floor, on the FP32 and INT8 CNN."""
    from qtool.attacks.campaign import run_attack
    from qtool.attacks.settings import AttackSettings, SurrogateSpec

    rec = ctx.records.get(DEMO_ATTACK_MODEL)
    if rec is None or "int8" not in rec.paths:
        return
    info(f"lightweight black-box attack on {rec.name}: ETF-I from K = 1 and all images per class")
    settings = AttackSettings(
        models=(rec.paths["fp32"], rec.paths["int8"]),
        data=rec.data,
        samples_per_class=DEMO_ATTACK_K,
        eps=DEMO_ATTACK_EPS,
        methods=DEMO_ATTACK_METHODS,
        surrogate=SurrogateSpec(steps=DEMO_SURROGATE_STEPS),
        seeds=DEMO_ATTACK_SEEDS,
        seed=ctx.seed,
        max_samples=DEMO_ATTACK_SAMPLES,
    )
    report, _ = run_attack(settings)
    path = ctx.out_dir / f"{rec.name}.attack.json"
    write_json(path, report.to_dict())
    rec.paths["attack"] = path
    kinds = {str(rec.paths["fp32"]): "FP32", str(rec.paths["int8"]): "INT8"}
    rows, facts = [], {}
    for s in report.summaries:
        if s.beats_floor is None:
            continue
        kind = kinds[s.model]
        verdict = "beats noise" if s.beats_floor else "FAILS (not above noise)"
        interval = f"{fmt_pct(s.success.low, 1)} .. {fmt_pct(s.success.high, 1)}"
        rows.append(
            [kind, s.method, s.k, _eps_label(s.eps), fmt_pct(s.success.value, 1)]
            + [interval, fmt_pct(s.noise.value, 1), fmt_pct(s.accuracy_under_attack, 1), verdict]
        )
        facts[f"{kind.lower()}_{s.method}_k{s.k}_eps{s.eps * 255:.3g}"] = s.success.value
    rec.results["attack_success"] = facts
    ctx.tables.append(
        (
            f"{rec.name}: lightweight black-box attack (attacker has K train images per class, no "
            f"weights, no outputs), L-inf, {DEMO_ATTACK_SEEDS} seeds, "
            f"{DEMO_ATTACK_SAMPLES} test samples; success on correctly classified ones",
            ["model", "method", "K", "eps", "success", "95 % interval", "noise floor"]
            + ["accuracy", "verdict"],
            rows,
        )
    )


def _eps_label(eps: float) -> str:
    """64/255 for budgets on the 1/255 grid, 0.1 otherwise."""
    steps = eps * 255
    return f"{round(steps)}/255" if abs(steps - round(steps)) < 1e-6 else f"{eps:g}"
