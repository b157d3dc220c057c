"""Static INT8 quantisation with ONNX Runtime's own quantiser, with its accuracy cost measured.

qtool does not re-implement quantisation: it prepares the model with
`onnxruntime.quantization.shape_inference.quant_pre_process`, calibrates and quantises with
`quantize_static`, and measures per-tensor error with `onnxruntime.quantization.qdq_loss_debug`.
What qtool adds is the plumbing around it: calibration samples prepared exactly as `qtool eval`
prepares them (same ModelIO), a `reduce_range` chosen from the CPU's instruction set, an
accuracy check against a budget, and an accuracy-aware loop that keeps the most damaged nodes
in FP32 until the budget is met.

Calibration runs once per call: its ranges are cached (`calibration_cache_path`) and every
re-quantisation of the accuracy-aware loop reuses them, so the loop costs quantise + eval +
a 32-sample debug run per step, not a new calibration.
"""

from __future__ import annotations

import contextlib
import logging
import math
import platform
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from io import StringIO
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from qtool.data.datasets import Dataset, load_dataset
from qtool.errors import QtoolError, WorkFailed
from qtool.evaluation.evaluate import ModelIO, model_io, run_scores
from qtool.modelfile.load import load_model, sha256_file
from qtool.modelfile.metadata import qtool_metadata, read_metadata, set_metadata
from qtool.modelfile.save import save_model
from qtool.outputs import check_output_path
from qtool.report import info
from qtool.runtimes import make_session

METHODS = ("minmax", "entropy", "percentile", "distribution")
FORMATS = ("qdq", "qoperator")
INT8_TYPES = ("uint8", "int8")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "amx_tile")
CALIB_BATCH = 32
SQNR_CAP_DB = 200.0  # identical tensors give ~300 dB (norm / float eps); reported capped


# --- settings --------------------------------------------------------------------------------


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (empty when it cannot be read)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def default_reduce_range(
    machine: str | None = None, flags: set[str] | None = None
) -> tuple[bool, str]:
    """reduce_range as ONNX Runtime advises it for this CPU, with the reason in words.

    On x86 without VNNI the u8 x s8 multiply-add (vpmaddubsw) can saturate its 16-bit
    intermediate sums, so ORT advises 7-bit weights there; VNNI/AMX accumulate in 32 bits
    and other architectures do not use that path, so full range is kept.
    """
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False, f"auto: {machine} is not x86, no u8s8 saturation risk"
    flags = cpu_flags() if flags is None else flags
    found = sorted(f for f in VNNI_FLAGS if f in flags)
    if found:
        return False, f"auto: x86 with {'/'.join(found)} (no u8s8 saturation)"
    if not flags:
        return True, "auto: x86, CPU flags unreadable, assuming no VNNI (avoids u8s8 saturation)"
    return True, "auto: x86 without VNNI (avoids u8s8 saturation)"


@dataclass
class QuantSettings:
    """Every setting that shaped the INT8 model; stored as the `qtool.quantization` metadata."""

    method: str
    format: str
    per_channel: bool
    activation_type: str
    weight_type: str
    reduce_range: bool
    reduce_range_reason: str
    exclude_nodes: list[str]  # asked for by the user
    exclude_op_types: list[str]
    fp32_nodes: list[str]  # kept in FP32 by the accuracy-aware loop
    calibration: str  # data spec
    calibration_split: str
    samples: int  # calibration samples actually used
    seed: int
    preprocessed: bool
    onnxruntime_version: str = ort.__version__


