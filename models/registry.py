"""The model zoo's table of contents: what each model is and how it is trained.

Kept free of torch so `qtool --help`, `qtool demo` planning and listings work on servers that
only run ONNX models. Builders are named as "module:function" strings and imported on use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from qtool.errors import QtoolError

SIZES = ("small", "medium", "large")
MAX_WIDTH = 512  # channels of the first stage (image models) or hidden units (mlp)
MAX_DEPTH = 8  # blocks per stage (image models) or hidden layers (mlp)
# (size, width, depth) of the CNN/SASA skeletons: small is the demo's compact net; medium is
# ~4.9 M parameters as a CNN (1.8 M as SASA), large ~11 M (3.9 M): see qtool.models.zoo
RESIDUAL_SIZES = (("small", 32, 1), ("medium", 64, 1), ("large", 64, 2))


@dataclass(frozen=True)
class ModelSpec:
    """One zoo model: how to build it, what it is trained on by default, and how."""

    name: str
    description: str
    builder: str  # "module:function" taking (input_shape, num_classes, **architecture)
    default_data: str
    input_shape: tuple[int, ...]  # for the default data set, batch 1
    normalization: str  # "per-channel" (images, axis 1 of NCHW) or "per-feature" (flat vectors)
    input_kind: str  # "image" (needs NCHW images) or "vector" (tables, flattened images)
    epochs: int
    lr: float
    batch_size: int = 64
    weight_decay: float = 1e-4
    augment_shift: int = 0  # random translation in pixels during training (images only)
    # (size, width, depth) presets, the first one the default; kept out of repr so the demo's
    # checkpoint cache key (a digest of the repr) stays that of the training recipe
    sizes: tuple[tuple[str, int, int], ...] = field(default=(("small", 32, 1),), repr=False)
    width_multiple: int = field(default=1, repr=False)  # e.g. SASA heads need width % 8 == 0

    def architecture(
        self, size: str | None = None, width: int | None = None, depth: int | None = None
    ) -> dict:
        """{"size", "width", "depth"}: a preset (default the first), optionally overridden.

        Errors name the argument (`size`, `width`, `depth`) that is wrong.
        """
        presets = {name: (w, d) for name, w, d in self.sizes}
        size = self.sizes[0][0] if size is None else size
        if size not in presets:
            raise QtoolError(
                f"{self.name} comes in sizes {', '.join(presets)}, not {size!r}", param="size"
            )
        width = presets[size][0] if width is None else int(width)
        depth = presets[size][1] if depth is None else int(depth)
        if not 1 <= width <= MAX_WIDTH or width % self.width_multiple:
            rule = f" and a multiple of {self.width_multiple}" if self.width_multiple > 1 else ""
            raise QtoolError(
                f"width {width} is out of range: use 1 to {MAX_WIDTH}{rule}", param="width"
            )
        if not 1 <= depth <= MAX_DEPTH:
            raise QtoolError(f"depth {depth} is out of range: use 1 to {MAX_DEPTH}", param="depth")
        return {"size": size, "width": width, "depth": depth}

    def build(self, input_shape: tuple[int, ...] | list[int], num_classes: int, architecture=None):
        """Instantiate the torch module (imports torch); `architecture` as from
        `architecture()` (None: the default size)."""
        module_name, _, func_name = self.builder.partition(":")
        factory = getattr(importlib.import_module(module_name), func_name)
        arch = dict(architecture or self.architecture())
        return factory(tuple(int(d) for d in input_shape), int(num_classes), **arch)


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
        sizes=RESIDUAL_SIZES,
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
        sizes=RESIDUAL_SIZES,
        width_multiple=8,  # 4 heads of an even number of channels
    ),
    "resnet18": ModelSpec(
        name="resnet18",
        description=(
            "ResNet-18 (He et al. 2016; torchvision's layer names), the standard CNN baseline; "
            "large is the real one (width 64, 11.7 M parameters at 1000 classes)"
        ),
        builder="qtool.models.zoo:build_resnet18",
        default_data="digits",
        input_shape=(1, 1, 8, 8),
        normalization="per-channel",
        input_kind="image",
        epochs=30,
        lr=3e-3,
        augment_shift=1,
        sizes=(("large", 64, 2), ("small", 16, 2), ("medium", 32, 2)),
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
