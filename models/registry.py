"""The model zoo's table of contents: what each model is and how it is trained.

Kept free of torch so `qtool --help`, `qtool demo` planning and listings work on servers that
only run ONNX models. Builders are named as "module:function" strings and imported on use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from qtool.errors import QtoolError


@dataclass(frozen=True)
class ModelSpec:
    """One zoo model: how to build it, what it is trained on by default, and how."""

    name: str
    description: str
    builder: str  # "module:function" taking (input_shape, num_classes) -> nn.Module
    default_data: str
    input_shape: tuple[int, ...]  # for the default data set, batch 1
    normalization: str  # "per-channel" (images, axis 1 of NCHW) or "per-feature" (flat vectors)
    input_kind: str  # "image" (needs NCHW images) or "vector" (tables, flattened images)
    epochs: int
    lr: float
    batch_size: int = 64
    weight_decay: float = 1e-4
    augment_shift: int = 0  # random translation in pixels during training (images only)

    def build(self, input_shape: tuple[int, ...] | list[int], num_classes: int):
        """Instantiate the torch module (imports torch)."""
        module_name, _, func_name = self.builder.partition(":")
        factory = getattr(importlib.import_module(module_name), func_name)
        return factory(tuple(int(d) for d in input_shape), int(num_classes))


ZOO: dict[str, ModelSpec] = {
    "cnn": ModelSpec(
        name="cnn",
        description="compact residual CNN (3x3 convolutions), 1 or 3 channel images",
        builder="qtool.models.zoo:build_cnn",
        default_data="digits",
        input_shape=(1, 1, 8, 8),
        normalization="per-channel",
        input_kind="image",
        epochs=30,
        lr=3e-3,
        augment_shift=1,
    ),
    "sasa": ModelSpec(
        name="sasa",
        description=(
            "the same network with its spatial convolutions replaced by local multi-head "
            "self-attention with relative position embeddings (Ramachandran et al. 2019)"
        ),
        builder="qtool.models.zoo:build_sasa",
        default_data="digits",
        input_shape=(1, 1, 8, 8),
        normalization="per-channel",
        input_kind="image",
        epochs=15,
        lr=3e-3,
        augment_shift=1,
    ),
    "mlp": ModelSpec(
        name="mlp",
        description="fully connected network for tables (breast-cancer) and flattened images",
        builder="qtool.models.zoo:build_mlp",
        default_data="breast-cancer",
        input_shape=(1, 30),
        normalization="per-feature",
        input_kind="vector",
        epochs=40,
        lr=3e-3,
        batch_size=64,
        weight_decay=0.5,
    ),
}


def list_models() -> list[ModelSpec]:
    return list(ZOO.values())


def get_spec(name: str) -> ModelSpec:
    """The spec of a zoo model; an unknown name is bad input (exit 2)."""
    try:
        return ZOO[name]
    except KeyError:
        raise QtoolError(f"unknown zoo model {name!r}: choose one of {', '.join(ZOO)}") from None


def input_shape_for(spec: ModelSpec, sample_shape: tuple[int, ...], kind: str) -> tuple[int, ...]:
    """Batch-1 input shape of `spec` for samples of shape (C, H, W) or (F,) of data `kind`."""
    if spec.input_kind == "image":
        if kind != "image" or len(sample_shape) != 3:
            raise QtoolError(
                f"{spec.name} needs image data (N, C, H, W) but this data set is {kind}: "
                "train mlp on tables"
            )
        return (1, *sample_shape)
    features = 1
    for d in sample_shape:
        features *= int(d)
    return (1, features)