@dataclass
class TensorError:
    """Error of one activation tensor: FP32 model vs INT8 model on the same inputs (SQNR, dB).

    `sqnr_db` compares the FP32 tensor with the INT8 model's dequantised tensor (cumulative
    error up to here, qdq_loss_debug's `xmodel_err`). `added_noise` is the quantisation noise
    power this node adds, relative to the signal power: 10^(-SQNR/10) of its output minus the
    worst of its inputs (unmeasured float inputs count as noise-free). A wrecked layer adds
    ~1 (100 %), a healthy one 1e-4 or less; the accuracy-aware loop ranks by it, and so does
    the report's "worst first". (qdq_loss_debug's own `qdq_err` is not reported: where ORT folds a
    Relu into the quantiser it compares pre-Relu with post-Relu values and reads as noise.)
    """

    tensor: str
    node: str
    op_type: str
    sqnr_db: float
    added_noise: float
    # nodes kept FP32 if this tensor is chosen: its producer (with unmeasured producers that
    # feed it, e.g. a Conv whose Relu ORT fused into the quantiser) and its consumers, since
    # ORT puts a Q/DQ pair on a tensor when either side of it is quantised
    nodes: list[str] = field(default_factory=list)


@dataclass
class FallbackStep:
    step: int
    added: list[str]
    fp32_nodes: int
    accuracy: float
    drop_pp: float


@dataclass
class QuantizeReport:
    """Everything `qtool quantize` measured; JSON-able with qtool.outputs.to_jsonable."""

    source: str
    output: str | None
    written: bool
    settings: QuantSettings
    source_sha256: str
    size_before: int
    size_after: int
    size_ratio: float
    initializer_bytes_before: int  # tensors only: the file minus graph structure and metadata
    initializer_bytes_after: int
    eval_data: str | None
    eval_samples: int
    accuracy_before: float | None
    accuracy_after: float | None
    accuracy_drop_pp: float | None
    top1_agreement: float | None
    max_accuracy_drop_pp: float | None
    within_budget: bool | None
    fallback_step_size: int
    fallback_steps: list[FallbackStep]
    debug_samples: int
    tensor_errors: list[TensorError]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class BudgetNotMet(WorkFailed):
    """The accuracy budget could not be met; `.report` says how close it came."""

    def __init__(self, message: str, report: QuantizeReport):
        super().__init__(message)
        self.report = report


# --- calibration data ------------------------------------------------------------------------


def _batches(x: np.ndarray, batch: int, fixed: int | None) -> list[np.ndarray]:
    """Split prepared samples into batches; a static-batch input gets full batches (wrapping)."""
    if fixed:
        need = math.ceil(len(x) / fixed) * fixed
        idx = np.arange(need) % len(x)
        x = x[idx]
        batch = fixed
    return [x[i : i + batch] for i in range(0, len(x), batch)]


def _reader(name: str, batches: list[np.ndarray]):
    """A CalibrationDataReader streaming {input: batch} dicts (ORT's abstract class)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict | None:
            part = next(self._it, None)
            return None if part is None else {name: part}

        def __len__(self) -> int:
            return len(batches)

    return _Reader()


@contextlib.contextmanager
def _quiet_ort_logging() -> Iterator[None]:
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


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# --- the quantiser, one attempt --------------------------------------------------------------


@dataclass
class _Job:
    pre_path: Path
    reader_batches: list[np.ndarray]
    input_name: str
    cache: Path
    settings: QuantSettings
    op_types: list[str]


def _quantize_once(job: _Job, out: Path, exclude: list[str], fmt: str) -> None:
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
        with _quiet_ort_logging():
            quantize_static(
                str(job.pre_path),
                str(out),
                calibration_data_reader=_reader(job.input_name, job.reader_batches),
                quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                op_types_to_quantize=job.op_types,
                per_channel=s.per_channel,
                reduce_range=s.reduce_range,
                activation_type=types[s.activation_type],
                weight_type=types[s.weight_type],
                nodes_to_exclude=list(exclude),
                calibrate_method=methods[s.method],
                calibration_cache_path=str(job.cache),
            )
    except (QtoolError, WorkFailed):
        raise
    except Exception as exc:  # ORT raises plain ValueError/RuntimeError/onnx errors
        raise WorkFailed(
            f"ONNX Runtime could not quantise the model ({type(exc).__name__}: "
            f"{_first_line(exc)}); try another --method/--format or --exclude-op-types"
        ) from exc


def _op_types_to_quantize(exclude_op_types: list[str]) -> list[str]:
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    known = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    unknown = [t for t in exclude_op_types if t not in known]
    if unknown:
        raise QtoolError(
            f"--exclude-op-types: {', '.join(unknown)} is not an op type ONNX Runtime quantises; "
            f"known: {', '.join(known)}"
        )
    return [t for t in known if t not in exclude_op_types]


# --- pre-processing --------------------------------------------------------------------------


def _preprocess(src: Path, dst: Path) -> tuple[bool, str | None]:
    """quant_pre_process into dst; on failure copy src and say why (quantisation goes on)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        with _quiet_ort_logging():
            quant_pre_process(str(src), str(dst))
        onnx.load(str(dst))  # a half-written file counts as a failure
        return True, None
    except Exception as exc:  # symbolic shape inference fails on many third-party models
        shutil.copyfile(src, dst)
        return False, f"pre-processing failed ({type(exc).__name__}: {_first_line(exc)})"


