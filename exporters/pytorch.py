"""PyTorch -> ONNX export: user model files, the exporters, and a clean exported graph.

Two exporters, one entry each in EXPORTERS: `dynamo` (torch.export based, the default since
torch 2.9; its lowest opset is 18, older opsets are refused here instead of silently coming
out as 18) and `torchscript` (the legacy tracer, deprecated in torch 2.9+; used when it
exists, with a clear message when a torch build no longer ships it). The check that an
export computes what the module computes is `qtool.exporters.parity`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from qtool.errors import QtoolError, WorkFailed
from qtool.exporters.failures import advice_for, failure_cause
from qtool.exporters.modules import fx_tensor_modules, record_tensor_modules

MIN_DYNAMO_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "input", "logits"


# --- user model files ------------------------------------------------------------------------


def is_factory_spec(text: str) -> bool:
    """True for `path/to/file.py:factory` (the path part ends in .py)."""
    path, sep, func = text.rpartition(":")
    return bool(sep and func and path.endswith(".py"))


def load_factory(spec: str):
    """Import `path/to/file.py` and call `factory()`; returns (module, file path).

    The file is user code and runs as such (like `python file.py`); every way it can fail
    becomes one QtoolError line.
    """
    import torch

    path_text, _, func_name = spec.rpartition(":")
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise QtoolError(f"model file {path} does not exist: give path/to/file.py:factory")
    name = f"qtool_user_model_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise QtoolError(f"cannot import {path} as a Python module")
    py_module = importlib.util.module_from_spec(module_spec)
    try:
        sys.modules[name] = py_module
        module_spec.loader.exec_module(py_module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise QtoolError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    factory = getattr(py_module, func_name, None)
    if not callable(factory):
        found = [n for n in dir(py_module) if callable(getattr(py_module, n)) and n[0] != "_"]
        raise QtoolError(
            f"{path} has no callable {func_name!r}; callables there: {', '.join(found) or 'none'}"
        )
    try:
        model = factory()
    except Exception as exc:
        raise QtoolError(
            f"{path}:{func_name}() failed: {type(exc).__name__}: {exc}; "
            "the factory must take no arguments and return an nn.Module"
        ) from exc
    if not isinstance(model, torch.nn.Module):
        raise QtoolError(
            f"{path}:{func_name}() returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model, path


# --- export ----------------------------------------------------------------------------------


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run torch on n threads (restored after): on a busy 2-core box OpenMP's extra thread
    mostly waits at barriers, and one thread makes results independent of the core count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporters' warnings and chatter (torchvision notices, deprecations, the
    graph dumps torch.export prints when it fails: the cause is in the exception)."""
    names = ("torch.onnx", "torch.export", "torch._export", "torch._dynamo", "torch.fx")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),  # torch.export prints graph dumps
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def torchscript_available() -> bool:
    import torch

    utils = getattr(torch.onnx, "utils", None)
    return utils is not None and hasattr(utils, "export")


