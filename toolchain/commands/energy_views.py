"""The analytic energy bill as a table, for `inspect --energy` and `bench --energy analytic`.

Every title and note says "analytic": the figure is operation counts times a 45 nm table, not
a measurement, and it is never set against a measured or estimated figure as if alike.
"""

from __future__ import annotations

from qtool.report import table
from qtool.runtimes.analytic_energy import AnalyticEnergy


def fmt_pj(pj: float) -> str:
    """pJ in the unit that reads best: pJ, nJ, µJ or mJ."""
    for unit, scale in (("mJ", 1e9), ("µJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= scale:
            return f"{pj / scale:.4g} {unit}"
    return f"{pj:.4g} pJ"


def analytic_table(e: AnalyticEnergy, title: str | None = None):
    """One row per priced count, then the total; the source and memory choice follow."""
    rows = [
        [t.what, f"{t.count:,} {t.unit}", f"{t.pj_each:g} pJ ({t.priced_as})", fmt_pj(t.pj)]
        for t in e.terms
    ]
    if e.batch != 1:
        rows.append(
            [f"total per call (static batch {e.batch})", "", "", fmt_pj(sum(t.pj for t in e.terms))]
        )
    rows.append(["total per inference", "", "", fmt_pj(e.pj_per_inference)])
    return table(
        title or f"energy per inference: {e.label}",
        ["counted", "count", "priced at", "energy"],
        rows,
    )


def analytic_notes(e: AnalyticEnergy) -> list[str]:
    return [
        f"analytic energy: table from {e.source}",
        f"memory figures: {e.memory_choice}",
        f"counted on {e.graph}; an analytic figure is not a measurement and is never compared "
        "with measured (RAPL) or estimated (CPU time) energy as if alike",
    ]
