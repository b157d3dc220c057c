"""ONNX Runtime's quantiser, driven: pre-processing, node naming, one `quantize_static` call.

qtool does not re-implement quantisation; this module is the only one that calls
`quant_pre_process` and `quantize_static`, and it keeps ORT's logging off the CLI's output.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from qtool.errors import QtoolError, WorkFailed
from qtool.quantization.settings import QuantSettings

if TYPE_CHECKING:
    from qtool.quantization.calibration import Calibration


@contextlib.contextmanager
def quiet_ort_logging() -> Iterator[None]:
    """ORT's quantiser logs advice through the root logger and its histogram calibrators
    print() progress; keep the CLI's stdout (tables) and stderr readable."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(StringIO()):
            yield
    finally:
        root.setLevel(level)


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def op_types_to_quantize(exclude_op_types: list[str]) -> list[str]:
    """Every op type ORT can quantise minus the excluded ones (which must be among them)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    known = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    unknown = [t for t in exclude_op_types if t not in known]
    if unknown:
        raise QtoolError(
            f"{', '.join(unknown)} is not an op type ONNX Runtime quantises; "
            f"known: {', '.join(known)}",
            param="exclude_op_types",
        )
    return [t for t in known if t not in exclude_op_types]


CHILD_PROCESS_BYTES = 16 << 20  # models from this size are pre-processed in a child process
_CHILD = """
import sys
from pathlib import Path
from qtool.quantization.quantizer import preprocess_here
preprocess_here(Path(sys.argv[1]), Path(sys.argv[2]))
"""


def preprocess(src: Path, dst: Path) -> tuple[bool, str | None]:
    """quant_pre_process into dst; on failure copy src and say why (quantisation goes on
    without it).

    A model of CHILD_PROCESS_BYTES or more is pre-processed in a child process: symbolic
    shape inference (sympy) and the copies of the model it makes leave ~50 MB of modules and,
    at 100 MB of weights, ~300 MB of fragmented heap behind, on which calibration would then
    build its peak. A small model is pre-processed here, where the imports are paid once.
    """
    if src.stat().st_size < CHILD_PROCESS_BYTES:
        try:
            preprocess_here(src, dst)
            onnx.load(str(dst))  # a half-written file counts as a failure
            return True, None
        except Exception as exc:  # symbolic shape inference fails on many third-party models
            why = f"{type(exc).__name__}: {first_line(exc)}"
    else:
        args = [sys.executable, "-c", _CHILD, str(src), str(dst)]
        done = subprocess.run(args, capture_output=True, text=True)
        if done.returncode == 0 and dst.is_file() and dst.stat().st_size > 0:
            return True, None
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit {done.returncode}"
    shutil.copyfile(src, dst)
    return False, f"pre-processing failed ({why})"


def preprocess_here(src: Path, dst: Path) -> None:
    """ORT's quant_pre_process in this process, without importing torch for it.

    onnxruntime.tools, which pre-processing imports, imports torch in its __init__ whenever
    torch is installed, for PyTorch export helpers pre-processing never uses (2-4 s, ~250 MB):
    it is imported with torch hidden (an entry of None in sys.modules makes
    importlib.util.find_spec report it absent); torch imports normally afterwards."""
    if "onnxruntime.tools" not in sys.modules and "torch" not in sys.modules:
        sys.modules["torch"] = None  # type: ignore[assignment]
        try:
            import onnxruntime.tools.symbolic_shape_infer  # noqa: F401
        finally:
            del sys.modules["torch"]
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with quiet_ort_logging():
        quant_pre_process(str(src), str(dst))


def name_nodes(path: Path) -> onnx.ModelProto:
    """Give unnamed nodes stable names (op_index) so they can be excluded and reported."""
    model = onnx.load(str(path))
    taken = {n.name for n in model.graph.node if n.name}
    changed = False
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name, changed = name, True
            taken.add(name)
    if changed:
        onnx.save(model, str(path))
    return model


def check_nodes_exist(model: onnx.ModelProto, wanted: list[str]) -> None:
    """Nodes to keep in FP32 must be named as they are after pre-processing."""
    names = [n.name for n in model.graph.node]
    missing = [n for n in wanted if n not in names]
    if missing:
        shown = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
        raise QtoolError(
            f"no node named {', '.join(missing)} in the model (after pre-processing); "
            f"its nodes are: {shown}",
            param="exclude_nodes",
        )


@dataclass
class Job:
    """What every quantisation of one call shares: the pre-processed model and calibration."""

    pre_path: Path
    calibration: Calibration
    settings: QuantSettings
    op_types: list[str]


def quantize_once(job: Job, out: Path, exclude: list[str], fmt: str) -> None:
    """One `quantize_static` run into `out`, keeping the `exclude` nodes in FP32."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
        "distribution": CalibrationMethod.Distribution,
    }
    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    s = job.settings
    try:
        with quiet_ort_logging():
            quantize_static(
                str(job.pre_path),
                str(out),
                calibration_data_reader=job.calibration.reader(),
                quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                op_types_to_quantize=job.op_types,
                per_channel=s.per_channel,
                reduce_range=s.reduce_range,
                activation_type=types[s.activation_type],
                weight_type=types[s.weight_type],
                nodes_to_exclude=list(exclude),
                calibrate_method=methods[s.method],
                calibration_cache_path=str(job.calibration.cache),
            )
    except (QtoolError, WorkFailed):
        raise
    except Exception as exc:  # ORT raises plain ValueError/RuntimeError/onnx errors
        raise WorkFailed(
            f"ONNX Runtime could not quantise the model ({type(exc).__name__}: "
            f"{first_line(exc)}); try another calibration method or format, or exclude the "
            "op type that fails from quantisation"
        ) from exc
