"""The one image decoder: image files and uint8/float arrays -> float32 NCHW in [0, 1].

`folder:` data sets and `qtool predict` both read images here, so a PNG scores the same in
evaluation as in deployment. Pillow is imported only when a file is decoded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qtool.errors import MissingExtra, QtoolError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
GREY_MODES = ("1", "L", "I", "I;16", "F")  # Pillow modes read as one channel


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def to_float_nchw(images: np.ndarray, where: Path | str) -> tuple[np.ndarray, str]:
    """(N,H,W) or (N,H,W,C) images -> float32 NCHW ("image"); (N,F) stays a table ("tabular").

    uint8 is scaled by 1/255, anything else is taken as already in [0, 1]. A 4-D array whose
    last axis has 1, 3 or 4 entries (and whose second has not) is channels-last.
    """
    arr = np.asarray(images)
    if arr.ndim == 2:  # (N, F): a table stored in the same layout
        return arr.astype(np.float32), "tabular"
    if arr.ndim == 3:
        arr = arr[:, None, :, :]
    elif arr.ndim == 4:
        if arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3, 4):
            arr = arr.transpose(0, 3, 1, 2)
    else:
        raise QtoolError(f"{where}: images must be (N,H,W) or (N,H,W,C), got shape {arr.shape}")
    scale = 255.0 if arr.dtype == np.uint8 else 1.0
    return np.ascontiguousarray(arr.astype(np.float32) / scale), "image"


def decoded_to_float(images: np.ndarray) -> np.ndarray:
    """Decoded uint8 images, (N,H,W) grey or (N,H,W,3) RGB, -> float32 NCHW in [0, 1].

    The layout of decoded images is known, so unlike `to_float_nchw` nothing is guessed
    (a 3- or 4-pixel-high RGB image stays RGB).
    """
    arr = images[:, None, :, :] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(arr.astype(np.float32) / 255.0)


def _pillow():
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:
        raise MissingExtra("Pillow", "data", "reading images") from exc
    return Image, UnidentifiedImageError


def decode(
    path: Path, mode: str | None = None, size: tuple[int, int] | None = None, advice: str = ""
) -> np.ndarray:
    """One image file as uint8 (H, W) or (H, W, 3).

    `mode` "L" (grey) or "RGB"; None keeps grey images grey and makes the rest RGB.
    `size` (width, height) resizes bilinearly. `advice` ends the unreadable-file message.
    """
    image_cls, unidentified = _pillow()
    try:
        with image_cls.open(path) as img:
            img = img.convert(mode or image_mode(img.mode))
            if size is not None and img.size != size:
                img = img.resize(size, image_cls.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (unidentified, OSError) as exc:
        raise QtoolError(f"cannot read image {path}: {exc}{advice}") from exc


def image_mode(pillow_mode: str) -> str:
    """The mode qtool decodes a Pillow image mode to: "L" for grey kinds, else "RGB"."""
    return "L" if pillow_mode in GREY_MODES else "RGB"


def read_image(path: Path, channels: int | None = None) -> np.ndarray:
    """One image as a float (1, C, H, W) batch: RGB when 3 channels are wanted, else grey."""
    return decoded_to_float(decode(path, "RGB" if channels == 3 else "L")[None])


def read_images(files: list[Path]) -> np.ndarray:
    """Images of one data set as one float NCHW batch.

    The first image decides grey or RGB and the size; the others are converted and resized
    (bilinear) to match, so a folder of mixed scans still stacks into one batch.
    """
    advice = "; remove or replace it"
    first = decode(files[0], advice=advice)
    mode, size = ("L" if first.ndim == 2 else "RGB"), (first.shape[1], first.shape[0])
    arrays = [first] + [decode(f, mode, size, advice) for f in files[1:]]
    return decoded_to_float(np.stack(arrays))
