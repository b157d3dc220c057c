"""Reading, describing and writing ONNX files, with one clear error per way a file can be bad.

Every command loads models through `load_model` and saves them through `save_model`, which
writes atomically through `qtool.outputs` (the one place where output rules live).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper, numpy_helper

from qtool.errors import QtoolError
from qtool.outputs import atomic_write, temp_prefix, to_jsonable

METADATA_PREFIX = "qtool."
TWO_GB = 2**31 - 1
QOPERATOR_OPS = {
    "QLinearConv",
    "QLinearMatMul",
    "QGemm",
    "MatMulInteger",
    "ConvInteger",
    "QLinearAdd",
    "QLinearMul",
    "DynamicQuantizeMatMul",
}
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


# --- loading ---------------------------------------------------------------------------------


def load_model(
    path: str | Path, *, check: bool = True, load_external: bool = True
) -> onnx.ModelProto:
    """Load an ONNX file, turning every failure into one QtoolError line."""
    path = Path(path)
    if not path.exists():
        raise QtoolError(f"model file {path} does not exist: check the path")
    if path.is_dir():
        raise QtoolError(f"{path} is a directory, not an ONNX model file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise QtoolError(
            f"{path} is not an ONNX model (cannot parse it as protobuf: {_first_line(exc)}); "
            "is the file truncated or of another format?"
        ) from exc
    if not model.HasField("graph") or model.ir_version == 0:
        raise QtoolError(f"{path} is not an ONNX model (no graph or IR version); check the file")
    _check_external_files(model, path)
    if load_external:
        external_data_helper.load_external_data_for_model(model, str(path.parent))
    if check:
        try:
            onnx.checker.check_model(str(path))
        except onnx.checker.ValidationError as exc:
            raise QtoolError(f"{path} fails the ONNX checker: {_first_line(exc)}") from exc
    return model


def _check_external_files(model: onnx.ModelProto, path: Path) -> None:
    for tensor in external_data_helper._get_all_tensors(model):
        if external_data_helper.uses_external_data(tensor):
            location = external_data_helper.ExternalDataInfo(tensor).location
            external_data_path(path, tensor.name, location)


def external_data_path(model_path: Path, tensor: str, location: str) -> Path:
    """The external-data file a tensor names, refused when it leaves the model's folder."""
    base = model_path.parent.resolve()
    target = (base / location).resolve()
    if Path(location).is_absolute() or base not in target.parents:
        raise QtoolError(
            f"{model_path}: tensor {tensor!r} points to external data outside the model's "
            f"folder ({location}); refusing to read it"
        )
    if not target.is_file():
        raise QtoolError(
            f"{model_path}: external-data file {location} for tensor {tensor!r} is missing; "
            "copy it next to the model"
        )
    return target


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- writing ---------------------------------------------------------------------------------


def save_model(model: onnx.ModelProto, out: str | Path, *, external: bool | None = None) -> Path:
    """Save atomically; models over 2 GB (or with external=True) keep weights in OUT.data."""
    out = Path(out)
    if external is None:
        external = _tensor_bytes(model) > TWO_GB - 64 * 2**20
    if not external:
        return atomic_write(out, model.SerializeToString())
    location = out.name + ".data"
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=temp_prefix(out)) as tmpdir:
        tmp_model = Path(tmpdir) / out.name
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        onnx.save_model(
            copy,
            str(tmp_model),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=location,
            size_threshold=1024,
        )
        os.replace(Path(tmpdir) / location, out.parent / location)
        os.replace(tmp_model, out)
    return out


def _tensor_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in external_data_helper._get_all_tensors(model))


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- metadata --------------------------------------------------------------------------------


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def set_metadata(model: onnx.ModelProto, values: dict[str, object]) -> None:
    """Set metadata_props in place; non-string values are stored as JSON."""
    current = read_metadata(model)
    for key, value in values.items():
        current[key] = value if isinstance(value, str) else json.dumps(to_jsonable(value))
    del model.metadata_props[:]
    for key, value in current.items():
        model.metadata_props.add(key=key, value=value)


def qtool_metadata(model: onnx.ModelProto) -> dict[str, object]:
    """qtool's own metadata keys (prefix `qtool.`), JSON values decoded."""
    out: dict[str, object] = {}
    for key, value in read_metadata(model).items():
        if key.startswith(METADATA_PREFIX):
            try:
                out[key[len(METADATA_PREFIX) :]] = json.loads(value)
            except json.JSONDecodeError:
                out[key[len(METADATA_PREFIX) :]] = value
    return out


