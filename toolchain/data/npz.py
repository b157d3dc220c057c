"""`npz:PATH`: arrays in the MedMNIST layout (`train_images`, `train_labels`, `val_...`...).

Images may be (N,H,W) or (N,H,W,C), uint8 or float in [0, 1]; labels (N,) or (N,1),
integers from 0; an optional `class_names` array names the classes. A file holding one split
serves it when none is asked. An array is read only after its .npy header (shape, dtype)
and its zip entry's size are checked against the data-bytes limit, so a small file that
unpacks to gigabytes (an npz bomb) is refused before it is inflated; no pickles.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from qtool import limits
from qtool.data.dataset import SPLITS, Dataset, DataSpec, check_labels
from qtool.data.images import to_float_nchw
from qtool.errors import QtoolError
from qtool.readable import regular_file


def open_npz(path: Path) -> np.lib.npyio.NpzFile:
    """An .npz archive, or one clear line saying why it cannot be read."""
    regular_file(path, "data file")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise QtoolError(f"{path} is not a readable .npz file ({exc})") from exc


def read_array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """One array of an .npz, its size checked from its headers before it is read."""
    member = key if key.endswith(".npy") else f"{key}.npy"
    try:
        info = archive.zip.getinfo(member)
        with archive.zip.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            reader = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = reader(fh)
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise QtoolError(f"{path}: array {key!r} is not a readable .npy entry ({exc})") from exc
    if dtype.hasobject:
        raise QtoolError(f"{path}: array {key!r} holds Python objects; qtool reads numbers only")
    count = math.prod(shape)
    stated = max(info.file_size, count * dtype.itemsize, count * 4)  # decoded, and as float32
    limits.check("data_bytes", stated, f"array {key!r} of {path} once decoded")
    try:
        return np.asarray(archive[key])
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise QtoolError(f"{path}: array {key!r} cannot be read ({exc})") from exc


def load(spec: DataSpec, split: str, explicit: bool) -> Dataset:
    path = spec.path
    if not path.exists():
        raise QtoolError(f"data file {path} does not exist: check the path after npz:")
    archive = open_npz(path)
    keys = set(archive.files)
    split = _pick_split(path, keys, split, explicit)
    x, kind = to_float_nchw(read_array(archive, f"{split}_images", path), path)
    names = None
    if "class_names" in keys:
        raw = read_array(archive, "class_names", path)
        limits.check("classes", raw.size, f"class_names of {path}")
        names = [str(n) for n in raw.reshape(-1)]
    y = _labels(archive, keys, split, path, len(x), names)
    if names is None:
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


def _labels(
    archive, keys: set[str], split: str, path: Path, count: int, names: list[str] | None
) -> np.ndarray | None:
    if f"{split}_labels" not in keys:
        return None
    labels = read_array(archive, f"{split}_labels", path)
    if labels.ndim == 0 or labels.ndim > 2 or (labels.ndim == 2 and labels.shape[1] != 1):
        raise QtoolError(
            f"{path}: {split}_labels has shape {list(labels.shape)}; give one label per sample, "
            "(N,) or (N, 1)"
        )
    labels = labels.reshape(-1)
    if len(labels) != count:
        raise QtoolError(
            f"{path}: {split}_labels has {len(labels)} entries but {split}_images has {count}"
        )
    return check_labels(labels, None if names is None else len(names), f"{path} ({split})")
