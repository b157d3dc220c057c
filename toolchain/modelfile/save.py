"""Saving ONNX models atomically; models over 2 GB keep their weights in one external file."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from onnx import external_data_helper

from qtool.outputs import atomic_write, staging_dir

TWO_GB = 2**31 - 1


def save_model(model: onnx.ModelProto, out: str | Path, *, external: bool | None = None) -> Path:
    """Save atomically; models over 2 GB (or with external=True) keep weights in OUT.data."""
    out = Path(out)
    if external is None:
        external = _tensor_bytes(model) > TWO_GB - 64 * 2**20
    if not external:
        return atomic_write(out, model.SerializeToString())
    location = out.name + ".data"
    with staging_dir(out) as tmpdir:
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
