"""Data set specs (`digits`, `breast-cancer`, `npz:PATH`, `folder:PATH`, each with `:split`).

Every stage that needs samples (eval, quantise calibration, flip campaigns, bench inputs)
goes through `load_dataset`, so one spec string means the same samples everywhere.
Images come out as float32 NCHW in [0, 1]; tables as float32 (N, features), unscaled.
Normalisation is the model's business (its metadata), not the data set's.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qtool.errors import QtoolError

SPLITS = ("train", "val", "test")
BUILTIN = ("digits", "breast-cancer")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
SPLIT_SEED = 0
SPEC_HELP = (
    "use digits, breast-cancer, npz:PATH or folder:PATH, optionally ending in :train, :val or :test"
)


@dataclass
class Dataset:
    """Samples of one split of one data set, ready to feed a model."""

    spec: str
    split: str
    x: np.ndarray
    y: np.ndarray | None
    class_names: list[str]
    kind: str  # "image" (N, C, H, W) or "tabular" (N, F)
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def take(self, n: int | None, seed: int = 0) -> Dataset:
        """A seeded, stratification-free subsample of at most n items (all when n is None)."""
        if n is None or n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        y = None if self.y is None else self.y[idx]
        return Dataset(
            self.spec, self.split, self.x[idx], y, self.class_names, self.kind, self.extra
        )


@dataclass(frozen=True)
class DataSpec:
    source: str  # "digits", "breast-cancer", "npz", "folder"
    path: Path | None
    split: str | None

    def __str__(self) -> str:
        base = self.source if self.path is None else f"{self.source}:{self.path}"
        return base if self.split is None else f"{base}:{self.split}"


def parse_spec(spec: str) -> DataSpec:
    """Split a spec string into source, path and optional split; reject unknown sources."""
    text = spec.strip()
    split = None
    head, sep, tail = text.rpartition(":")
    if sep and tail in SPLITS:
        text, split = head, tail
    if text in BUILTIN:
        return DataSpec(text, None, split)
    source, sep, path = text.partition(":")
    if sep and source in ("npz", "folder") and path:
        return DataSpec(source, Path(path).expanduser(), split)
    raise QtoolError(f"unknown data set spec {spec!r}: {SPEC_HELP}")


def load_dataset(spec: str, split: str | None = None, default_split: str = "test") -> Dataset:
    """Load one split. An explicit `split` argument wins over the spec's suffix."""
    parsed = parse_spec(spec)
    chosen = split or parsed.split or default_split
    if chosen not in SPLITS:
        raise QtoolError(f"unknown split {chosen!r}: use one of {', '.join(SPLITS)}")
    if parsed.source == "digits":
        return _load_sklearn("digits", chosen)
    if parsed.source == "breast-cancer":
        return _load_sklearn("breast-cancer", chosen)
    if parsed.source == "npz":
        return _load_npz(parsed.path, chosen, explicit=bool(split or parsed.split))
    return _load_folder(parsed.path, chosen, explicit=bool(split or parsed.split))


# --- built-in scikit-learn sets --------------------------------------------------------------


def _sklearn():
    try:
        import sklearn.datasets  # noqa: F401
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise QtoolError(
            "the digits and breast-cancer data sets need scikit-learn: pip install 'qtool[data]'"
        ) from exc
    return sklearn.datasets, train_test_split


