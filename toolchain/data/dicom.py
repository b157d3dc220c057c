"""DICOM: the pixel pipeline every `.dcm` goes through, and the `dicom:FOLDER` data source.

`dicom_frames` turns one DICOM Part 10 file (path or bytes) into float32 (F, C, H, W) in
[0, 1], in the order the standard displays pixels:
  1. decode the pixel data with pydicom (compressed transfer syntaxes with whichever of its
     decoders is installed: RLE natively, JPEG baseline/2000 through Pillow, JPEG lossless and
     JPEG-LS through pylibjpeg; without one, one line naming the syntax and the package);
  2. Modality LUT: rescale slope/intercept (or a Modality LUT Sequence);
  3. VOI LUT: the VOI LUT Sequence if present, else the first Window Center/Width, mapped to
     [0, 1] over the output range pydicom's transform gives; with neither, each frame's own
     min..max maps to [0, 1] (a constant frame becomes 0);
  4. MONOCHROME1 is inverted (1 - x) so that higher is brighter, as for MONOCHROME2;
  5. colour: RGB (YBR decoded to RGB by pydicom) and PALETTE COLOR (its LUT applied) scale by
     their bit depth.
Multi-frame rule: every frame becomes one sample, in frame order (a data set gives each the
file's class). Enhanced multi-frame objects whose rescale or window is given per frame in
functional groups are refused rather than decoded with the wrong transform.
Resizing to the model input happens later, as for every image (`shaping.fit_to_input`).

`dicom:FOLDER[:split]`: class sub-folders of DICOM files (searched recursively; `.dcm`,
`.dicom`, or any file with the `DICM` preamble), or a `labels.csv` beside them whose header
names a key column (`file` or `SOPInstanceUID`) and a `class` column; optionally under
train/val/test like `folder:`.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from qtool import limits
from qtool.data.dataset import Dataset, DataSpec
from qtool.data.folder import split_folder
from qtool.data.shaping import resize_images
from qtool.errors import MissingExtra, QtoolError
from qtool.readable import regular_file

DICOM_SUFFIXES = (".dcm", ".dicom")
LABELS_FILE = "labels.csv"
KEY_COLUMNS = {"file": "file", "filename": "file", "path": "file", "sopinstanceuid": "uid"}
CLASS_COLUMNS = ("class", "label")
# pydicom decoder plugins by preference, for the install line of a missing decoder
PLUGIN_ORDER = ("pylibjpeg", "pyjpegls", "gdcm", "pillow")


def _pydicom():
    try:
        import pydicom
    except ImportError as exc:
        raise MissingExtra("pydicom", "dicom", "reading DICOM files") from exc
    return pydicom


def has_dicom_preamble(head: bytes) -> bool:
    """A DICOM Part 10 file: 128 preamble bytes, then 'DICM'."""
    return len(head) >= 132 and head[128:132] == b"DICM"


def is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix or not path.is_file():
        return False
    with open(path, "rb") as fh:
        return has_dicom_preamble(fh.read(132))


def read_dataset(source: Path | bytes, name: str, *, pixels: bool = True):
    """A pydicom Dataset from a path or bytes; a file that is not DICOM is one clear line."""
    pydicom = _pydicom()
    fh = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        return pydicom.dcmread(fh, stop_before_pixels=not pixels)
    except (pydicom.errors.InvalidDicomError, EOFError, OSError, ValueError) as exc:
        raise QtoolError(
            f"{name} is not a readable DICOM Part 10 file ({exc}); export it from the PACS "
            "as DICOM, or give a PNG/JPEG"
        ) from exc


def dicom_frames(
    source: Path | bytes, name: str | None = None, max_pixels: int | None = None
) -> np.ndarray:
    """One DICOM file -> float32 (frames, channels, rows, columns) in [0, 1] (see the module).
    `max_pixels` defaults to the pixels limit (`qtool.limits`)."""
    name = name or (str(source) if isinstance(source, Path) else "the upload")
    max_pixels = limits.current().pixels if max_pixels is None else max_pixels
    ds = read_dataset(source, name)
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise QtoolError(f"{name} holds no image (no pixel data): is it a report or structure?")
    _check_size(ds, name, max_pixels)
    _refuse_per_frame_transforms(ds, name)
    arr = _decode(ds, name)
    frames, rows, cols = (int(ds.get(k, 1) or 1) for k in ("NumberOfFrames", "Rows", "Columns"))
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        x = _palette(arr, ds)
    elif samples == 1 and photometric in ("MONOCHROME1", "MONOCHROME2"):
        x = _monochrome(arr, ds, photometric, frames)
    elif samples == 3:
        x = arr.astype(np.float32) / float(2 ** int(ds.get("BitsStored", 8)) - 1)
    else:
        raise QtoolError(
            f"{name}: photometric interpretation {photometric} with {samples} samples per pixel "
            "is not supported; export it as MONOCHROME2 or RGB"
        )
    if x.size == frames * rows * cols:  # grey -> (F, 1, H, W)
        x = x.reshape(frames, 1, rows, cols)
    else:  # colour, channels last -> (F, 3, H, W)
        x = x.reshape(frames, rows, cols, 3).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(np.clip(x, 0.0, 1.0), dtype=np.float32)


def _check_size(ds, name: str, max_pixels: int) -> None:
    """Refuse before decoding: compressed pixel data can inflate far beyond the file size."""
    dims = [ds.get(k, 1) or 1 for k in ("NumberOfFrames", "Rows", "Columns", "SamplesPerPixel")]
    try:
        sizes = [int(d) for d in dims]
    except (TypeError, ValueError) as exc:
        raise QtoolError(f"{name}: malformed image size attributes ({exc})") from exc
    if any(d < 1 for d in sizes):
        raise QtoolError(f"{name}: image size attributes {sizes} must be positive")
    total = math.prod(sizes)  # Python ints: no int64 wrap-around on hostile sizes
    if total > max_pixels:
        raise limits.LimitExceeded(
            f"{name} decodes to {total:,} pixel values (frames x rows x columns x samples), over "
            f"the limit of {max_pixels:,}; raise the limit or split the series",
            limit="pixels",
            param="max_pixels",
        )


def _refuse_per_frame_transforms(ds, name: str) -> None:
    for group in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        for item in ds.get(group, [])[:1]:
            if "PixelValueTransformationSequence" in item or "FrameVOILUTSequence" in item:
                raise QtoolError(
                    f"{name} is an enhanced multi-frame object with rescale or window in its "
                    "functional groups, which qtool does not apply; export classic images"
                )


def _decode(ds, name: str) -> np.ndarray:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None and syntax.is_compressed:
        _check_decoder(syntax, name)
    try:
        return ds.pixel_array
    except Exception as exc:  # pydicom and its plugins raise many kinds; all mean "unreadable"
        detail = "; ".join(s.strip() for s in str(exc).splitlines() if s.strip())[:300]
        what = f"{syntax.name} pixel data" if syntax is not None else "pixel data"
        hint = ""
        if syntax is not None and syntax.is_compressed and (other := _install_line(syntax)):
            hint = f"; another decoder may read it: {other}"
        raise QtoolError(
            f"cannot decode the {what} of {name}: {detail or type(exc).__name__}{hint}"
        ) from exc


def _check_decoder(syntax, name: str) -> None:
    """One line naming the transfer syntax and the packages that decode it, when none is."""
    from pydicom.pixels import get_decoder

    label = f"{syntax.name} ({syntax})"
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise QtoolError(
            f"{name} uses transfer syntax {label}, which pydicom cannot decode; convert it to an "
            "uncompressed syntax (e.g. gdcmconv --raw or dcmdjpeg)"
        ) from exc
    if not decoder.is_available:
        raise QtoolError(
            f"{name} uses transfer syntax {label} and no decoder for it is installed: "
            f"{_install_line(syntax)}"
        )


def _install_line(syntax) -> str:
    """'pip install A B or pip install C' for the decoder plugins pydicom lacks for `syntax`."""
    from pydicom.pixels import get_decoder

    options = {}
    for line in get_decoder(
        syntax
    ).missing_dependencies:  # e.g. "pylibjpeg - requires a>=2 and b>=2.1"
        plugin, _, needs = line.partition(" - requires ")
        needs = needs.replace(" and ", ", ").split(", ")
        packages = [p.split(">")[0].split("=")[0].strip() for p in needs]
        options[plugin.strip()] = " ".join(p for p in packages if p and p != "numpy")
    ranked = sorted(options, key=lambda p: PLUGIN_ORDER.index(p) if p in PLUGIN_ORDER else 99)
    return " or ".join(f"pip install {options[p]}" for p in ranked if options[p])


def _monochrome(arr: np.ndarray, ds, photometric: str, frames: int) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

    values = apply_modality_lut(arr, ds)
    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        x = apply_voi(values, ds).astype(np.float32) / float(2**bits - 1)
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        with np.errstate(over="ignore"):  # the range probe overflows exp() for SIGMOID
            low, high = apply_windowing(np.array([-1e30, 1e30]), ds)
        x = ((apply_windowing(values, ds) - low) / (high - low)).astype(np.float32)
    else:
        x = _minmax(values.astype(np.float64), frames)
    return 1.0 - x if photometric == "MONOCHROME1" else x


def _minmax(values: np.ndarray, frames: int) -> np.ndarray:
    """Each frame's own min..max -> [0, 1]."""
    flat = values.reshape(frames, -1)
    low = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - low
    out = np.where(span > 0, (flat - low) / np.where(span > 0, span, 1), 0.0)
    return out.reshape(values.shape).astype(np.float32)


