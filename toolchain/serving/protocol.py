"""The Open Inference Protocol (KServe / Triton "v2") REST payloads, without any HTTP.

Requests are checked against the model's inputs before anything runs: JSON shape, names,
datatype (must equal the model's), shape (rank and every fixed dimension), the number of
values, and the batch limit. Each problem is a `RequestError` carrying the HTTP status and
one line for the client: `{"error": "..."}` as the protocol's error object says.

Supported: JSON tensor data (flat row-major or nested lists), every numeric datatype and
BOOL, the optional `id`, `outputs` and `parameters` fields. Not supported: BYTES tensors and
the binary-data extension (refused with a 400 saying so), model versions.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

PLATFORM = "onnx_onnxv1"
# v2 datatype <-> numpy dtype <-> onnxruntime type string
DATATYPES = {
    "BOOL": (np.bool_, "tensor(bool)"),
    "UINT8": (np.uint8, "tensor(uint8)"),
    "UINT16": (np.uint16, "tensor(uint16)"),
    "UINT32": (np.uint32, "tensor(uint32)"),
    "UINT64": (np.uint64, "tensor(uint64)"),
    "INT8": (np.int8, "tensor(int8)"),
    "INT16": (np.int16, "tensor(int16)"),
    "INT32": (np.int32, "tensor(int32)"),
    "INT64": (np.int64, "tensor(int64)"),
    "FP16": (np.float16, "tensor(float16)"),
    "FP32": (np.float32, "tensor(float)"),
    "FP64": (np.float64, "tensor(double)"),
}
BY_ORT_TYPE = {ort_type: name for name, (_, ort_type) in DATATYPES.items()}


class RequestError(Exception):
    """A request the server will not run: HTTP `status` and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as the protocol describes it (-1 for a variable dim)."""

    name: str
    datatype: str
    shape: list[int]

    @classmethod
    def from_ort(cls, arg) -> TensorSpec:
        dims = [d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or [])]
        return cls(arg.name, BY_ORT_TYPE.get(arg.type, arg.type), dims)

    def as_json(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


def model_metadata(name: str, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> dict:
    return {
        "name": name,
        "platform": PLATFORM,
        "inputs": [t.as_json() for t in inputs],
        "outputs": [t.as_json() for t in outputs],
    }


@dataclass
class InferRequest:
    feeds: dict[str, np.ndarray]
    outputs: list[str] | None
    id: str | None


def parse_infer_request(
    body: bytes, inputs: list[TensorSpec], outputs: list[TensorSpec], max_batch: int
) -> InferRequest:
    """The checked feeds of an inference request body (see the module docstring)."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the request body is not JSON ({exc})") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise RequestError(400, 'the request must be a JSON object with an "inputs" list')
    _refuse_binary(payload.get("parameters"))
    by_name = {t.name: t for t in inputs}
    feeds: dict[str, np.ndarray] = {}
    for item in payload["inputs"]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise RequestError(400, 'every input must be an object with a "name"')
        spec = by_name.get(item["name"])
        if spec is None:
            raise RequestError(
                400, f"the model has no input {item['name']!r}; its inputs are {_names(inputs)}"
            )
        if spec.name in feeds:
            raise RequestError(400, f"input {spec.name!r} is given twice")
        feeds[spec.name] = _tensor(item, spec, max_batch)
    missing = [t.name for t in inputs if t.name not in feeds]
    if missing:
        raise RequestError(400, f"the request lacks input(s) {', '.join(map(repr, missing))}")
    wanted = _requested_outputs(payload.get("outputs"), outputs)
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError(400, '"id" must be a string')
    return InferRequest(feeds, wanted, request_id)


def _refuse_binary(parameters) -> None:
    if isinstance(parameters, dict) and any("binary_data" in k for k in parameters):
        raise RequestError(400, "the binary tensor data extension is not supported; send JSON")


def _names(tensors: list[TensorSpec]) -> str:
    return ", ".join(repr(t.name) for t in tensors)


def _tensor(item: dict, spec: TensorSpec, max_batch: int) -> np.ndarray:
    name, datatype, shape = spec.name, item.get("datatype"), item.get("shape")
    _refuse_binary(item.get("parameters"))
    if datatype not in DATATYPES:
        known = ", ".join(DATATYPES)
        raise RequestError(400, f"input {name!r}: datatype {datatype!r} is not one of {known}")
    if datatype != spec.datatype:
        raise RequestError(
            400, f"input {name!r} has datatype {datatype}; the model takes {spec.datatype}"
        )
    ok = isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
    if not ok or len(shape) != len(spec.shape):
        raise RequestError(
            400, f"input {name!r} has shape {shape}; the model takes {spec.shape} (-1: any)"
        )
    if any(want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)):
        raise RequestError(400, f"input {name!r} has shape {shape}; the model takes {spec.shape}")
    if shape and shape[0] > max_batch:
        raise RequestError(
            413, f"input {name!r} has a batch of {shape[0]}; this server's limit is {max_batch}"
        )
    if "data" not in item:
        raise RequestError(400, f'input {name!r} has no "data"')
    dtype = DATATYPES[datatype][0]
    try:
        values = np.asarray(item["data"], dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise RequestError(
            400, f"input {name!r}: data must be numbers in flat or nested lists ({exc})"
        ) from exc
    expected = math.prod(shape)
    if values.size != expected:
        raise RequestError(
            400, f"input {name!r} has {values.size} values; shape {shape} needs {expected}"
        )
    return values.reshape(shape)


def _requested_outputs(requested, outputs: list[TensorSpec]) -> list[str] | None:
    if requested is None:
        return None
    if not isinstance(requested, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested
    ):
        raise RequestError(400, '"outputs" must be a list of objects with a "name"')
    known = {t.name for t in outputs}
    for o in requested:
        if o["name"] not in known:
            raise RequestError(
                400, f"the model has no output {o['name']!r}; its outputs are {_names(outputs)}"
            )
        _refuse_binary(o.get("parameters"))
    return [o["name"] for o in requested]


def tensor_json(name: str, array: np.ndarray) -> dict:
    """One response output; NaN/Inf become null (JSON has no spelling for them)."""
    array = np.asarray(array)
    datatype = BY_ORT_TYPE.get(f"tensor({_ort_name(array.dtype)})", "FP32")
    data = array.ravel().tolist()
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        data = [v if math.isfinite(v) else None for v in data]
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}


def _ort_name(dtype: np.dtype) -> str:
    names = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
    return names.get(np.dtype(dtype), np.dtype(dtype).name)


def infer_response(model: str, request_id: str | None, outputs: list[tuple[str, np.ndarray]]):
    response = {"model_name": model, "outputs": [tensor_json(n, a) for n, a in outputs]}
    if request_id is not None:
        response["id"] = request_id
    return response
