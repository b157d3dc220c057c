"""The accuracy-aware loop: keep the nodes that add the most noise in FP32 until the budget holds.

Each step takes the `per_step` worst tensors of the last attempt (by the noise their nodes
add), puts their nodes back in FP32 and re-quantises with the same calibration. The loop
stops when the accuracy drop is within budget, after `max_steps`, or when no tensor is left
whose nodes are not already FP32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qtool.quantization.tensor_errors import TensorError
from qtool.report import info

TOLERANCE_PP = 1e-9  # a drop equal to the budget meets it despite float rounding


@dataclass
class Attempt:
    """One quantised model and what was measured on it."""

    path: Path
    extra: list[str]  # nodes the loop keeps in FP32 (beyond the user's exclusions)
    errors: list[TensorError]
    accuracy: float | None
    agreement: float | None  # top-1 agreement with the FP32 model
    per_provider: dict[str, tuple[float, float]] | None = None  # (accuracy, agreement)


@dataclass
class FallbackStep:
    step: int
    added: list[str]
    fp32_nodes: int
    accuracy: float
    drop_pp: float


@dataclass
class Budget:
    max_drop_pp: float
    per_step: int  # worst tensors whose nodes go back to FP32 per step
    max_steps: int | None  # None: until met or nothing is left
    excluded: list[str]  # nodes the user already keeps in FP32


@dataclass
class Outcome:
    final: Attempt
    steps: list[FallbackStep]
    within: bool | None  # None: no budget was given


def nodes_to_add(errors: list[TensorError], kept: set[str], per_step: int) -> list[str]:
    """Nodes of the `per_step` worst tensors that still have a node not kept in FP32."""
    chosen: list[str] = []
    picked = 0
    for err in errors:
        new = [n for n in err.nodes if n not in kept and n not in chosen]
        if new:
            chosen += new
            picked += 1
        if picked >= per_step:
            break
    return chosen


def run_fallback(
    first: Attempt,
    attempt: Callable[[list[str], str], Attempt],
    drop_pp: Callable[[Attempt], float],
    budget: Budget,
) -> Outcome:
    """Re-quantise with more FP32 nodes until within budget; the final attempt is the first
    one within budget, else the most accurate one seen."""
    current = best = first
    steps: list[FallbackStep] = []
    within = drop_pp(current) <= budget.max_drop_pp + TOLERANCE_PP
    while not within and (budget.max_steps is None or len(steps) < budget.max_steps):
        kept = set(budget.excluded) | set(current.extra)
        chosen = nodes_to_add(current.errors, kept, budget.per_step)
        if not chosen:
            break
        current = attempt(current.extra + chosen, str(len(steps) + 1))
        step = FallbackStep(
            len(steps) + 1, chosen, len(current.extra), current.accuracy, drop_pp(current)
        )
        steps.append(step)
        info(
            f"accuracy-aware step {step.step}: +{len(chosen)} node(s) in FP32 "
            f"({', '.join(chosen)}), accuracy {100 * current.accuracy:.2f} % "
            f"(drop {step.drop_pp:.2f} pp)"
        )
        if current.accuracy > best.accuracy:
            best = current
        within = drop_pp(current) <= budget.max_drop_pp + TOLERANCE_PP
    return Outcome(current if within else best, steps, within)
