"""Reading ONNX files, with one clear error per way a file can be bad.

Every command loads models through `load_model`: a missing, truncated or foreign file, a
FIFO or device, external data that leaves the model's folder, or a model that fails the
checks of `validate` (UTF-8 text, sound initializers, the ONNX checker, ONNX Runtime
building a session) is one QtoolError line, never a traceback.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from qtool.errors import QtoolError
from qtool.readable import regular_file


def load_model(
    path: str | Path, *, check: bool = True, load_external: bool = True, runtime: bool = True
) -> onnx.ModelProto:
    """Load an ONNX file, turning every failure into one QtoolError line. With `check`, the
    model must pass `validate.check_model` and, with `runtime` too, load in ONNX Runtime."""
    from qtool.modelfile.validate import check_model, check_runtime

    path = model_path(path)
    data = path.read_bytes()
    model = parse_model(data, path)
    if check:
        check_model(model, data, path, path)
        if runtime:
            check_runtime(path, path)
    else:
        _check_external_files(model, path)
    if load_external:
        external_data_helper.load_external_data_for_model(model, str(path.parent))
    return model


def model_path(path: str | Path) -> Path:
    """A model file's path, refused unless it is a plain file (a FIFO would block forever)."""
    path = Path(path)
    if path.is_dir():
        raise QtoolError(f"{path} is a directory, not an ONNX model file")
    return regular_file(path, "model file")


def parse_model(data: bytes | bytearray, where: str | Path) -> onnx.ModelProto:
    """Serialized bytes -> ModelProto, or one line saying the file is not an ONNX model."""
    try:
        model = onnx.load_model_from_string(bytes(data))
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise QtoolError(
            f"{where} is not an ONNX model (cannot parse it as protobuf: {_first_line(exc)}); "
            "is the file truncated or of another format?"
        ) from exc
    if not model.HasField("graph") or model.ir_version == 0:
        raise QtoolError(f"{where} is not an ONNX model (no graph or IR version); check the file")
    return model


def _check_external_files(model: onnx.ModelProto, path: Path) -> None:
    for tensor in external_data_helper._get_all_tensors(model):
        if external_data_helper.uses_external_data(tensor):
            try:
                location = external_data_helper.ExternalDataInfo(tensor).location
            except ValueError as exc:  # a non-numeric offset or length
                raise QtoolError(
                    f"{path}: tensor {tensor.name!r} has malformed external-data entries ({exc})"
                ) from exc
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
