"""ONNX Runtime sessions built one way everywhere, so eval, bench and flip measure alike.

Every session goes through a provider spec (qtool.runtimes.providers): the spec says how the
provider is attached, which options it gets and how its threads are pinned.
"""

from __future__ import annotations

import re
from pathlib import Path

import onnx
import onnxruntime as ort

from qtool.errors import QtoolError
from qtool.runtimes.plugins import first_line
from qtool.runtimes.providers import DEFAULT_PRECISION, ProviderSpec, session_specs

# ONNX Runtime logs to stderr by itself (a failing kernel, a bad initializer, even at severity
# ERROR); qtool reports every such failure as its own one-line error, so ORT's logging is off
# below FATAL for the process (its default logger) and for each session, set here only.
ORT_LOG_SEVERITY = 4
ort.set_default_logger_severity(ORT_LOG_SEVERITY)

OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def available_providers() -> list[str]:
    """onnxruntime's names of the providers built into the installed wheel."""
    return list(ort.get_available_providers())


def resolve_providers(names: list[str] | tuple[str, ...] | None) -> list[str]:
    """Map qtool names or aliases (cpu, CPUExecutionProvider) to onnxruntime's names; an
    unknown or unusable one is bad input (param "providers")."""
    return [spec.ort_name for spec in session_specs(names)]


def session_options(
    threads: int | None = None,
    opt_level: str = "all",
    spinning: bool | None = None,
    inter_threads: int | None = 1,
) -> ort.SessionOptions:
    """Graph optimisation, thread counts and spinning; `threads=None` keeps ORT's default."""
    if opt_level not in OPT_LEVELS:
        raise QtoolError(
            f"unknown graph optimisation level {opt_level!r}: use {', '.join(OPT_LEVELS)}",
            param="opt_level",
        )
    options = ort.SessionOptions()
    options.graph_optimization_level = OPT_LEVELS[opt_level]
    options.log_severity_level = ORT_LOG_SEVERITY
    if threads:
        options.intra_op_num_threads = int(threads)
    if inter_threads:
        options.inter_op_num_threads = int(inter_threads)
    if spinning is not None:
        value = "1" if spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", value)
        options.add_session_config_entry("session.inter_op.allow_spinning", value)
    return options


def make_session(
    model: str | Path | bytes | onnx.ModelProto,
    providers: list[str] | tuple[str, ...] | None = None,
    threads: int | None = None,
    opt_level: str = "all",
    spinning: bool | None = None,
    precision: str = DEFAULT_PRECISION,
    *,
    arena: bool = True,
) -> ort.InferenceSession:
    """An InferenceSession from a path, serialized bytes or a ModelProto, through the specs of
    `providers` (qtool names or aliases, in priority order; default cpu) at `precision`
    (fp32: reduced precision forbidden; auto: each provider's own choice). `arena=False`
    turns off ONNX Runtime's CPU memory arena, which otherwise keeps each session's largest
    working set after a run (for many small sessions alive at once).

    A model the providers cannot load is bad input (QtoolError, exit 2) whose one line names
    the provider(s) and, where onnxruntime says which, the op."""
    specs = session_specs(providers)
    options = session_options(threads, opt_level, spinning)
    options.enable_cpu_mem_arena = arena
    chosen = [pair for spec in specs if (pair := spec.attach(options, threads, precision))]
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    source = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(source, sess_options=options, providers=chosen or None)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        where = source if isinstance(source, str) else "the model"
        raise QtoolError(load_failure(specs, where, exc)) from exc


_OP_PATTERNS = (
    re.compile(r"Could not find an implementation for (\S+?)\((\d+)\) node with name '([^']*)'"),
    re.compile(r"(\S+?)\((-?\d+)\) is not a registered function/op"),
    re.compile(r"No Op registered for (\S+) with domain_version of (\d+)"),
)


def failed_op(message: str) -> str | None:
    """The op onnxruntime names in a load error ("Abs (opset 13, node 'n0')"), if any."""
    for pattern in _OP_PATTERNS:
        found = pattern.search(message)
        if found:
            op, version = found.group(1), found.group(2)
            node = f", node '{found.group(3)}'" if pattern.groups > 2 else ""
            return f"{op} (opset {version}{node})" if int(version) >= 0 else op
    return None


def load_failure(specs: list[ProviderSpec], where: str, exc: BaseException) -> str:
    """One line: which provider could not load what, the op if onnxruntime names one, and
    onnxruntime's own first line."""
    names = ", ".join(f"{s.name} ({s.ort_name})" for s in specs)
    text = str(exc)
    op = failed_op(text)
    what = f"op {op} is not supported: " if op else ""
    return f"execution provider {names} cannot load {where}: {what}{first_line(exc)}"
