"""The one image decoder: image files and uint8/float arrays -> float32 NCHW in [0, 1].

`folder:` data sets, `qtool predict` and the `qtool serve` upload all read images here, so a
PNG scores the same in evaluation as in deployment; DICOM files (path or uploaded bytes) go
through `qtool.data.dicom.dicom_frames`, the one DICOM pixel pipeline, from `read_image`.
Pillow and pydicom are imported only when a file is decoded.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from qtool import limits
from qtool.errors import MissingExtra, QtoolError
from qtool.readable import regular_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
GREY_MODES = ("1", "L", "I", "I;16", "F")  # Pillow modes read as one channel
LUMA = (0.299, 0.587, 0.114)  # RGB -> grey weights, the ones Pillow's "L" conversion uses
DEFAULT_MAX_PIXELS = limits.Limits().pixels  # decoded values per input file (the pixels limit)


def is_image_file(path: Path) -> bool:
    """An image file Pillow decodes (by suffix); DICOM is `is_input_file`'s business."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_input_file(path: Path) -> bool:
    """A file `read_image` takes: an image by suffix, or DICOM (suffix or DICM preamble)."""
    from qtool.data.dicom import is_dicom_file

    return is_image_file(path) or is_dicom_file(path)


def to_float_nchw(images: np.ndarray, where: Path | str) -> tuple[np.ndarray, str]:
    """(N,H,W) or (N,H,W,C) images -> float32 NCHW ("image"); (N,F) stays a table ("tabular").

    uint8 is scaled by 1/255; float images must already lie in [0, 1] (0-255 floats, other
    integer types, NaN or Inf are refused rather than guessed at). A 4-D array whose last
    axis has 1, 3 or 4 entries (and whose second has not) is channels-last.
    """
    arr = np.asarray(images)
    if arr.dtype.kind not in "biuf":
        raise QtoolError(f"{where}: samples of type {arr.dtype} are not numbers")
    if arr.ndim == 2:  # (N, F): a table stored in the same layout
        table = arr.astype(np.float32)
        if not np.isfinite(table).all():
            raise QtoolError(
                f"{where}: the table holds NaN or Inf values (or values beyond float32)"
            )
        return table, "tabular"
    if arr.ndim == 3:
        arr = arr[:, None, :, :]
    elif arr.ndim == 4:
        if arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3, 4):
            arr = arr.transpose(0, 3, 1, 2)
    else:
        raise QtoolError(f"{where}: images must be (N,H,W) or (N,H,W,C), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr.astype(np.float32) / 255.0), "image"
    if arr.dtype.kind != "f":
        raise QtoolError(
            f"{where}: images of type {arr.dtype}; store uint8 (0-255) or floats in [0, 1]"
        )
    out = np.ascontiguousarray(arr.astype(np.float32))
    if out.size and not (np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0):
        low, high = np.nanmin(out), np.nanmax(out)
        raise QtoolError(
            f"{where}: float images must lie in [0, 1] (these span {low:g}..{high:g}"
            f"{', with NaN or Inf' if not np.isfinite(out).all() else ''}); divide 0-255 "
            "images by 255, or store them as uint8"
        )
    return out, "image"


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
    path: Path | bytes,
    mode: str | None = None,
    size: tuple[int, int] | None = None,
    advice: str = "",
    max_pixels: int | None = None,
    name: str | None = None,
) -> np.ndarray:
    """One image file (or its bytes) as uint8 (H, W) or (H, W, 3).

    `mode` "L" (grey) or "RGB"; None keeps grey images grey and makes the rest RGB.
    `size` (width, height) resizes bilinearly. `advice` ends the unreadable-file message.
    An image of more than `max_pixels` values (default: the pixels limit) is refused before
    it is decoded; Pillow's own bomb check is left to this one, so the limit is one number.
    """
    image_cls, unidentified = _pillow()
    image_cls.MAX_IMAGE_PIXELS = None  # the check below replaces Pillow's (it is global)
    max_pixels = limits.current().pixels if max_pixels is None else max_pixels
    name = name or (str(path) if isinstance(path, Path) else "the upload")
    if isinstance(path, Path):
        regular_file(path, "image")
    source = io.BytesIO(path) if isinstance(path, bytes) else path
    try:
        with image_cls.open(source) as img:
            values = img.size[0] * img.size[1] * len(img.getbands())
            if values > max_pixels:
                raise limits.LimitExceeded(
                    f"{name} is {img.size[0]}x{img.size[1]} ({values:,} pixel values), over the "
                    f"limit of {max_pixels:,}; raise the limit or downscale it",
                    limit="pixels",
                    param="max_pixels",
                )
            img = img.convert(mode or image_mode(img.mode))
            if size is not None and img.size != size:
                img = img.resize(size, image_cls.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (unidentified, image_cls.DecompressionBombError, OSError) as exc:
        raise QtoolError(f"cannot read image {name}: {exc}{advice}") from exc


def image_mode(pillow_mode: str) -> str:
    """The mode qtool decodes a Pillow image mode to: "L" for grey kinds, else "RGB"."""
    return "L" if pillow_mode in GREY_MODES else "RGB"


def read_image(
    source: Path | bytes,
    channels: int | None = None,
    *,
    name: str | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """An image or DICOM file (path or bytes) as a float (N, C, H, W) batch: RGB when 3
    channels are wanted, else grey. N is 1, or the frame count of a multi-frame DICOM."""
    from qtool.data.dicom import dicom_frames, has_dicom_preamble, is_dicom_file

    dicom = has_dicom_preamble(source[:132]) if isinstance(source, bytes) else is_dicom_file(source)
    if not dicom:
        mode = "RGB" if channels == 3 else "L"
        return decoded_to_float(decode(source, mode, max_pixels=max_pixels, name=name)[None])
    x = dicom_frames(source, name, max_pixels)
    if channels == 3 and x.shape[1] == 1:
        return np.repeat(x, 3, axis=1)
    if channels != 3 and x.shape[1] == 3:
        weights = np.asarray(LUMA, dtype=np.float32)[None, :, None, None]
        return (x * weights).sum(axis=1, keepdims=True, dtype=np.float32)
    return x


def read_images(files: list[Path]) -> np.ndarray:
    """Images of one data set as one float NCHW batch.

    The first image decides grey or RGB and the size; the others are converted and resized
    (bilinear) to match, so a folder of mixed scans still stacks into one batch.
    """
    advice = "; remove or replace it"
    first = decode(files[0], advice=advice)
    mode, size = ("L" if first.ndim == 2 else "RGB"), (first.shape[1], first.shape[0])
    # every image is resized to the first one's size: the whole set as float32, known now
    limits.check("data_bytes", len(files) * first.size * 4, f"{len(files)} images like {files[0]}")
    arrays = [first] + [decode(f, mode, size, advice) for f in files[1:]]
    return decoded_to_float(np.stack(arrays))
