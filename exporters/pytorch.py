"""PyTorch -> ONNX export and the parity check that proves the export computes the same thing.

Two exporters: `dynamo` (torch.export based, the default since torch 2.9; its lowest opset is
18, older opsets are refused here instead of silently coming out as 18) and `torchscript`
(the legacy tracer, deprecated in torch 2.9+; used when it exists, with a clear message when a
torch build no longer ships it). The parity check feeds the same samples through torch and
through an ONNX Runtime session with the optimisations users get, at batch 1 and in batches
of up to 32, and compares scores element by element like numpy.allclose.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qtool.errors import QtoolError, WorkFailed

EXPORTERS = ("dynamo", "torchscript")
MIN_DYNAMO_OPSET = 18
DEFAULT_OPSET = {"dynamo": 18, "torchscript": 17}
INPUT_NAME, OUTPUT_NAME = "input", "logits"
PARITY_BATCH = 32


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


def parse_input_shape(text: str | None) -> tuple[int, ...] | None:
    """'1,3,224,224' -> (1, 3, 224, 224); bad text is bad input."""
    if text is None:
        return None
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        dims = ()
    if len(dims) < 2 or any(d <= 0 for d in dims):
        raise QtoolError(
            f"--input-shape {text!r} is not a shape: give positive sizes like 1,3,224,224 "
            "(batch first)"
        )
    return dims


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
    """Silence the exporters' warnings and chatter (torchvision notices, deprecations)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def torchscript_available() -> bool:
    import torch

    utils = getattr(torch.onnx, "utils", None)
    return utils is not None and hasattr(utils, "export")


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

    if exporter not in EXPORTERS:
        raise QtoolError(f"unknown exporter {exporter!r}: use {' or '.join(EXPORTERS)}")
    opset = DEFAULT_OPSET[exporter] if opset is None else int(opset)
    if exporter == "dynamo" and opset < MIN_DYNAMO_OPSET:
        raise QtoolError(
            f"the dynamo exporter of torch {torch.__version__} writes opset "
            f">= {MIN_DYNAMO_OPSET} only (asked for {opset}): use --opset {MIN_DYNAMO_OPSET} "
            "or --exporter torchscript"
        )
    if exporter == "torchscript" and not torchscript_available():
        raise QtoolError(
            f"torch {torch.__version__} no longer ships the TorchScript ONNX exporter: "
            "use --exporter dynamo"
        )
    shape = list(input_shape)
    if dynamic_batch and shape[0] == 1:
        shape[0] = 2  # torch.export specialises a size-1 dimension; 2 keeps batch symbolic
    if not dynamic_batch:
        shape[0] = input_shape[0]
    example = torch.zeros(shape, dtype=torch.float32)
    module = module.eval()
    try:
        with torch.no_grad(), _quiet_exporter(), torch_threads(1):
            if exporter == "dynamo":
                dynamic = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
                program = torch.onnx.export(
                    module,
                    (example,),
                    dynamo=True,
                    opset_version=opset,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_shapes=dynamic,
                    optimize=True,
                    external_data=False,
                )
                model = program.model_proto
            else:
                model = _export_torchscript(module, example, opset, dynamic_batch)
    except QtoolError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = (
            "try --static-batch or --exporter torchscript"
            if exporter == "dynamo"
            else "try --exporter dynamo"
        )
        raise WorkFailed(f"the {exporter} exporter failed: {first[:200]}; {hint}") from exc
    return simplify(model)


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
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            do_constant_folding=True,
        )
        return onnx.load(tmp)
    finally:
        os.unlink(tmp)


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


# --- parity ----------------------------------------------------------------------------------


@dataclass
class ParityResult:
    """How closely ONNX Runtime reproduces torch on the same samples."""

    samples: int
    max_abs_diff: float
    max_rel_diff: float  # max |onnx - torch| / max |torch|
    top1_agreement: float
    atol: float
    rtol: float
    passed: bool
    batches: list[int]
    source: str = ""

    def summary(self) -> str:
        return (
            f"max abs diff {self.max_abs_diff:.3g}, max rel diff {self.max_rel_diff:.3g}, "
            f"top-1 agreement {100 * self.top1_agreement:.2f} % on {self.samples} samples "
            f"(atol {self.atol:g}, rtol {self.rtol:g})"
        )


def _first_output(out):
    import torch

    while isinstance(out, (tuple, list)):
        out = out[0]
    if isinstance(out, dict):
        out = next(iter(out.values()))
    if not isinstance(out, torch.Tensor):
        raise QtoolError(f"the model returned {type(out).__name__}; qtool needs a tensor output")
    return out


def check_parity(
    module,
    model_bytes: bytes,
    samples: np.ndarray,
    *,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    static_batch: int | None = None,
    source: str = "",
) -> ParityResult:
    """Run `samples` (already prepared: shaped and normalised) through torch and ORT.

    Dynamic models are checked at batch 1 (first sample) and in batches of up to 32; a
    static-batch model in batches of exactly its size. Passing means every score satisfies
    |onnx - torch| <= atol + rtol * |torch| and all are finite.
    """
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if static_batch:
        usable = len(samples) - len(samples) % static_batch
        samples = samples[: max(usable, 0)]
        chunks = [samples[i : i + static_batch] for i in range(0, len(samples), static_batch)]
    else:
        chunks = [samples[:1]] + [
            samples[i : i + PARITY_BATCH] for i in range(0, len(samples), PARITY_BATCH)
        ]
    if not chunks or not len(samples):
        raise QtoolError("no samples for the parity check")
    ref_parts, got_parts = [], []
    module = module.eval()
    with torch.no_grad(), torch_threads(1):
        for chunk in chunks:
            ref_parts.append(_first_output(module(torch.from_numpy(chunk))).numpy())
            got_parts.append(session.run(None, {name: chunk})[0])
    ref = np.concatenate([r.reshape(len(r), -1) for r in ref_parts])
    got = np.concatenate([g.reshape(len(g), -1) for g in got_parts])
    if ref.shape != got.shape:
        return ParityResult(
            len(ref), float("inf"), float("inf"), 0.0, atol, rtol, False,
            [len(c) for c in chunks], source,
        )  # fmt: skip
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    finite = bool(np.isfinite(got).all() and np.isfinite(ref).all())
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    max_abs = float(diff.max()) if diff.size else 0.0
    passed = finite and bool(np.all(diff <= atol + rtol * np.abs(ref)))
    top1 = float(np.mean(np.argmax(got, axis=1) == np.argmax(ref, axis=1))) if ref.size else 1.0
    return ParityResult(
        samples=int(len(samples)),
        max_abs_diff=max_abs if finite else float("inf"),
        max_rel_diff=(max_abs / scale if scale else max_abs) if finite else float("inf"),
        top1_agreement=top1,
        atol=float(atol),
        rtol=float(rtol),
        passed=passed,
        batches=sorted({len(c) for c in chunks}),
        source=source,
    )
