"""Rows per ONNX Runtime run when a data set is scored over and over (fault campaigns, the
bit search): as many as keep one run's intermediate tensors under a bound.

One run over a whole test split is the fastest for small models, but a run holds the
intermediate tensors of all its rows: a medium SASA network at 64 px computes ~70 MB of them
per row, and 400 rows in one run took a campaign to 8.7 GB. The bytes per row come from ONNX
shape inference with the batch set to 1: the sum over every tensor computed from the input,
an upper bound of what is alive at once (ONNX Runtime frees tensors as it goes), so the
bound holds whatever the execution order. Tensors of unknown shape are not counted; a model
shape inference cannot read keeps the plain row cap.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, shape_inference

MAX_ROWS = 1024  # rows per run at most, whatever the model
RUN_INTERMEDIATES_MB = 1024  # sum of one run's intermediate tensors (see the docstring)


def intermediate_bytes_per_row(model: onnx.ModelProto, input_name: str) -> int | None:
    """Bytes of every tensor computed from `input_name` for one row, or None when shape
    inference cannot read the model."""
    one = onnx.ModelProto()
    one.CopyFrom(model)
    inputs = [i for i in one.graph.input if i.name == input_name]
    if not inputs or not inputs[0].type.tensor_type.shape.dim:
        return None
    batch = inputs[0].type.tensor_type.shape.dim[0]
    batch.ClearField("dim_param")
    batch.dim_value = 1
    for out in one.graph.output:  # their declared batch would win over the inferred 1
        out.type.tensor_type.ClearField("shape")
    try:
        inferred = shape_inference.infer_shapes(one, data_prop=True)
    except Exception:  # noqa: BLE001 - any failure only means: no estimate
        return None
    infos = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.output)}
    from_input = {input_name}
    total = 0
    for node in inferred.graph.node:
        if not any(i in from_input for i in node.input):
            continue
        for out in node.output:
            if not out:
                continue
            from_input.add(out)
            total += _tensor_bytes(infos.get(out))
    return total


def _tensor_bytes(info: onnx.ValueInfoProto | None) -> int:
    if info is None or not info.type.tensor_type.HasField("shape"):
        return 0
    dims = info.type.tensor_type.shape.dim
    if any(not d.HasField("dim_value") for d in dims):
        return 0
    try:
        item = np.dtype(helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)).itemsize
    except (KeyError, TypeError):
        return 0
    return int(np.prod([d.dim_value for d in dims], dtype=np.int64)) * item


def rows_per_run(row_bytes: int | None, rows: int, cap: int = MAX_ROWS) -> int:
    """Rows for one run: all of `rows` up to `cap`, fewer when `row_bytes` says the run's
    intermediates would pass RUN_INTERMEDIATES_MB (never fewer than 1); runs of equal size
    (400 rows that fit 105 at a time are 4 runs of 100, not 3 of 105 and one of 85)."""
    fit = cap if not row_bytes else int(RUN_INTERMEDIATES_MB * 2**20 // row_bytes)
    most = max(1, min(rows, cap, fit))
    runs = max(1, -(-rows // most))  # an empty data set is refused where it is scored
    return max(1, -(-rows // runs))
