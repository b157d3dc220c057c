"""`qtool inspect`: what an ONNX file holds."""

from __future__ import annotations

from pathlib import Path

import click

from qtool.commands.options import (
    check_outputs,
    force_option,
    json_option,
    model_argument,
    write_json_report,
)
from qtool.modelfile.summary import summarize
from qtool.report import fmt_bytes, fmt_count, show, table


@click.command("inspect")
@model_argument
@click.option(
    "--all-initializers", is_flag=True, help="List every initializer, not the 20 largest."
)
@json_option
@force_option
def command(model: Path, all_initializers: bool, json_path: Path | None, force: bool) -> None:
    """Summarise an ONNX model: inputs, outputs, size, parameters, FLOPs, quantisation.

    \b
    Example:
      qtool inspect model.int8.onnx --json summary.json
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
    write_json_report(json_path, s)


def _shape(shape: list) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
