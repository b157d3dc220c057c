"""Is this a model onnx and ONNX Runtime can load? Checked once, where a model comes in.

`load_model` (most commands), `read_model_files` (flip) and the bundle loader of predict and
serve call these, so every later stage can trust what it reads: text fields are UTF-8 (the
protobuf runtime accepts any bytes in proto2 strings and raises only when Python reads
them), every initializer has a known data type, non-negative dims and as many stored bytes
as its shape needs, external data lies inside its file, the ONNX checker passes, and ONNX
Runtime builds a session from it. Every failure is one QtoolError line naming the file.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from qtool.errors import QtoolError
from qtool.modelfile.locate import ITEMSIZE, PACKED_4BIT, TensorLocation, locate_initializers

STRING_TYPE = onnx.TensorProto.STRING
KNOWN_TYPES = set(onnx.TensorProto.DataType.values()) - {onnx.TensorProto.UNDEFINED}


def check_text(model: onnx.ModelProto, where: str | Path) -> None:
    """Every string field (names, op types, metadata keys and values...) is valid UTF-8."""
    stack: list[tuple[Message, str]] = [(model, "model")]
    while stack:
        message, path = stack.pop()
        for desc, value in message.ListFields():
            here = f"{path}.{desc.name}"
            try:
                items = list(value) if _repeated(desc) else [value]
            except UnicodeDecodeError:
                items = [b""]
            if desc.type == FieldDescriptor.TYPE_MESSAGE:
                stack.extend((item, f"{here}[{i}]") for i, item in enumerate(items))
            elif desc.type == FieldDescriptor.TYPE_STRING and any(
                not isinstance(item, str) for item in items
            ):  # upb hands invalid UTF-8 back as bytes, or raises
                raise QtoolError(
                    f"{where} is not a well-formed ONNX model: {here} is not valid UTF-8 text"
                )


def _repeated(desc: FieldDescriptor) -> bool:
    repeated = getattr(desc, "is_repeated", None)  # protobuf >= 6; `label` before
    return repeated if repeated is not None else desc.label == FieldDescriptor.LABEL_REPEATED


def check_tensors(
    locations: list[TensorLocation], where: str | Path, model_file: Path | None = None
) -> None:
    """Known data types, non-negative dims, stored bytes matching the shape and, for
    external data, lying inside its file (beside `model_file`, inside its folder)."""
    from qtool.modelfile.load import external_data_path

    sizes: dict[str, int] = {}
    for loc in locations:
        name = f"{where}: initializer {loc.name!r}"
        if loc.file is not None and model_file is not None:
            if loc.file not in sizes:
                sizes[loc.file] = external_data_path(model_file, loc.name, loc.file).stat().st_size
            if loc.offset + loc.length > sizes[loc.file]:
                raise QtoolError(
                    f"{name} claims bytes {loc.offset}..{loc.offset + loc.length} of "
                    f"{loc.file}, which has only {sizes[loc.file]} bytes"
                )
        if loc.data_type not in KNOWN_TYPES:
            raise QtoolError(f"{name} has data type {loc.data_type}, which ONNX does not define")
        if any(d < 0 for d in loc.dims):
            raise QtoolError(f"{name} has a negative dimension {list(loc.dims)}")
        if loc.data_type == STRING_TYPE or loc.encoding not in ("raw_data", "external"):
            continue
        numel = loc.numel
        need = (numel + 1) // 2 if loc.data_type in PACKED_4BIT else numel * ITEMSIZE[loc.data_type]
        if loc.length != need:
            raise QtoolError(
                f"{name} stores {loc.length} bytes but its shape {list(loc.dims)} needs {need}"
            )


def check_model(
    model: onnx.ModelProto, data: bytes | bytearray | memoryview, where: str | Path,
    path: Path | None = None,
) -> list[TensorLocation]:  # fmt: skip
    """UTF-8 text, sound initializers (in `data`, the serialized model; external data beside
    `path`, the model file, when given) and the ONNX checker. Returns the initializers'
    locations."""
    check_text(model, where)
    try:
        locations = locate_initializers(data, None if path is None else path.parent)
    except QtoolError as exc:
        raise QtoolError(f"{where}: {exc}") from exc
    check_tensors(locations, where, path)
    try:
        onnx.checker.check_model(model if path is None else str(path))
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise QtoolError(f"{where} fails the ONNX checker: {first_line(exc)}") from exc
    return locations


def check_runtime(source: str | Path | bytes, where: str | Path) -> None:
    """ONNX Runtime builds a session from the model (a path resolves external data)."""
    from qtool.runtimes import make_session

    try:
        make_session(Path(source) if isinstance(source, str) else source, threads=1)
    except QtoolError as exc:
        raise QtoolError(
            f"{where} is not a model ONNX Runtime can load ({_after_colon(str(exc))}); "
            "check or re-export it"
        ) from exc


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _after_colon(message: str) -> str:
    head, sep, tail = message.partition(": ")
    return tail if sep and head.startswith("ONNX Runtime cannot load") else message
