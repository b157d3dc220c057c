"""Reading ONNX files, with one clear error per way a file can be bad.

Every command loads models through `load_model`: a missing, truncated or foreign file, or
external data that leaves the model's folder, is one QtoolError line, never a traceback.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from qtool.errors import QtoolError


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


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