def _name_nodes(path: Path) -> onnx.ModelProto:
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


# --- evaluation and per-tensor error ---------------------------------------------------------


def _predict(path: Path, io: ModelIO, x: np.ndarray, providers) -> np.ndarray:
    session = make_session(path, providers=providers)
    scores = run_scores(session, io, x)
    return np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=1)


def _tensor_errors(
    float_path: Path, qdq_path: Path, io: ModelIO, x: np.ndarray, graph: onnx.GraphProto, tmp: Path
) -> list[TensorError]:
    """Per-tensor SQNR via qdq_loss_debug, with each tensor mapped to the nodes producing it."""
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    aug_f, aug_q = tmp / "debug_fp32.onnx", tmp / "debug_int8.onnx"
    batches = _batches(x, CALIB_BATCH, io.fixed_batch)
    with _quiet_ort_logging():
        modify_model_output_intermediate_tensors(str(float_path), str(aug_f))
        modify_model_output_intermediate_tensors(str(qdq_path), str(aug_q))
        float_acts = collect_activations(str(aug_f), _reader(io.input_name, batches))
        qdq_acts = collect_activations(str(aug_q), _reader(io.input_name, batches))
    matched = create_activation_matching(qdq_acts, float_acts)
    matched = {k: v for k, v in matched.items() if v.get("float")}
    errors = compute_activation_error(matched)
    measured = {t: 10.0 ** (-min(e["xmodel_err"], SQNR_CAP_DB) / 10) for t, e in errors.items()}

    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[str]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.name)
    inits = {t.name for t in graph.initializer}
    memo: dict[str, float] = {}

    def upstream(tensor: str) -> float:
        """Relative noise of `tensor` or, when unmeasured, of what feeds it (graph input: 0)."""
        if tensor in memo:
            return memo[tensor]
        node = producer.get(tensor)
        if tensor in measured:
            value = measured[tensor]
        elif node is None:
            value = 0.0
        else:
            value = _inputs_noise(node)
        memo[tensor] = value
        return value

    def _inputs_noise(node: onnx.NodeProto) -> float:
        values = [upstream(i) for i in node.input if i and i not in inits]
        return max(values) if values else 0.0

    def segment(node: onnx.NodeProto) -> list[str]:
        """The node plus unmeasured producers feeding it (e.g. a Conv whose Relu was fused)."""
        out, stack, seen = [], [node], set()
        while stack:
            n = stack.pop()
            if n.name in seen:
                continue
            seen.add(n.name)
            out.append(n.name)
            for i in n.input:
                p = producer.get(i)
                if p is not None and i not in measured and i not in inits:
                    stack.append(p)
        return out

    result = []
    for tensor, noise in measured.items():
        node = producer.get(tensor)
        if node is None:  # a graph input: no node to keep in FP32
            continue
        added = max(0.0, noise - _inputs_noise(node))
        sqnr = min(errors[tensor]["xmodel_err"], SQNR_CAP_DB)
        result.append(
            TensorError(
                tensor=tensor,
                node=node.name,
                op_type=node.op_type,
                sqnr_db=round(float(sqnr), 3),
                added_noise=float(f"{added:.4g}"),
                nodes=segment(node) + [c for c in consumers.get(tensor, []) if c != node.name],
            )
        )
    result.sort(key=lambda e: (-e.added_noise, e.sqnr_db))
    return result