def split_indices(labels: np.ndarray, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Stratified 70/10/20 train/val/test indices, the same on every machine for a seed."""
    _, train_test_split = _sklearn()
    idx = np.arange(len(labels))
    rest, test = train_test_split(idx, test_size=0.2, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=0.125, stratify=labels[rest], random_state=seed)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def _load_sklearn(name: str, split: str) -> Dataset:
    datasets, _ = _sklearn()
    if name == "digits":
        bunch = datasets.load_digits()
        x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
        names = [str(c) for c in bunch.target_names]
        kind = "image"
    else:
        bunch = datasets.load_breast_cancer()
        x = bunch.data.astype(np.float32)
        names = [str(c) for c in bunch.target_names]
        kind = "tabular"
    y = bunch.target.astype(np.int64)
    idx = split_indices(y)[split]
    # breast-cancer: class 0 is malignant, the finding a screening test must not miss
    extra = {"positive_class": 0} if name == "breast-cancer" else {}
    return Dataset(name, split, np.ascontiguousarray(x[idx]), y[idx], names, kind, extra)


# --- npz (MedMNIST layout) -------------------------------------------------------------------


def _load_npz(path: Path, split: str, explicit: bool) -> Dataset:
    if not path.is_file():
        raise QtoolError(f"data file {path} does not exist: check the path after npz:")
    try:
        archive = np.load(path, allow_pickle=False)
        keys = set(archive.files)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise QtoolError(f"{path} is not a readable .npz file ({exc})") from exc
    available = [s for s in SPLITS if f"{s}_images" in keys]
    if not available:
        raise QtoolError(
            f"{path} has no '<split>_images' arrays (found: {', '.join(sorted(keys)) or 'none'}); "
            "expected the MedMNIST layout train_images, train_labels, val_..., test_..."
        )
    if f"{split}_images" not in keys:
        if explicit or len(available) != 1:
            raise QtoolError(
                f"split {split!r} does not exist in {path}: available {', '.join(available)}"
            )
        split = available[0]
    images = archive[f"{split}_images"]
    labels = archive[f"{split}_labels"] if f"{split}_labels" in keys else None
    x, kind = _images_to_float(images, path)
    y = None
    if labels is not None:
        y = np.asarray(labels).reshape(len(labels), -1)[:, 0].astype(np.int64)
        if len(y) != len(x):
            raise QtoolError(
                f"{path}: {split}_labels has {len(y)} entries but {split}_images has {len(x)}"
            )
    if "class_names" in keys:
        names = [str(n) for n in archive["class_names"]]
    else:
        count = int(y.max()) + 1 if y is not None and len(y) else 0
        names = [str(i) for i in range(count)]
    return Dataset(f"npz:{path}", split, x, y, names, kind)


def _images_to_float(images: np.ndarray, path: Path) -> tuple[np.ndarray, str]:
    arr = np.asarray(images)
    if arr.ndim == 2:  # (N, F): a table stored in the same layout
        return arr.astype(np.float32), "tabular"
    if arr.ndim == 3:
        arr = arr[:, None, :, :]
    elif arr.ndim == 4:
        if arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3, 4):
            arr = arr.transpose(0, 3, 1, 2)
    else:
        raise QtoolError(f"{path}: images must be (N,H,W) or (N,H,W,C), got shape {arr.shape}")
    scale = 255.0 if arr.dtype == np.uint8 else 1.0
    return np.ascontiguousarray(arr.astype(np.float32) / scale), "image"


# --- image folders ---------------------------------------------------------------------------


def _load_folder(root: Path, split: str, explicit: bool) -> Dataset:
    if not root.is_dir():
        raise QtoolError(f"image folder {root} does not exist: check the path after folder:")
    split_dirs = [s for s in SPLITS if (root / s).is_dir()]
    if split_dirs:
        if split not in split_dirs:
            raise QtoolError(
                f"split {split!r} does not exist in {root}: available {', '.join(split_dirs)}"
            )
        base, used = root / split, split
    elif explicit:
        raise QtoolError(
            f"{root} has no train/val/test sub-folders, so it has no split {split!r}: "
            "drop the :split suffix"
        )
    else:
        base, used = root, "all"
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    files = [
        (f, label)
        for label, name in enumerate(classes)
        for f in sorted((base / name).iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise QtoolError(
            f"{base} holds no images: expected one sub-folder per class with PNG/JPEG files"
        )
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:
        raise QtoolError("image folders need Pillow: pip install 'qtool[data]'") from exc
    arrays, mode, size = [], None, None
    for file, _ in files:
        try:
            with Image.open(file) as img:
                if mode is None:
                    mode = "L" if img.mode in ("1", "L", "I", "I;16", "F") else "RGB"
                    size = img.size
                img = img.convert(mode)
                if img.size != size:
                    img = img.resize(size, Image.BILINEAR)
                arrays.append(np.asarray(img, dtype=np.uint8))
        except (UnidentifiedImageError, OSError) as exc:
            raise QtoolError(f"cannot read image {file}: {exc}; remove or replace it") from exc
    x, _ = _images_to_float(np.stack(arrays), base)
    y = np.array([label for _, label in files], dtype=np.int64)
    return Dataset(f"folder:{root}", used, x, y, classes, "image")


# --- fitting samples to a model's input ------------------------------------------------------


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
            "pick the data set the model was trained on, or the right --input"
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
    if m.ndim:
        m = m.reshape(shape)
    if s.ndim:
        s = s.reshape(shape)
    return ((x - m) / s).astype(np.float32)
