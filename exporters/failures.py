"""Why an export failed, in one line: the real cause out of the exporter's long text, and
advice that fits it.

torch's exporters wrap the cause in pages of guidance, graph dumps and ANSI colour codes; the
cause is the "Exception summary" of the dynamo exporter, else the first line. Advice comes from
FAILURE_ADVICE: one entry per kind of cause (a pattern of the cause's text), first match wins,
the exporter's own hint when none matches. Advice names no CLI flag (the library never does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
MAX_CAUSE = 300  # characters of the cause kept in the message


@dataclass(frozen=True)
class FailureAdvice:
    """One kind of export failure: how to recognise its cause and what to do about it."""

    kind: str
    pattern: re.Pattern
    advice: str


FAILURE_ADVICE: tuple[FailureAdvice, ...] = (
    FailureAdvice(
        "input shape",
        re.compile(
            r"channels, but got|size mismatch|shapes? .* cannot be multiplied|"
            r"must match the size|Expected .* input|to have \d+ channels",
            re.I,
        ),
        "the input shape is wrong for this model: give the shape it takes (batch, channels, "
        "height, width)",
    ),
    FailureAdvice(
        "data-dependent control flow",
        re.compile(r"data-dependent|GuardOnDataDependent|Could not guard", re.I),
        "the model branches on tensor values, which torch.export cannot capture: use the "
        "torchscript exporter (it records the branch the example input takes) or write the "
        "branch with torch.where / torch.cond",
    ),
    FailureAdvice(
        "dynamic batch",
        re.compile(r"Constraints violated|specializ", re.I),
        "the model fixes its batch size somewhere (e.g. a reshape to a constant): export it "
        "with a static batch size",
    ),
    FailureAdvice(
        "operator",
        re.compile(r"not supported|unsupported|no decomposition|No symbolic|not implemented", re.I),
        "an operator has no ONNX translation here: try a higher opset or the other exporter",
    ),
)


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def failure_cause(exc: BaseException) -> str:
    """The cause of an exporter exception as one clean line (no ANSI codes, no guidance)."""
    text = strip_ansi(str(exc)).strip()
    summary = re.search(r"## Exception summary\s*\n+(.+)", text)
    if summary:
        line = summary.group(1).strip()
        line = re.sub(r"^<class '(?:[\w.]*\.)?(\w+)'>:\s*", r"\1: ", line)
    else:
        line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
        line = f"{type(exc).__name__}: {line}" if not line.startswith(type(exc).__name__) else line
    return line[:MAX_CAUSE]


def advice_for(cause: str, default: str) -> str:
    """The advice of the first FAILURE_ADVICE entry whose pattern the cause matches."""
    for entry in FAILURE_ADVICE:
        if entry.pattern.search(cause):
            return entry.advice
    return default