# --- the public API --------------------------------------------------------------------------


def quantize_model(
    src: str | Path,
    out: str | Path,
    calib: str,
    *,
    samples: int = 256,
    method: str = "minmax",
    fmt: str = "qdq",
    per_channel: bool = True,
    activation_type: str = "uint8",
    weight_type: str = "int8",
    reduce_range: bool | None = None,
    exclude_nodes: list[str] | tuple[str, ...] = (),
    exclude_op_types: list[str] | tuple[str, ...] = (),
    input_name: str | None = None,
    eval_data: str | None = None,
    max_accuracy_drop: float | None = None,
    keep_best: bool = False,
    seed: int = 0,
    force: bool = False,
    debug_samples: int = 32,
    fallback_step: int = 2,
    max_steps: int | None = None,
    providers: list[str] | tuple[str, ...] | None = None,
) -> QuantizeReport:
    """Quantise `src` to static INT8 at `out` and measure what it cost.

    Raises QtoolError on bad input (exit 2) and BudgetNotMet (a WorkFailed, exit 1) when
    `max_accuracy_drop` (percentage points) cannot be met even with nodes kept in FP32
    (within `max_steps` steps of `fallback_step` worst tensors each, when given);
    the model is then written only with `keep_best` (the best attempt), and the exception
    carries the report either way.
    """
    src, out = Path(src), Path(out)
    _check_choice("--method", method, METHODS)
    _check_choice("--format", fmt, FORMATS)
    _check_choice("--activation-type", activation_type, INT8_TYPES)
    _check_choice("--weight-type", weight_type, INT8_TYPES)
    if samples < 1 or debug_samples < 1 or fallback_step < 1:
        raise QtoolError("--samples, debug samples and the fallback step must be at least 1")
    if max_accuracy_drop is not None and max_accuracy_drop < 0:
        raise QtoolError("--max-accuracy-drop is in percentage points and must be >= 0")
    check_output_path(out, force=force, inputs=(src,))
    proto = load_model(src)
    meta = qtool_metadata(proto)
    source_sha = sha256_file(src)
    fp32 = make_session(src, providers=providers)
    io = model_io(fp32, meta, input_name)
    others = [i.name for i in fp32.get_inputs() if i.name != io.input_name]
    if others:
        raise QtoolError(
            f"{src} has more inputs than {io.input_name!r} ({', '.join(others)}); "
            "qtool quantize calibrates single-input models"
        )
    op_types = _op_types_to_quantize(list(exclude_op_types))

    calib_set = load_dataset(calib, default_split="train").take(samples, seed)
    calib_x = _prepare(io, calib_set, "calibration data", fp32, src)
    if reduce_range is None:
        rr, rr_reason = default_reduce_range()
    else:
        rr, rr_reason = reduce_range, "set by the user"
    info(f"reduce_range={rr} ({rr_reason})")

    eval_set, eval_note = _eval_dataset(eval_data, calib, meta)
    notes = [eval_note] if eval_note else []
    if max_accuracy_drop is not None and eval_set is None:
        raise QtoolError(
            "--max-accuracy-drop needs labelled evaluation data: pass --eval-data SPEC "
            f"({eval_note})"
        )
    eval_x = _prepare(io, eval_set, "evaluation data", fp32, src) if eval_set else None
    debug_x = calib_x[
        np.sort(np.random.default_rng(seed).permutation(len(calib_x))[:debug_samples])
    ]

    settings = QuantSettings(
        method=method,
        format=fmt,
        per_channel=per_channel,
        activation_type=activation_type,
        weight_type=weight_type,
        reduce_range=rr,
        reduce_range_reason=rr_reason,
        exclude_nodes=list(exclude_nodes),
        exclude_op_types=list(exclude_op_types),
        fp32_nodes=[],
        calibration=calib,
        calibration_split=calib_set.split,
        samples=len(calib_x),
        seed=seed,
        preprocessed=False,
    )

    with tempfile.TemporaryDirectory(prefix="qtool-quantize-") as tmpdir:
        tmp = Path(tmpdir)
        pre = tmp / "pre.onnx"
        settings.preprocessed, why = _preprocess(src, pre)
        if why:
            info(f"note: {why}; quantising without it")
            notes.append(why)
        pre_model = _name_nodes(pre)
        names = [n.name for n in pre_model.graph.node]
        missing = [n for n in exclude_nodes if n not in names]
        if missing:
            shown = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
            raise QtoolError(
                f"--exclude-nodes: no node named {', '.join(missing)} in the model "
                f"(after pre-processing); its nodes are: {shown}"
            )
        job = _Job(
            pre,
            _batches(calib_x, CALIB_BATCH, io.fixed_batch),
            io.input_name,
            tmp / "calibration.json",
            settings,
            op_types,
        )
        fp32_pred = _predict(src, io, eval_x, providers) if eval_x is not None else None
        if fp32_pred is not None:
            acc_before = float(np.mean(fp32_pred == eval_set.y))
        else:
            acc_before = None

        def attempt(extra: list[str], tag: str) -> dict:
            exclude = list(exclude_nodes) + extra
            q_path = tmp / f"q_{tag}.onnx"
            _quantize_once(job, q_path, exclude, fmt)
            qdq_path = q_path
            if fmt != "qdq":  # qdq_loss_debug reads QDQ models: measure the QDQ twin
                qdq_path = tmp / f"qdq_{tag}.onnx"
                _quantize_once(job, qdq_path, exclude, "qdq")
            errors = _tensor_errors(pre, qdq_path, io, debug_x, pre_model.graph, tmp)
            acc = agree = None
            if fp32_pred is not None:
                pred = _predict(q_path, io, eval_x, providers)
                acc = float(np.mean(pred == eval_set.y))
                agree = float(np.mean(pred == fp32_pred))
            return {"path": q_path, "extra": extra, "errors": errors, "acc": acc, "agree": agree}

        def drop_pp(result: dict) -> float | None:
            if result["acc"] is None:
                return None
            return round(100.0 * (acc_before - result["acc"]), 6)

        info(f"calibrating on {len(calib_x)} samples of {calib_set.spec} ({calib_set.split})")
        current = attempt([], "0")
        best = current
        steps: list[FallbackStep] = []
        within = None
        if max_accuracy_drop is not None:
            within = drop_pp(current) <= max_accuracy_drop + 1e-9
            step_no = 0
            while not within and (max_steps is None or step_no < max_steps):
                fp32_nodes = set(exclude_nodes) | set(current["extra"])
                chosen: list[str] = []
                picked = 0
                for err in current["errors"]:
                    new = [n for n in err.nodes if n not in fp32_nodes and n not in chosen]
                    if new:
                        chosen += new
                        picked += 1
                    if picked >= fallback_step:
                        break
                if not chosen:
                    break
                step_no += 1
                current = attempt(current["extra"] + chosen, str(step_no))
                steps.append(
                    FallbackStep(
                        step_no, chosen, len(current["extra"]), current["acc"], drop_pp(current)
                    )
                )
                info(
                    f"accuracy-aware step {step_no}: +{len(chosen)} node(s) in FP32 "
                    f"({', '.join(chosen)}), accuracy {100 * current['acc']:.2f} % "
                    f"(drop {drop_pp(current):.2f} pp)"
                )
                if current["acc"] > best["acc"]:
                    best = current
                within = drop_pp(current) <= max_accuracy_drop + 1e-9
            if within:
                best = current
        final = best if max_accuracy_drop is not None else current
        settings.fp32_nodes = list(final["extra"])
        model = onnx.load(str(final["path"]))
        _set_output_metadata(model, proto, settings, source_sha)
        size_after = len(model.SerializeToString())
        written = bool(within is not False or keep_best)
        if written:
            check_output_path(out, force=force, inputs=(src,))
            save_model(model, out)

    report = QuantizeReport(
        source=str(src),
        output=str(out) if written else None,
        written=written,
        settings=settings,
        source_sha256=source_sha,
        size_before=_size(src),
        size_after=size_after,
        size_ratio=size_after / _size(src),
        initializer_bytes_before=_init_bytes(proto),
        initializer_bytes_after=_init_bytes(model),
        eval_data=f"{eval_set.spec}:{eval_set.split}" if eval_set else None,
        eval_samples=len(eval_x) if eval_x is not None else 0,
        accuracy_before=acc_before,
        accuracy_after=final["acc"],
        accuracy_drop_pp=drop_pp(final),
        top1_agreement=final["agree"],
        max_accuracy_drop_pp=max_accuracy_drop,
        within_budget=within,
        fallback_step_size=fallback_step,
        fallback_steps=steps,
        debug_samples=len(debug_x),
        tensor_errors=final["errors"],
        notes=notes,
    )
    if within is False:
        kept = f"; the best attempt was written to {out}" if written else "; nothing written"
        raise BudgetNotMet(
            f"accuracy drop {report.accuracy_drop_pp:.2f} pp exceeds --max-accuracy-drop "
            f"{max_accuracy_drop} pp even with {len(settings.fp32_nodes)} node(s) kept in FP32"
            f"{kept}",
            report,
        )
    return report


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise QtoolError(f"{option} {value!r} is not one of: {', '.join(choices)}")


