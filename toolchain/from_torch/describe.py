"""What an exported model records about itself for later stages: class names, the
normalisation its input needs and the positive class of a two-class model.

These become the `qtool.class_names`, `qtool.normalization` and `qtool.positive_class`
metadata keys that eval, predict, serve, package and the model card read (through
qtool.modelfile.metadata and qtool.evaluation.model_io). A zoo model records what it was
trained with (its class names may be renamed, its normalisation not replaced); a user model
records what is given. Everything is checked against the model before it is exported.
"""

from __future__ import annotations

import math

from qtool.errors import QtoolError

DESCRIBED = ("class_names", "normalization", "positive_class")  # metadata keys, prefix dropped


def describe(meta: dict, settings, shape: tuple[int, ...], *, zoo: bool) -> dict:
    """The description metadata from the export settings, checked against `meta` so far
    (the zoo checkpoint's class names and normalisation) and the input shape."""
    out: dict[str, object] = {}
    names = list(meta.get("qtool.class_names") or [])
    if settings.class_names is not None:
        given = [n.strip() for n in settings.class_names]
        if any(not n for n in given) or len(set(given)) != len(given):
            raise QtoolError(
                f"class names must be distinct and not empty, got {','.join(given)!r}",
                param="class_names",
            )
        if zoo and names and len(given) != len(names):
            raise QtoolError(
                f"{len(given)} class names given but the model was trained on "
                f"{len(names)} classes ({', '.join(names)})",
                param="class_names",
            )
        names = given
        out["qtool.class_names"] = names
    if settings.normalization is not None:
        if zoo:
            raise QtoolError(
                "a zoo model records the normalisation it was trained with "
                f"({meta.get('qtool.normalization')}); it cannot be replaced",
                param="normalization",
            )
        out["qtool.normalization"] = check_normalization(settings.normalization, shape)
    if settings.positive_class is not None:
        out["qtool.positive_class"] = _positive(settings.positive_class, names)
    return out


def check_normalization(norm: dict, shape: tuple[int, ...]) -> dict:
    """mean/std: finite, std > 0, one value or one per channel (axis 1 of the input)."""
    channels = shape[1] if len(shape) >= 2 else 1
    values = {}
    for part in ("mean", "std"):
        items = [float(v) for v in norm.get(part) or []]
        if not items or not all(math.isfinite(v) for v in items):
            raise QtoolError(f"the {part} must be finite numbers", param="normalization")
        if len(items) not in (1, channels):
            raise QtoolError(
                f"{len(items)} {part} values for an input of {channels} channels "
                f"(shape {','.join(map(str, shape))}): give one value or one per channel",
                param="normalization",
            )
        values[part] = items
    if not all(v > 0 for v in values["std"]):
        raise QtoolError("every std must be positive", param="normalization")
    return values


def _positive(name: str, names: list[str]) -> str:
    if not names:
        raise QtoolError(
            f"positive class {name!r} needs class names to pick from: name the classes too",
            param="positive_class",
        )
    if len(names) != 2:
        raise QtoolError(
            f"a positive class is for two-class models; this one has {len(names)} classes",
            param="positive_class",
        )
    if name not in names:
        raise QtoolError(
            f"positive class {name!r} is not one of the classes ({', '.join(names)})",
            param="positive_class",
        )
    return name


def check_class_count(meta: dict, proto) -> None:
    """The named classes must be as many as the model's output scores (when it says)."""
    names = meta.get("qtool.class_names")
    if not names or not proto.graph.output:
        return
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    width = dims[-1].dim_value if len(dims) >= 2 else 0
    if width and width != len(names):
        raise QtoolError(
            f"{len(names)} class names given but the model scores {width} classes",
            param="class_names",
        )
