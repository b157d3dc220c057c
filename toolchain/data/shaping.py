"""Samples meet a model: fit a batch to an input shape, then normalise it as the model asks.

Data sets come out in their own shape (images NCHW in [0, 1], tables unscaled); the model's
input shape and metadata decide the rest, here, for eval, quantise, campaigns and predict.
"""

from __future__ import annotations

import numpy as np

from qtool.errors import QtoolError


def fit_to_input(x: np.ndarray, shape: list[int | str | None]) -> np.ndarray:
    """Reshape/resize samples to a model input shape (symbolic dims are left as they are).

    Images are resized with bilinear interpolation and converted between 1 and 3 channels;
    a 4-D image batch meeting a 2-D input is flattened (an MLP on images).
    """
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
    if len(dims) == 2:
        flat = x.reshape(len(x), -1)
        if dims[1] is not None and flat.shape[1] != dims[1]:
            raise QtoolError(
                f"samples have {flat.shape[1]} features but the model expects {dims[1]}: "
                "pick the data set the model was trained on"
            )
        return np.ascontiguousarray(flat, dtype=np.float32)
    if len(dims) != 4 or x.ndim != 4:
        rest = list(zip(dims[1:], x.shape[1:], strict=False))
        if x.ndim == len(dims) and all(d is None or d == s for d, s in rest):
            return x
        raise QtoolError(
            f"samples of shape {tuple(x.shape[1:])} do not fit the model input {shape}: "
            "pick the data set the model was trained on, or name the model input to feed"
        )
    _, c, h, w = dims
    if c is not None and x.shape[1] != c:
        if x.shape[1] == 1 and c == 3:
            x = np.repeat(x, 3, axis=1)
        elif x.shape[1] == 3 and c == 1:
            x = x.mean(axis=1, keepdims=True)
        else:
            raise QtoolError(f"samples have {x.shape[1]} channels but the model expects {c}")
    if (h is not None and x.shape[2] != h) or (w is not None and x.shape[3] != w):
        x = resize_images(x, h or x.shape[2], w or x.shape[3])
    return np.ascontiguousarray(x, dtype=np.float32)


def resize_images(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an NCHW float batch (align-corners=False, like Pillow/torch)."""
    n, c, h, w = x.shape

    def axis(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(dst) + 0.5) * (src / dst) - 0.5
        pos = np.clip(pos, 0, src - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, src - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, fy = axis(h, height)
    x0, x1, fx = axis(w, width)
    top = x[:, :, y0, :] * (1 - fy)[None, None, :, None] + x[:, :, y1, :] * fy[None, None, :, None]
    out = top[:, :, :, x0] * (1 - fx) + top[:, :, :, x1] * fx
    return out.astype(np.float32)


def normalize(x: np.ndarray, mean: list[float] | None, std: list[float] | None) -> np.ndarray:
    """Apply per-channel (images) or per-feature (tables) mean/std along axis 1."""
    if mean is None and std is None:
        return x
    shape = [1, -1] + [1] * (x.ndim - 2)
    m = np.asarray(mean if mean is not None else 0.0, dtype=np.float32)
    s = np.asarray(std if std is not None else 1.0, dtype=np.float32)
    for name, values in (("mean", m), ("std", s)):
        if values.size not in (1, x.shape[1]):
            raise QtoolError(
                f"the model's normalisation has {values.size} {name} values but its input has "
                f"{x.shape[1]} {'channels' if x.ndim == 4 else 'features'}; fix "
                "qtool.normalization in its metadata"
            )
    if m.ndim:
        m = m.reshape(shape)
    if s.ndim:
        s = s.reshape(shape)
    return ((x - m) / s).astype(np.float32)