def _init_bytes(model: onnx.ModelProto) -> int:
    """Serialized bytes of initializers and Constant-node tensors (what quantisation shrinks)."""
    total = sum(t.ByteSize() for t in model.graph.initializer)
    for node in model.graph.node:
        if node.op_type == "Constant":
            total += sum(a.t.ByteSize() for a in node.attribute if a.HasField("t"))
    return max(int(total), 1)


def _size(path: Path) -> int:
    from qtool.modelfile.load import file_size

    try:
        return int(file_size(path))
    except TypeError:  # older signature file_size(path, model)
        return int(file_size(path, onnx.load(str(path), load_external_data=False)))


def _prepare(
    io: ModelIO, dataset: Dataset, what: str, session: ort.InferenceSession, src: Path
) -> np.ndarray:
    """Samples as eval feeds them; data that cannot fit the input is bad input (exit 2)."""
    where = (
        f"{what} {dataset.spec} ({dataset.split}, samples of shape {tuple(dataset.x.shape[1:])})"
    )
    try:
        x = io.prepare(dataset.x)
    except QtoolError as exc:
        raise QtoolError(
            f"{where} cannot feed input {io.input_name!r} {io.input_shape} of {src}: {exc}"
        ) from exc
    try:
        run_scores(session, io, x[: io.fixed_batch or 2])
    except Exception as exc:
        raise QtoolError(
            f"{where} does not run through input {io.input_name!r} {io.input_shape} of {src} "
            f"({_first_line(exc)}); pick the data set the model expects or the right --input"
        ) from exc
    return x


