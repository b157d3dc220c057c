"""Image views for ETF, on images in [0, 1] of any channel count (torch, imported by its users).

Two uses, both after Sun et al.'s public code, adapted to one-channel and small images:
- `random_views`: the random augmentations of the label-free surrogate training (SimCLR-style:
  random resized crop, horizontal flip, brightness and contrast jitter). No hue, saturation
  or random greyscale: digits and medical greyscale images have one channel. The crop keeps
  at least half of the area (SimCLR's 10 % of a 224 px image is 2 x 2 px of an 8 x 8 digit).
- `attack_views`: the fixed views ETF's criterion averages over (the image; brightness x1.5;
  flipped at contrast 0.5; the centre crop resized back at brightness x0.6; for three channels
  also the greyscale image). The paper's hue and saturation changes have no meaning on one
  channel, where the greyscale view would be the image itself, so one-channel images get four
  views; the centre crop keeps 3/4 of each side, not 1/2, since 1/2 of an 8 x 8 digit is 4 x 4.
Every view is differentiable in the image, so the attack's gradient flows through it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CROP_AREA = (0.5, 1.0)  # random resized crop: fraction of the area kept
CROP_RATIO = (3 / 4, 4 / 3)
JITTER = 0.4  # brightness and contrast factors drawn from [1 - JITTER, 1 + JITTER]
JITTER_P = 0.8  # chance that a view is jittered at all (SimCLR's colour-jitter probability)
FLIP_P = 0.5
VIEW_CROP = 0.75  # attack view: side of the centre crop, as a fraction of the image's side
LUMA = (0.299, 0.587, 0.114)


def grey(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luminance: ITU-R 601 weights for RGB, the channel mean otherwise."""
    if x.shape[1] == 3:
        w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)
    return x.mean(1, keepdim=True)


def brightness(x: torch.Tensor, factor) -> torch.Tensor:
    return (x * factor).clamp(0, 1)


def contrast(x: torch.Tensor, factor) -> torch.Tensor:
    """Blend with the mean grey level of each image (factor 1 = unchanged)."""
    mean = grey(x).mean(dim=(1, 2, 3), keepdim=True)
    return (factor * x + (1 - factor) * mean).clamp(0, 1)


def centre_crop_resized(x: torch.Tensor, fraction: float) -> torch.Tensor:
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top : top + ch, left : left + cw]
    return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)


def attack_views(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N * V, C, H, W), the V views of each image next to each other."""
    views = [
        x,
        brightness(x, 1.5),
        contrast(x.flip(-1), 0.5),
        brightness(centre_crop_resized(x, VIEW_CROP), 0.6),
    ]
    if x.shape[1] == 3:
        views.append(grey(x).expand_as(x))
    return torch.stack(views, dim=1).flatten(0, 1)


def view_count(channels: int) -> int:
    return 5 if channels == 3 else 4


def random_views(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random augmentation of every image, drawn from `gen` (deterministic for a seed)."""
    n = len(x)
    area = torch.empty(n).uniform_(*CROP_AREA, generator=gen)
    low_r, high_r = (math.log(r) for r in CROP_RATIO)
    ratio = torch.empty(n).uniform_(low_r, high_r, generator=gen).exp()
    sx = (area * ratio).sqrt().clamp(max=1.0)
    sy = (area / ratio).sqrt().clamp(max=1.0)
    tx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sx)
    ty = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sy)
    flip = torch.where(torch.rand(n, generator=gen) < FLIP_P, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sx * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = sy, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    jitter = (torch.rand(n, generator=gen) < JITTER_P).float().view(-1, 1, 1, 1)
    low, high = 1 - JITTER, 1 + JITTER
    b = 1 + jitter * (torch.empty(n, 1, 1, 1).uniform_(low, high, generator=gen) - 1)
    c = 1 + jitter * (torch.empty(n, 1, 1, 1).uniform_(low, high, generator=gen) - 1)
    return contrast(brightness(out, b), c)
