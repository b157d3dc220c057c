"""A hand-written ResNet (He et al. 2016) as a hospital would write it, for `qtool export`.

`resnet18` is the real thing (11.2 M parameters, 1 input channel, 2 classes): the benchmark
`benchmarks/scale.py` uses it at 128 px. `resnet_tiny` has the same structure (stem, four
stages of two basic blocks with BatchNorm, strided downsampling shortcuts, global pooling)
at widths 4-32, for a quick run of the benchmark (`--tiny`).
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, inp: int, out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inp != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inp, out, 1, stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(y + skip)


class ResNet(nn.Module):
    def __init__(self, widths: tuple[int, ...], in_channels: int = 1, classes: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, inp = [], widths[0]
        for i, w in enumerate(widths):
            stages.append(
                nn.Sequential(BasicBlock(inp, w, 1 if i == 0 else 2), BasicBlock(w, w, 1))
            )
            inp = w
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inp, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _with_running_stats(model: ResNet, seed: int) -> ResNet:
    """Non-trivial BatchNorm statistics (as after training), so folding them matters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def resnet18() -> ResNet:
    torch.manual_seed(0)
    return _with_running_stats(ResNet((64, 128, 256, 512)), 0)


def resnet_tiny() -> ResNet:
    torch.manual_seed(0)
    return _with_running_stats(ResNet((4, 8, 16, 32)), 0)