def _palette(arr: np.ndarray, ds) -> np.ndarray:
    from pydicom.pixels import apply_color_lut

    bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    return apply_color_lut(arr, ds).astype(np.float32) / float(2**bits - 1)


# --- the dicom: data source -------------------------------------------------------------------


def load(spec: DataSpec, split: str, explicit: bool) -> Dataset:
    root = spec.path
    if not root.is_dir():
        raise QtoolError(f"DICOM folder {root} does not exist: check the path after dicom:")
    base, used = split_folder(root, split, explicit)
    if (base / LABELS_FILE).is_file():
        files, classes = _labelled_by_csv(base)
    else:
        classes = sorted(p.name for p in base.iterdir() if p.is_dir())
        files = [(f, i) for i, c in enumerate(classes) for f in _dicom_files(base / c)]
    if not files:
        raise QtoolError(
            f"{base} holds no DICOM files: expected one sub-folder per class of .dcm files, "
            f"or a {LABELS_FILE} (columns file or SOPInstanceUID, and class)"
        )
    x, y, origin = _stack([(f, label) for f, label in files])
    return Dataset(f"dicom:{root}", used, x, y, classes, "image", {"origin": origin})


def _dicom_files(folder: Path) -> list[Path]:
    """DICOM files under `folder`; an entry that is neither a folder nor a plain file (a
    FIFO, a device: reading one blocks) is refused."""
    entries = [p for p in sorted(folder.rglob("*")) if not p.name.startswith(".")]
    for p in entries:
        if not p.is_dir():
            regular_file(p, "data set entry")
    return [p for p in entries if p.name != LABELS_FILE and p.is_file() and is_dicom_file(p)]