# --- summary ---------------------------------------------------------------------------------


@dataclass
class ValueSpec:
    name: str
    dtype: str
    shape: list


@dataclass
class InitializerInfo:
    name: str
    dtype: str
    shape: list[int]
    bytes: int
    role: str


@dataclass
class ModelSummary:
    path: str
    file_bytes: int
    ir_version: int
    opset: int
    producer: str
    inputs: list[ValueSpec]
    outputs: list[ValueSpec]
    parameters: int
    flops: int
    quantization: str  # "QDQ", "QOperator" or "none"
    op_histogram: dict[str, int]
    initializers: list[InitializerInfo] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


def dtype_name(elem_type: int) -> str:
    return onnx.TensorProto.DataType.Name(elem_type).lower()


def value_spec(value: onnx.ValueInfoProto) -> ValueSpec:
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        return ValueSpec(value.name, value.type.WhichOneof("value") or "unknown", [])
    shape = [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim
    ]
    return ValueSpec(value.name, dtype_name(tensor.elem_type), shape)


def graph_inputs(model: onnx.ModelProto) -> list[ValueSpec]:
    """Real inputs: graph inputs that are not also initializers (old exporters list both)."""
    inits = {t.name for t in model.graph.initializer}
    return [value_spec(v) for v in model.graph.input if v.name not in inits]


def file_size(path: Path) -> int:
    """Bytes on disk of the model file plus the external-data files it references."""
    model = onnx.load(str(path), load_external_data=False)
    size = path.stat().st_size
    locations = {
        external_data_helper.ExternalDataInfo(t).location
        for t in external_data_helper._get_all_tensors(model)
        if external_data_helper.uses_external_data(t)
    }
    return size + sum((path.parent / loc).stat().st_size for loc in locations)


def quantization_kind(model: onnx.ModelProto) -> str:
    ops = {n.op_type for n in model.graph.node}
    if ops & QOPERATOR_OPS:
        return "QOperator"
    if ops & QDQ_OPS:
        return "QDQ"
    return "none"


def initializer_roles(graph: onnx.GraphProto) -> dict[str, str]:
    """Role of each initializer by how the graph uses it: weight, bias, qparam or other."""
    roles: dict[str, str] = {}
    producers_of_dq = {}
    producers = {out: node for node in graph.node for out in node.output}
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            producers_of_dq[node.output[0]] = node

    def source(name: str) -> str:
        """Follow Cast/Transpose/Reshape/... (and DequantizeLinear) back to a stored tensor."""
        for _ in range(16):
            node = producers.get(name)
            if node is None or node.op_type not in _PASS_THROUGH or not node.input:
                break
            name = node.input[0]
        return name

    for node in graph.node:
        op, ins = node.op_type, list(node.input)
        if op in _EXTRA_ROLES:  # QGemm, DynamicQuantizeMatMul, recurrent layers, ...
            for i, name in enumerate(ins):
                role = _EXTRA_ROLES[op].get(i)
                if name and role:
                    roles.setdefault(source(name) if role != "qparam" else name, role)
            continue
        if op in ("QuantizeLinear", "DequantizeLinear"):
            for name in ins[1:]:
                roles.setdefault(name, "qparam")
        elif op in ("QLinearConv", "QLinearMatMul"):
            for i, name in enumerate(ins):
                if op == "QLinearConv" and i == 3 or op == "QLinearMatMul" and i == 3:
                    roles.setdefault(name, "weight")
                elif op == "QLinearConv" and i == 8:
                    roles.setdefault(name, "bias")
                elif i != 0:
                    roles.setdefault(name, "qparam")
        elif op in ("ConvInteger", "MatMulInteger"):
            if len(ins) > 1:
                roles.setdefault(ins[1], "weight")
            for name in ins[2:]:
                roles.setdefault(name, "qparam")
        if op in ("Conv", "Gemm", "MatMul", "ConvTranspose"):
            if len(ins) > 1:
                w = ins[1]
                dq = producers_of_dq.get(w)
                roles.setdefault(dq.input[0] if dq is not None else source(w), "weight")
            if op in ("Conv", "Gemm", "ConvTranspose") and len(ins) > 2 and ins[2]:
                b = ins[2]
                dq = producers_of_dq.get(b)
                roles.setdefault(dq.input[0] if dq is not None else source(b), "bias")
    return roles


