"""`qtool inspect`: what an ONNX file holds."""

from __future__ import annotations

from pathlib import Path

import click

from qtool.commands.energy_views import analytic_notes, analytic_table
from qtool.commands.options import (
    check_outputs,
    force_option,
    json_option,
    model_argument,
    write_json_report,
)
from qtool.errors import QtoolError
from qtool.modelfile.summary import summarize
from qtool.report import fmt_bytes, fmt_count, show, table
from qtool.runtimes.analytic_energy import analytic_energy


@click.command("inspect")
@model_argument
@click.option(
    "--all-initializers", is_flag=True, help="List every initializer, not the 20 largest."
)
@click.option(
    "--energy",
    is_flag=True,
    help="Also the analytic energy per inference: operation counts by the dtype ONNX Runtime "
    "runs them in x Horowitz's 45 nm table (ISSCC 2014). Labelled analytic: not a measurement.",
)
@json_option
@force_option
def command(
    model: Path, all_initializers: bool, energy: bool, json_path: Path | None, force: bool
) -> None:
    """Summarise an ONNX model: inputs, outputs, size, parameters, FLOPs, quantisation.

    With --energy, the analytic energy of one inference at batch 1 (the method of energy
    claims in the quantisation literature): multiply-accumulates and element-wise operations
    counted on the graph ONNX Runtime's CPU provider runs (inside a fused Q/DQ group the
    arithmetic is INT8), weight and activation bytes moved, each priced from the table.

    \b
    Examples:
      qtool inspect model.int8.onnx --json summary.json
      qtool inspect model.int8.onnx --energy
    """
    check_outputs(force, [model], json_path=json_path)
    s = summarize(model)
    show(
        table(
            f"{model}",
            ["property", "value"],
            [
                ["file size", f"{fmt_bytes(s.file_bytes)} ({s.file_bytes} bytes)"],
                ["parameters", f"{fmt_count(s.parameters)} ({s.parameters})"],
                ["FLOPs (batch 1)", f"{fmt_count(s.flops)} ({s.flops})"],
                ["quantisation", s.quantization],
                ["opset / IR version", f"{s.opset} / {s.ir_version}"],
                ["producer", s.producer or "-"],
            ],
        ),
        table(
            "inputs and outputs",
            ["name", "kind", "dtype", "shape"],
            [[v.name, "input", v.dtype, _shape(v.shape)] for v in s.inputs]
            + [[v.name, "output", v.dtype, _shape(v.shape)] for v in s.outputs],
        ),
        table("ops", ["op", "count"], list(s.op_histogram.items())),
    )
    inits = sorted(s.initializers, key=lambda i: -i.bytes)
    shown = inits if all_initializers else inits[:20]
    title = "initializers" + ("" if len(shown) == len(inits) else f" (20 largest of {len(inits)})")
    show(
        table(
            title,
            ["name", "role", "dtype", "shape", "bytes"],
            [[i.name, i.role, i.dtype, _shape(i.shape), i.bytes] for i in shown],
        )
    )
    if s.metadata:
        show(table("metadata", ["key", "value"], [[k, _short(v)] for k, v in s.metadata.items()]))
    if energy:
        try:
            bill = analytic_energy(model)
        except QtoolError as exc:
            exc.param = exc.param or "energy"
            raise
        s.energy = bill.to_dict()
        show(analytic_table(bill), *analytic_notes(bill))
    write_json_report(json_path, s)


def _shape(shape: list) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
