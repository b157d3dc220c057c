"""qtool's own `metadata_props` (prefix `qtool.`): what a model expects, recorded once.

A model file comes from anywhere, so the keys later stages act on are checked here, where
they are read: `normalization` ({"mean": [...], "std": [...]}, numbers, std > 0, equal
lengths), `class_names` (a list of strings), `input_shape` (a list of dims: ints > 0,
names or null), `dynamic_batch` (a bool); `model`, `dataset`, `positive_class` a string (the
last one of the class names). A value of the wrong type is one QtoolError line naming the
key, not a TypeError three stages later.
"""

from __future__ import annotations

import json
import math

import onnx

from qtool import limits
from qtool.errors import QtoolError
from qtool.outputs import to_jsonable

METADATA_PREFIX = "qtool."


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


def qtool_metadata(model: onnx.ModelProto, where: str = "the model") -> dict[str, object]:
    """qtool's own metadata keys (prefix `qtool.`), JSON values decoded, the keys stages act
    on checked (`where` names the model in the error)."""
    out: dict[str, object] = {}
    for key, value in read_metadata(model).items():
        if key.startswith(METADATA_PREFIX):
            try:
                out[key[len(METADATA_PREFIX) :]] = json.loads(value)
            except (json.JSONDecodeError, RecursionError):
                out[key[len(METADATA_PREFIX) :]] = value
    for key in TEXT_KEYS:  # written as plain strings: "7" reads back as JSON 7
        if isinstance(out.get(key), (int, float)) and not isinstance(out[key], bool):
            out[key] = read_metadata(model)[METADATA_PREFIX + key]
    for key, check in CHECKS.items():
        if out.get(key) is not None:
            problem = check(out[key])
            if problem:
                raise QtoolError(
                    f"{where} has metadata {METADATA_PREFIX}{key} that {problem}; fix or remove "
                    "it (qtool export writes it)"
                )
    positive, names = out.get("positive_class"), out.get("class_names")
    if positive is not None and names and positive not in names:
        raise QtoolError(
            f"{where} has metadata {METADATA_PREFIX}positive_class {positive!r}, which is not "
            "one of its class_names; fix or remove it (qtool export writes it)"
        )
    return out


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _normalization(value: object) -> str | None:
    if not isinstance(value, dict):
        return 'is not {"mean": [...], "std": [...]}'
    lengths = set()
    for part in ("mean", "std"):
        items = value.get(part)
        if items is None:
            continue
        items = items if isinstance(items, list) else [items]
        if not items or not all(_number(v) for v in items):
            return f"has a {part} that is not a list of finite numbers"
        if part == "std" and not all(v > 0 for v in items):
            return "has a std that is not positive"
        lengths.add(len(items))
    if len(lengths - {1}) > 1:
        return "has mean and std of different lengths"
    return None


def _class_names(value: object) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return "is not a list of strings"
    if len(value) > limits.current().classes:
        return (
            f"names {len(value):,} classes, over the classes limit of {limits.current().classes:,}"
        )
    return None


def _input_shape(value: object) -> str | None:
    ok = isinstance(value, list) and all(
        v is None
        or isinstance(v, str)
        or (isinstance(v, int) and not isinstance(v, bool) and v > 0)
        for v in value
    )
    return None if ok else "is not a list of dimensions (integers > 0, names or null)"


def _text(value: object) -> str | None:
    return None if isinstance(value, str) else "is not a string"


def _flag(value: object) -> str | None:
    return None if isinstance(value, bool) else "is not true or false"


TEXT_KEYS = ("model", "dataset", "positive_class")
CHECKS = {
    "normalization": _normalization,
    "class_names": _class_names,
    "input_shape": _input_shape,
    "dynamic_batch": _flag,
    "model": _text,
    "dataset": _text,
    "positive_class": _text,
}
