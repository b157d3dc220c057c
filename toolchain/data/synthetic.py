"""`synthetic:KIND[:SIZE]`: a seeded, learnable image task at medical-image sizes, offline.

For testing the pipeline (training, export, quantisation, timing, flips) at realistic input
sizes without downloads, **not for accuracy claims**: the task is made up. Each image is a
smooth tissue-like texture (low-pass filtered noise); half of them (class `lesion`) also hold
one faint, soft-edged round blob of random size, position and contrast. `lesion` images are
grey (1 channel); `lesion-rgb` are 3 channels (a stain-like tint per image, the lesion a bit
darker and redder). Images are stored as uint8, as real scans are, then scaled to [0, 1].

Splits are fixed: 1600 train, 400 val, 400 test images, balanced, each split generated from
its own constant seed (`SEED` + the kind, size and split), so every machine and every stage
sees the same samples and loading one split never generates another. Size limit: 28 to 224
px a side (1600 RGB images of 224 px are 0.96 GB as float32).
"""

from __future__ import annotations

import numpy as np

from qtool.data.dataset import Dataset, DataSpec
from qtool.errors import QtoolError

SEED = 17
KINDS = {"lesion": 1, "lesion-rgb": 3}  # kind -> channels
DEFAULT_SIZE = 64
MIN_SIZE, MAX_SIZE = 28, 224
SPLIT_SIZES = {"train": 1600, "val": 400, "test": 400}
CLASS_NAMES = ["normal", "lesion"]
CHUNK = 200  # images generated at a time (bounds the FFT's working memory)


def parse(argument: str) -> tuple[str, int]:
    """`KIND` or `KIND:SIZE` -> (kind, size); a bad kind or size is a QtoolError."""
    kind, _, size_text = argument.partition(":")
    if kind not in KINDS:
        raise QtoolError(
            f"unknown synthetic kind {kind!r}: use {' or '.join(KINDS)}, e.g. synthetic:lesion:64"
        )
    if not size_text:
        return kind, DEFAULT_SIZE
    if not size_text.isdigit() or not MIN_SIZE <= int(size_text) <= MAX_SIZE:
        raise QtoolError(
            f"synthetic image size {size_text!r} is not a whole number from {MIN_SIZE} to "
            f"{MAX_SIZE} (pixels a side), e.g. synthetic:{kind}:64"
        )
    return kind, int(size_text)


def check(argument: str) -> None:
    parse(argument)


def load(spec: DataSpec, split: str, explicit: bool) -> Dataset:
    kind, size = parse(spec.argument or "")
    count = SPLIT_SIZES[split]
    seed = [SEED, list(KINDS).index(kind), size, list(SPLIT_SIZES).index(split)]
    x, y = generate(kind, size, count, seed)
    extra = {"positive_class": 1, "generator_seed": seed, "synthetic": True}
    return Dataset(f"synthetic:{kind}:{size}", split, x, y, list(CLASS_NAMES), "image", extra)


def generate(kind: str, size: int, count: int, seed: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """`count` images (float32 NCHW in [0, 1]) and labels, balanced, from one seed."""
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    labels = rng.permutation(np.arange(count) % 2).astype(np.int64)
    channels = KINDS[kind]
    out = np.empty((count, channels, size, size), np.float32)
    for start in range(0, count, CHUNK):
        stop = min(start + CHUNK, count)
        out[start:stop] = _images(rng, labels[start:stop], size, channels)
    return out, labels


def _texture(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Smooth random texture, zero mean and unit std per image (noise low-passed by FFT)."""
    noise = rng.standard_normal((n, size, size))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    cutoff = rng.uniform(0.04, 0.09, (n, 1, 1))  # cycles per pixel: blobs of a few px to ~S/4
    spectrum = np.fft.rfft2(noise) * np.exp(-(fy**2 + fx**2) / (2 * cutoff**2))
    tex = np.fft.irfft2(spectrum, s=(size, size))
    tex -= tex.mean(axis=(1, 2), keepdims=True)
    return tex / (tex.std(axis=(1, 2), keepdims=True) + 1e-8)


def _lesions(rng: np.random.Generator, labels: np.ndarray, size: int) -> np.ndarray:
    """A soft round blob (peak 1) in each image labelled 1, zeros elsewhere."""
    n = len(labels)
    radius = rng.uniform(0.06, 0.14, n) * size
    cy = rng.uniform(0.2, 0.8, n) * size
    cx = rng.uniform(0.2, 0.8, n) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dist2 = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2
    blob = np.exp(-dist2 / (2 * radius[:, None, None] ** 2))
    return blob * labels[:, None, None]


def _images(rng: np.random.Generator, labels: np.ndarray, size: int, channels: int) -> np.ndarray:
    """One chunk: texture + faint lesion, with per-image brightness and contrast, as uint8."""
    n = len(labels)
    tex = _texture(rng, n, size)
    lesion = _lesions(rng, labels, size) * rng.uniform(3.0, 4.5, (n, 1, 1))  # in texture stds
    base = rng.uniform(0.35, 0.55, (n, 1, 1))
    contrast = rng.uniform(0.08, 0.12, (n, 1, 1))
    grey = base + contrast * (tex + lesion)
    if channels == 1:
        img = grey[:, None]
    else:
        tint = rng.uniform(0.8, 1.2, (n, 3, 1, 1))
        stain = np.array([0.6, -0.3, -0.1])[None, :, None, None]  # lesion: redder
        img = grey[:, None] * tint + contrast[:, None] * lesion[:, None] * stain
    as_uint8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return as_uint8.astype(np.float32) / 255.0
