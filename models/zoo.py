"""The zoo's networks: a residual CNN, its stand-alone self-attention twin, ResNet-18, an MLP.

The CNN and the SASA network share one skeleton (stem, residual stages, global pooling,
linear head); only the spatial operator in the residual blocks differs, so the pair compares
convolution with local self-attention at equal depth and width, as Ramachandran et al. (2019)
do. Two skeletons: `small` is the demo's compact net (the stem pools the image to at most
16x16, two stages of one block each); `medium` and `large` keep the image (the stem halves
only images wider than 32 px, and quarters those of 128 px and more, as ResNet does) and run
four stages that each halve the size and double the width. `width` is the first stage's
channels and `depth` the blocks per stage. The attention layer itself is
`qtool.models.attention`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qtool.models.attention import LocalSelfAttention

LEGACY_STAGE_SIZE = 16  # the small skeleton's stem pools larger images down to this many px
STEM_KEEP = 32  # the medium/large stem keeps images up to this size a side
STEM_QUARTER = 128  # ... and quarters those at least this size (conv stride 2 + max pool)
STAGES = 4  # medium/large: stages, each halving the size (after the first) and doubling width


def _spatial(kind: str, cin: int, cout: int, stride: int, strided: bool) -> nn.Module:
    """A 3x3 convolution, or local self-attention. The small skeleton strides attention as
    Ramachandran et al. do (2x2 average pooling after it); medium and large attend from the
    strided query positions only, like a strided convolution (4x less work, and an odd size
    halves to what the stride-2 shortcut gives: 7 -> 4)."""
    if kind == "conv":
        return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
    if strided:
        return LocalSelfAttention(cin, cout, stride=stride)
    layer = LocalSelfAttention(cin, cout)
    return layer if stride == 1 else nn.Sequential(layer, nn.AvgPool2d(2))


class ResidualBlock(nn.Module):
    """Two spatial operators with batch norm and a (projected) shortcut."""

    def __init__(self, kind: str, cin: int, cout: int, stride: int, strided: bool = False):
        super().__init__()
        self.op1 = _spatial(kind, cin, cout, stride, strided)
        self.bn1 = nn.BatchNorm2d(cout)
        self.op2 = _spatial(kind, cout, cout, 1, strided)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.op1(x)))
        out = self.bn2(self.op2(out))
        return F.relu(out + self.shortcut(x))


def _stage(kind: str, cin: int, cout: int, stride: int, depth: int, strided: bool) -> nn.Module:
    """`depth` blocks, the first one changing width and size; one block is kept bare so the
    small skeleton's state-dict names (stage1.op1...) stay those of its checkpoints."""
    blocks = [ResidualBlock(kind, cin, cout, stride, strided)]
    blocks += [ResidualBlock(kind, cout, cout, 1, strided) for _ in range(depth - 1)]
    return blocks[0] if depth == 1 else nn.Sequential(*blocks)


def _image_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 4:
        raise ValueError(f"image models need an (N, C, H, W) input shape, got {input_shape}")
    _, channels, height, width = (int(d) for d in input_shape)
    return channels, height, width


class ResidualNet(nn.Module):
    """Stem conv, residual stages (all but the first halve the size), global pool, head."""

    def __init__(
        self,
        kind: str,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        size: str = "small",
        width: int = 32,
        depth: int = 1,
    ):
        super().__init__()
        channels, height, wide = _image_shape(input_shape)
        legacy = size == "small"
        side = max(height, wide)
        stride = 2 if not legacy and side > STEM_KEEP else 1
        stem: list[nn.Module] = [
            nn.Conv2d(channels, width, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        ]
        if legacy:
            while max(height, wide) > LEGACY_STAGE_SIZE:
                stem.append(nn.MaxPool2d(2))
                height, wide = height // 2, wide // 2
        elif side >= STEM_QUARTER:
            stem.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        widths = [width * 2**i for i in range(2 if legacy else STAGES)]
        cin = width
        for i, cout in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            self.add_module(f"stage{i}", _stage(kind, cin, cout, stride, depth, not legacy))
            cin = cout
        self.stages = len(widths)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(1, self.stages + 1):
            x = getattr(self, f"stage{i}")(x)
        return self.head(x.mean(dim=(2, 3)))


class BasicBlock(nn.Module):
    """ResNet's basic block, with torchvision's attribute names."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """He et al. (2016) ResNet-18 with torchvision's layer names, so its state dict matches.

    At width 64, depth 2 and >= 128 px it is torchvision's resnet18 (7x7/2 stem and max pool,
    11.7 M parameters for 1000 classes); smaller images get a 3x3 stem that keeps them (stride
    2 above 32 px), as CIFAR-style ResNets do.
    """

    def __init__(
        self, input_shape: tuple[int, ...], num_classes: int, *, width: int = 64, depth: int = 2
    ):
        super().__init__()
        channels, height, wide = _image_shape(input_shape)
        side = max(height, wide)
        if side >= STEM_QUARTER:
            self.conv1 = nn.Conv2d(channels, width, 7, stride=2, padding=3, bias=False)
        else:
            stride = 2 if side > STEM_KEEP else 1
            self.conv1 = nn.Conv2d(channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if side >= STEM_QUARTER else None
        cin = width
        for i in range(STAGES):
            cout = width * 2**i
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(cin, cout, stride)]
            blocks += [BasicBlock(cout, cout, 1) for _ in range(depth - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            cin = cout
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for i in range(STAGES):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(x.mean(dim=(2, 3)))


class MLP(nn.Module):
    """Fully connected net on flat vectors; image batches are flattened first."""

    def __init__(self, features: int, num_classes: int, hidden: tuple[int, ...] = (32,)):
        super().__init__()
        layers: list[nn.Module] = []
        width = features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


def build_cnn(input_shape: tuple[int, ...], num_classes: int, **arch) -> nn.Module:
    return ResidualNet("conv", input_shape, num_classes, **arch)


def build_sasa(input_shape: tuple[int, ...], num_classes: int, **arch) -> nn.Module:
    return ResidualNet("attention", input_shape, num_classes, **arch)


def build_resnet18(
    input_shape: tuple[int, ...], num_classes: int, *, size: str = "large", **arch
) -> nn.Module:
    return ResNet18(input_shape, num_classes, **arch)


def build_mlp(
    input_shape: tuple[int, ...], num_classes: int, *, size: str = "small", width=32, depth=1
) -> nn.Module:
    features = 1
    for d in input_shape[1:]:
        features *= int(d)
    return MLP(features, num_classes, hidden=(int(width),) * int(depth))
