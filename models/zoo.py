"""The zoo's networks: a residual CNN, its stand-alone self-attention twin, and an MLP.

The CNN and the SASA network share one skeleton (stem, two residual stages, global pooling,
linear head); only the spatial operator in the residual blocks differs, so the pair compares
convolution with local self-attention at equal depth and width, as Ramachandran et al. (2019)
do. Every operator is chosen to export to plain ONNX ops that ONNX Runtime runs and
quantises: the attention neighbourhood is built with Pad + Slice + Concat (no Unfold/Im2Col),
the projections are 1x1 Convs and the attention products are MatMuls, so INT8 covers the
bulk of the arithmetic and `qtool inspect` counts its FLOPs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = (32, 64)
MAX_STAGE_SIZE = 16  # the stem pools larger images down to at most this many pixels a side


class LocalSelfAttention(nn.Module):
    """Multi-head self-attention over each pixel's k x k neighbourhood (SASA layer).

    Query from the centre pixel, keys and values from the neighbourhood; relative position
    embeddings (half the head channels for the row offset, half for the column offset) are
    added to the keys. Out-of-image neighbours are zero padding, as in convolution, so the
    layer needs no additive -inf mask (which would wreck an INT8 activation range).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, heads: int = 4):
        super().__init__()
        if out_channels % heads or (out_channels // heads) % 2:
            raise ValueError("out_channels must split into heads of an even number of channels")
        self.kernel, self.heads = kernel, heads
        self.head_dim = out_channels // heads
        self.out_channels = out_channels
        self.query = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.key = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.value = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        half = self.head_dim // 2
        self.rel_rows = nn.Parameter(torch.randn(half, kernel) / math.sqrt(self.head_dim))
        self.rel_cols = nn.Parameter(torch.randn(half, kernel) / math.sqrt(self.head_dim))

    def relative_embedding(self) -> torch.Tensor:
        """(head_dim, k*k): embedding of offset (a, b) = [rows[:, a]; cols[:, b]]."""
        k = self.kernel
        rows = self.rel_rows[:, :, None].expand(-1, k, k)
        cols = self.rel_cols[:, None, :].expand(-1, k, k)
        return torch.cat([rows, cols], dim=0).reshape(self.head_dim, k * k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        q = self.query(x) * (self.head_dim**-0.5)
        keys, values = self.key(x), self.value(x)
        if self.training:
            out = self._attend_unfold(q, keys, values, h, w)
        else:
            out = self._attend_slices(q, keys, values, h, w)
        return out.reshape(-1, self.out_channels, h, w)

    def _attend_unfold(self, q, keys, values, h: int, w: int) -> torch.Tensor:
        """Training path: Unfold and Mul+Sum, whose backward is cheap (no tiny batched GEMMs)."""
        k, kk, hw = self.kernel, self.kernel**2, h * w
        shape = (-1, self.heads, self.head_dim, kk, hw)
        keys = F.unfold(keys, k, padding=k // 2).reshape(shape)  # offsets row-major
        keys = keys + self.relative_embedding()[:, :, None]
        values = F.unfold(values, k, padding=k // 2).reshape(shape)
        logits = (q.reshape(-1, self.heads, self.head_dim, 1, hw) * keys).sum(2)
        attn = torch.softmax(logits, dim=2)  # (N, heads, kk, hw)
        return (attn.unsqueeze(2) * values).sum(3)  # (N, heads, head_dim, hw)

    def _attend_slices(self, q, keys, values, h: int, w: int) -> torch.Tensor:
        """Inference/export path: the training path's arithmetic with Pad + Slice + Concat in
        place of Unfold, so it exports to plain ONNX ops that ONNX Runtime runs and quantises.

        Neighbourhoods are stacked straight into (N, heads, head_dim, kk, hw) and reduced with
        Mul + ReduceSum: no Transpose of 5-D tensors and no batched 1 x d GEMMs, which made an
        earlier MatMul formulation 2.3x slower on CPU (Transpose alone was 54 % of run time).
        """
        k, pad, hw = self.kernel, self.kernel // 2, h * w

        def neighbourhood(t: torch.Tensor) -> torch.Tensor:  # (N, heads, head_dim, kk, hw)
            t = F.pad(t, (pad, pad, pad, pad))
            shifted = [
                t[:, :, i : i + h, j : j + w].reshape(-1, self.heads, self.head_dim, 1, hw)
                for i in range(k)
                for j in range(k)
            ]  # offsets row-major, as F.unfold orders them
            return torch.cat(shifted, dim=3)

        keys = neighbourhood(keys) + self.relative_embedding()[:, :, None]
        logits = (q.reshape(-1, self.heads, self.head_dim, 1, hw) * keys).sum(2)
        attn = torch.softmax(logits, dim=2)  # (N, heads, kk, hw)
        return (attn.unsqueeze(2) * neighbourhood(values)).sum(3)  # (N, heads, head_dim, hw)


def _spatial(kind: str, cin: int, cout: int, stride: int) -> nn.Module:
    """A 3x3 convolution, or local self-attention followed by 2x2 average pooling for stride."""
    if kind == "conv":
        return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
    layer = LocalSelfAttention(cin, cout)
    return layer if stride == 1 else nn.Sequential(layer, nn.AvgPool2d(2))


class ResidualBlock(nn.Module):
    """Two spatial operators with batch norm and a (projected) shortcut."""

    def __init__(self, kind: str, cin: int, cout: int, stride: int):
        super().__init__()
        self.op1 = _spatial(kind, cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.op2 = _spatial(kind, cout, cout, 1)
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


class ResidualNet(nn.Module):
    """Stem conv, two residual stages (the second halves the size), global pool, linear head."""

    def __init__(self, kind: str, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        if len(input_shape) != 4:
            raise ValueError(f"image models need an (N, C, H, W) input shape, got {input_shape}")
        _, channels, height, width = input_shape
        w0, w1 = WIDTHS
        stem: list[nn.Module] = [
            nn.Conv2d(channels, w0, 3, padding=1, bias=False),
            nn.BatchNorm2d(w0),
            nn.ReLU(),
        ]
        while max(height, width) > MAX_STAGE_SIZE:
            stem.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        self.stem = nn.Sequential(*stem)
        self.stage1 = ResidualBlock(kind, w0, w0, 1)
        self.stage2 = ResidualBlock(kind, w0, w1, 2)
        self.head = nn.Linear(w1, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.stage1(self.stem(x)))
        return self.head(x.mean(dim=(2, 3)))


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


def build_cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return ResidualNet("conv", input_shape, num_classes)


def build_sasa(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return ResidualNet("attention", input_shape, num_classes)


def build_mlp(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    features = 1
    for d in input_shape[1:]:
        features *= int(d)
    return MLP(features, num_classes)