# Ops whose output is their first input re-expressed (weights often pass through these).
_PASS_THROUGH = {
    "Cast",
    "Transpose",
    "Reshape",
    "Identity",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "DequantizeLinear",
}
# Input index -> role for ops not covered above (contrib QOperator ops, recurrent layers).
_EXTRA_ROLES: dict[str, dict[int, str]] = {
    "QGemm": {
        1: "qparam",
        2: "qparam",
        3: "weight",
        4: "qparam",
        5: "qparam",
        6: "bias",
        7: "qparam",
        8: "qparam",
    },
    "DynamicQuantizeMatMul": {1: "weight", 2: "qparam", 3: "qparam", 4: "bias"},
    "MatMulIntegerToFloat": {
        1: "weight",
        2: "qparam",
        3: "qparam",
        4: "qparam",
        5: "qparam",
        6: "bias",
    },
    "LSTM": {1: "weight", 2: "weight", 3: "bias"},
    "GRU": {1: "weight", 2: "weight", 3: "bias"},
    "RNN": {1: "weight", 2: "weight", 3: "bias"},
}


def summarize(path: str | Path, model: onnx.ModelProto | None = None) -> ModelSummary:
    path = Path(path)
    model = model if model is not None else load_model(path)
    graph = model.graph
    roles = initializer_roles(graph)
    inits = [
        InitializerInfo(
            t.name,
            dtype_name(t.data_type),
            list(t.dims),
            _stored_bytes(t),
            roles.get(t.name, "other"),
        )
        for t in graph.initializer
    ]
    parameters = sum(int(np.prod(i.shape, dtype=np.int64)) for i in inits if i.role != "qparam")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ModelSummary(
        path=str(path),
        file_bytes=file_size(path),
        ir_version=model.ir_version,
        opset=opset,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        inputs=graph_inputs(model),
        outputs=[value_spec(v) for v in graph.output],
        parameters=parameters,
        flops=count_flops(model),
        quantization=quantization_kind(model),
        op_histogram=dict(Counter(n.op_type for n in graph.node).most_common()),
        initializers=inits,
        metadata=read_metadata(model),
    )


def _stored_bytes(t: onnx.TensorProto) -> int:
    if external_data_helper.uses_external_data(t):
        info = external_data_helper.ExternalDataInfo(t)
        if info.length:
            return int(info.length)
    if t.raw_data:
        return len(t.raw_data)
    return int(numpy_helper.to_array(t).nbytes) if t.dims or t.data_type else 0


# --- FLOPs -----------------------------------------------------------------------------------


def count_flops(model: onnx.ModelProto, batch: int = 1) -> int:
    """Multiply-adds x2 of Conv/Gemm/MatMul (and their quantised forms, and Mul->ReduceSum
    dot products) for one batch.

    Uses ONNX shape inference; symbolic dims count as `batch`. Ops whose shapes cannot be
    inferred are skipped rather than guessed.
    """
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # shape inference is best-effort on third-party models
        inferred = model
    shapes: dict[str, list[int]] = {}
    graph = inferred.graph
    for value in list(graph.value_info) + list(graph.input) + list(graph.output):
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            shapes[value.name] = [
                d.dim_value if d.HasField("dim_value") else batch
                for d in value.type.tensor_type.shape.dim
            ]
    for t in graph.initializer:
        shapes[t.name] = list(t.dims)
    dq_source = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    for out, src in dq_source.items():
        if out not in shapes and src in shapes:
            shapes[out] = shapes[src]
    # Mul feeding ReduceSum is a dot product written out (e.g. local self-attention exported
    # without MatMul): count its multiply-adds like a MatMul's.
    reduce_sum_inputs = {n.input[0] for n in graph.node if n.op_type == "ReduceSum" and n.input}
    total = 0
    for node in graph.node:
        op = node.op_type
        if op == "Mul" and node.output[0] in reduce_sum_inputs and node.output[0] in shapes:
            total += 2 * int(np.prod(shapes[node.output[0]]))
            continue
        try:
            if op in ("Conv", "ConvInteger", "QLinearConv"):
                w_name = node.input[3] if op == "QLinearConv" else node.input[1]
                w, y = shapes[w_name], shapes[node.output[0]]
                total += 2 * int(np.prod(y)) * int(np.prod(w[1:]))
            elif op in ("MatMul", "MatMulInteger", "QLinearMatMul", "Gemm"):
                a_name = node.input[0]
                y = shapes[node.output[0]]
                a = shapes[a_name]
                k = a[-1]
                if op == "Gemm" and any(at.name == "transA" and at.i for at in node.attribute):
                    k = a[0]
                total += 2 * int(np.prod(y)) * int(k)
        except (KeyError, IndexError):
            continue
    return total
