"""Files a user hands `qtool predict` (images, DICOM, .npz arrays) -> one batch for the model.

Images and DICOM go through the same decoder as `folder:` and `dicom:` data sets
(`qtool.data.images.read_image`), so a file predicts as it would evaluate. Each frame of a
multi-frame DICOM is one row, indexed by its frame number.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qtool.data.images import is_input_file, read_image, to_float_nchw
from qtool.data.npz import open_npz, read_array
from qtool.data.shaping import fit_to_input
from qtool.errors import QtoolError
from qtool.readable import regular_file

NPZ_SAMPLE_KEYS = ("images", "x", "test_images", "inputs")


def load_inputs(
    paths: list[Path], input_shape: list, max_pixels: int | None = None
) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Images (PNG/JPEG), DICOM files and .npz arrays -> one batch fitted to the model input.

    Also returns, per row, the file it came from and its index (row or frame) in that file;
    an .npz row's file is `PATH:ARRAY`, naming the array it was read from.
    """
    channels = input_shape[1] if len(input_shape) == 4 and isinstance(input_shape[1], int) else None
    arrays, origin = [], []
    for path in paths:
        if not path.exists():
            raise QtoolError(f"input {path} does not exist: give image, DICOM or .npz files")
        regular_file(path, "input")
        source = str(path)
        if path.suffix.lower() == ".npz":
            x, key = npz_array(path)
            source = f"{path}:{key}"
        elif is_input_file(path):
            x = read_image(path, channels, max_pixels=max_pixels)
        else:
            raise QtoolError(f"input {path} is neither an image (PNG/JPEG), DICOM nor .npz file")
        arrays.append(fit_to_input(x, input_shape))
        origin += [(source, i) for i in range(len(x))]
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise QtoolError(
            f"the inputs have different sizes ({', '.join(str(s) for s in sorted(shapes))}) and "
            f"the model input {input_shape} does not fix one: give inputs of one size"
        )
    return np.concatenate(arrays), origin


def npz_samples(path: Path) -> np.ndarray:
    """The samples array of an .npz (see npz_array)."""
    return npz_array(path)[0]


def npz_array(path: Path) -> tuple[np.ndarray, str]:
    """The samples of an .npz and the array they came from: `images`, `x`, `test_images`,
    `inputs` (first found), or its only array."""
    archive = open_npz(path)
    for key in NPZ_SAMPLE_KEYS:
        if key in archive.files:
            return to_float_nchw(read_array(archive, key, path), path)[0], key
    if len(archive.files) == 1:
        only = archive.files[0]
        return to_float_nchw(read_array(archive, only, path), path)[0], only
    raise QtoolError(
        f"{path} holds {', '.join(archive.files)}; name the samples array 'images' or 'x'"
    )