def _eval_dataset(
    eval_data: str | None, calib: str, meta: dict
) -> tuple[Dataset | None, str | None]:
    """Labelled data to score accuracy on: --eval-data, else the calib set's test split, else
    the data set named in the model's metadata. None (with the reason) when there is none."""
    if eval_data:
        ds = load_dataset(eval_data, default_split="test")
        if ds.y is None:
            raise QtoolError(f"--eval-data {eval_data} has no labels to score accuracy against")
        return ds, None
    reasons = []
    for spec in (calib, meta.get("dataset")):
        if not spec:
            continue
        try:
            ds = load_dataset(str(spec), split="test")
        except QtoolError as exc:
            reasons.append(str(exc))
            continue
        if ds.y is not None:
            return ds, None
        reasons.append(f"{spec} (test) has no labels")
    why = "; ".join(reasons) or "no evaluation data"
    return None, f"accuracy not measured: {why}"


def _set_output_metadata(
    model: onnx.ModelProto, source: onnx.ModelProto, settings: QuantSettings, sha: str
) -> None:
    """Carry the source's metadata over (normalisation, class names...) and add the settings."""
    values: dict[str, object] = dict(read_metadata(source))
    values["qtool.quantization"] = asdict(settings)
    values["qtool.source_sha256"] = sha
    values["qtool.seed"] = settings.seed
    set_metadata(model, values)
