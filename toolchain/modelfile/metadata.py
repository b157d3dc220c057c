"""qtool's own `metadata_props` (prefix `qtool.`): what a model expects, recorded once."""

from __future__ import annotations

import json

import onnx

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