def _common(opset: int) -> dict:
    """Arguments both exporters take alike: opset and the input/output names."""
    return {"opset_version": opset, "input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME]}


def _export_dynamo(module, example, opset: int, dynamic_batch: bool):
    import torch

    dynamic = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
    program = torch.onnx.export(
        module,
        (example,),
        dynamo=True,
        dynamic_shapes=dynamic,
        optimize=True,
        external_data=False,
        **_common(opset),
    )
    model = program.model_proto
    record_tensor_modules(model, before=fx_tensor_modules(program))
    return model


def _export_torchscript(module, example, opset: int, dynamic_batch: bool):
    import onnx
    import torch

    fd, tmp = tempfile.mkstemp(suffix=".onnx")
    os.close(fd)
    try:
        axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
        torch.onnx.export(
            module,
            (example,),
            tmp,
            dynamo=False,
            dynamic_axes=axes,
            do_constant_folding=True,
            **_common(opset),
        )
        return onnx.load(tmp)
    finally:
        os.unlink(tmp)


def _check_dynamo(opset: int) -> None:
    import torch

    if opset < MIN_DYNAMO_OPSET:
        raise QtoolError(
            f"the dynamo exporter of torch {torch.__version__} writes opset "
            f">= {MIN_DYNAMO_OPSET} only (asked for {opset}): ask for opset "
            f"{MIN_DYNAMO_OPSET} or use the torchscript exporter",
            param="opset",
        )


def _check_torchscript(opset: int) -> None:
    import torch

    if not torchscript_available():
        raise QtoolError(
            f"torch {torch.__version__} no longer ships the TorchScript ONNX exporter: "
            "use the dynamo exporter",
            param="exporter",
        )


@dataclass(frozen=True)
class Exporter:
    """One torch -> ONNX exporter: its default opset, what it refuses, how it runs."""

    name: str
    default_opset: int
    check: Callable[[int], None]  # raises QtoolError for an opset/torch it cannot serve
    run: Callable  # (module, example, opset, dynamic_batch) -> onnx.ModelProto
    retry_hint: str  # what to try when it fails on a model


EXPORTERS: dict[str, Exporter] = {
    e.name: e
    for e in (
        Exporter(
            "dynamo", 18, _check_dynamo, _export_dynamo,
            "try a static batch size or the torchscript exporter",
        ),
        Exporter("torchscript", 17, _check_torchscript, _export_torchscript,
                 "try the dynamo exporter"),
    )
}  # fmt: skip
DEFAULT_OPSET = {name: e.default_opset for name, e in EXPORTERS.items()}


def get_exporter(name: str) -> Exporter:
    if name not in EXPORTERS:
        raise QtoolError(
            f"unknown exporter {name!r}: use {' or '.join(EXPORTERS)}", param="exporter"
        )
    return EXPORTERS[name]


def _example_input(input_shape: tuple[int, ...], dynamic_batch: bool):
    """A zero input to trace with; a dynamic batch is traced at 2, since torch.export
    specialises a size-1 dimension."""
    import torch

    shape = list(input_shape)
    if dynamic_batch and shape[0] == 1:
        shape[0] = 2
    return torch.zeros(shape, dtype=torch.float32)


def export_onnx(
    module,
    input_shape: tuple[int, ...],
    *,
    opset: int | None = None,
    dynamic_batch: bool = True,
    exporter: str = "dynamo",
):
    """Export `module` (eval mode) to an in-memory onnx.ModelProto with one input `input`
    (batch dimension symbolic unless dynamic_batch is False) and output `logits`."""
    import torch

    chosen = get_exporter(exporter)
    opset = chosen.default_opset if opset is None else int(opset)
    chosen.check(opset)
    example = _example_input(tuple(input_shape), dynamic_batch)
    module = module.eval()
    with torch.no_grad(), torch_threads(1):
        _check_runs(module, example)
    try:
        with torch.no_grad(), _quiet_exporter(), torch_threads(1):
            model = chosen.run(module, example, opset, dynamic_batch)
    except QtoolError:
        raise
    except Exception as exc:
        cause = failure_cause(exc)
        raise WorkFailed(
            f"the {exporter} exporter failed: {cause}; {advice_for(cause, chosen.retry_hint)}"
        ) from exc
    record_tensor_modules(model)  # node names before the optimiser renames fused nodes
    return simplify(model)


def _check_runs(module, example) -> None:
    """Run the module once in torch: a model that fails on the input shape before any export
    is bad input, said with torch's own reason rather than as an exporter failure."""
    try:
        module(example)
    except Exception as exc:
        cause = failure_cause(exc)
        advice = advice_for(cause, "fix the model or give the input shape it takes")
        shape = ",".join(map(str, example.shape))
        raise QtoolError(
            f"the model fails in torch itself on an input of shape {shape}: {cause}; {advice}",
            param="input_shape",
        ) from exc


def simplify(model):
    """Fold constants and drop dead nodes (onnxscript's optimizer) so the graph shows the
    model's operators and its weights as plain initializers; best effort."""
    try:
        import onnxscript.optimizer

        with _quiet_exporter():
            folded = onnxscript.optimizer.optimize(model)
        model = folded if folded is not None else model
    except Exception:  # optimisation is cosmetic; an unoptimised model is still correct
        pass
    record_tensor_modules(model)  # before the debug info that holds the module paths goes
    strip_debug_info(model)
    return model


def strip_debug_info(model) -> None:
    """Drop the exporter's per-node stack traces and names (metadata_props, doc_string).

    The dynamo exporter stores them on every node; for the small zoo models they were over
    half the file, which would distort every FP32-vs-INT8 size comparison downstream.
    """
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        graph.doc_string = ""
        for value in [*graph.input, *graph.output, *graph.value_info]:
            del value.metadata_props[:]
            value.doc_string = ""
        for tensor in graph.initializer:
            del tensor.metadata_props[:]
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
            for attr in node.attribute:
                if attr.HasField("g"):
                    graphs.append(attr.g)
                graphs.extend(attr.graphs)
    model.doc_string = ""