def _labelled_by_csv(base: Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """(file, label) pairs from labels.csv, keyed by file path/name or SOPInstanceUID."""
    path = base / LABELS_FILE
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    key_col = next((i for i, h in enumerate(header) if h in KEY_COLUMNS), None)
    class_col = next((i for i, h in enumerate(header) if h in CLASS_COLUMNS), None)
    if key_col is None or class_col is None:
        raise QtoolError(
            f"{path} needs a header naming a key column (file or SOPInstanceUID) and a class "
            f"column, e.g. 'file,class'; it starts {rows[0] if rows else 'empty'}"
        )
    wanted = {r[key_col].strip(): r[class_col].strip() for r in rows[1:] if len(r) > class_col}
    by_uid = KEY_COLUMNS[header[key_col]] == "uid"
    files = _dicom_files(base)
    keys = {}
    for f in files:
        if by_uid:
            keys[f] = str(read_dataset(f, str(f), pixels=False).get("SOPInstanceUID", ""))
        else:
            rel = f.relative_to(base).as_posix()
            keys[f] = rel if rel in wanted else f.name
    unlabelled = [f for f in files if keys[f] not in wanted]
    if unlabelled:
        raise QtoolError(
            f"{len(unlabelled)} DICOM file(s) under {base} have no row in {LABELS_FILE} "
            f"(first: {unlabelled[0].relative_to(base)}); label them or move them out"
        )
    missing = sorted(set(wanted) - set(keys.values()))
    if missing:
        raise QtoolError(f"{path} names {missing[0]!r}, which no DICOM file under {base} matches")
    classes = sorted(set(wanted.values()))
    return [(f, classes.index(wanted[keys[f]])) for f in files], classes


def _stack(files: list[tuple[Path, int]]) -> tuple[np.ndarray, np.ndarray, list]:
    """Decode every file; frames of other sizes or channel counts are fitted to the first's."""
    arrays, labels, origin = [], [], []
    total = 0
    for path, label in files:
        x = dicom_frames(path)
        total += x.nbytes
        limits.check("data_bytes", total, f"the DICOM frames decoded so far (up to {path})")
        if arrays:
            c, h, w = arrays[0].shape[1:]
            if x.shape[1] != c:
                x = np.repeat(x, 3, axis=1) if c == 3 else x.mean(axis=1, keepdims=True)
            if x.shape[2:] != (h, w):
                x = resize_images(x, h, w)
        arrays.append(x)
        labels += [label] * len(x)
        origin += [(str(path), i) for i in range(len(x))]
    return np.concatenate(arrays), np.array(labels, dtype=np.int64), origin
