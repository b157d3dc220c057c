"""`npz:PATH`: arrays in the MedMNIST layout (`train_images`, `train_labels`, `val_...`...).

Images may be (N,H,W) or (N,H,W,C), uint8 or float; labels (N,) or (N,1); an optional
`class_names` array names the classes. A file holding one split serves it when none is asked.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from qtool.data.dataset import SPLITS, Dataset, DataSpec
from qtool.data.images import to_float_nchw
from qtool.errors import QtoolError


def open_npz(path: Path) -> np.lib.npyio.NpzFile:
    """An .npz archive, or one clear line saying why it cannot be read."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise QtoolError(f"{path} is not a readable .npz file ({exc})") from exc


def load(spec: DataSpec, split: str, explicit: bool) -> Dataset:
    path = spec.path
    if not path.is_file():
        raise QtoolError(f"data file {path} does not exist: check the path after npz:")
    archive = open_npz(path)
    keys = set(archive.files)
    split = _pick_split(path, keys, split, explicit)
    x, kind = to_float_nchw(archive[f"{split}_images"], path)
    y = _labels(archive, keys, split, path, len(x))
    if "class_names" in keys:
        names = [str(n) for n in archive["class_names"]]
    else:
        count = int(y.max()) + 1 if y is not None and len(y) else 0
        names = [str(i) for i in range(count)]
    return Dataset(f"npz:{path}", split, x, y, names, kind)


def _pick_split(path: Path, keys: set[str], split: str, explicit: bool) -> str:
    """The split asked for, or the only one the file has when none was asked explicitly."""
    available = [s for s in SPLITS if f"{s}_images" in keys]
    if not available:
        raise QtoolError(
            f"{path} has no '<split>_images' arrays (found: {', '.join(sorted(keys)) or 'none'}); "
            "expected the MedMNIST layout train_images, train_labels, val_..., test_..."
        )
    if f"{split}_images" in keys:
        return split
    if explicit or len(available) != 1:
        raise QtoolError(
            f"split {split!r} does not exist in {path}: available {', '.join(available)}"
        )
    return available[0]


def _labels(archive, keys: set[str], split: str, path: Path, count: int) -> np.ndarray | None:
    if f"{split}_labels" not in keys:
        return None
    labels = np.asarray(archive[f"{split}_labels"])
    y = labels.reshape(len(labels), -1)[:, 0].astype(np.int64)
    if len(y) != count:
        raise QtoolError(
            f"{path}: {split}_labels has {len(y)} entries but {split}_images has {count}"
        )
    return y
