"""`folder:PATH`: one sub-folder per class of image files, optionally under train/val/test.

Class names are the sub-folder names in sorted order; labels are their indices. Without
train/val/test sub-folders the whole folder is one split, named "all". An image name that is
not a plain file (a FIFO, a device) is refused rather than opened: reading one blocks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qtool.data.dataset import SPLITS, Dataset, DataSpec
from qtool.data.images import is_image_file, read_images
from qtool.errors import QtoolError
from qtool.readable import regular_file


def load(spec: DataSpec, split: str, explicit: bool) -> Dataset:
    root = spec.path
    if not root.is_dir():
        raise QtoolError(f"image folder {root} does not exist: check the path after folder:")
    base, used = split_folder(root, split, explicit)
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    files = [
        (f, label)
        for label, name in enumerate(classes)
        for f in sorted((base / name).iterdir())
        if is_image_file(f) and regular_file(f, "data set entry")
    ]
    if not files:
        raise QtoolError(
            f"{base} holds no images: expected one sub-folder per class with PNG/JPEG files"
        )
    x = read_images([f for f, _ in files])
    y = np.array([label for _, label in files], dtype=np.int64)
    return Dataset(f"folder:{root}", used, x, y, classes, "image")


def split_folder(root: Path, split: str, explicit: bool) -> tuple[Path, str]:
    """The folder holding the class sub-folders of `split`, and the split name it serves."""
    split_dirs = [s for s in SPLITS if (root / s).is_dir()]
    if split_dirs:
        if split not in split_dirs:
            raise QtoolError(
                f"split {split!r} does not exist in {root}: available {', '.join(split_dirs)}"
            )
        return root / split, split
    if explicit:
        raise QtoolError(
            f"{root} has no train/val/test sub-folders, so it has no split {split!r}: "
            "drop the :split suffix"
        )
    return root, "all"
