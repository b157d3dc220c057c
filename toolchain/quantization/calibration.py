"""The samples quantisation works from: calibration batches, labelled splits, debug subset.

Calibration samples are prepared exactly as `qtool eval` prepares them (same ModelIO:
shape fitting and the model's normalisation), then fed to ONNX Runtime's calibrators in
batches sized to a memory bound through a `CalibrationDataReader`. The ranges are computed
once per call and cached in a file (`Calibration.cache`) that every re-quantisation reuses.
Accuracy is scored on two labelled splits with separate roles: the validation split judges
the accuracy budget, the test split is only reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from qtool.data.dataset import Dataset
from qtool.data.sources import load_dataset
from qtool.errors import QtoolError
from qtool.evaluation.model_io import ModelIO, run_scores
from qtool.quantization.quantizer import first_line
from qtool.runtimes.opcount import activation_bytes

CALIB_BATCH = 32


@dataclass
class Calibration:
    """Prepared calibration batches for one input, and where their ranges are cached."""

    input_name: str
    batches: list[np.ndarray]
    cache: Path  # ORT's calibration_cache_path: written by the first quantisation, then read

    def reader(self):
        return reader(self.input_name, self.batches)


def batches(x: np.ndarray, batch: int, fixed: int | None) -> list[np.ndarray]:
    """Split prepared samples into batches; a static-batch input gets full batches (wrapping)."""
    if fixed:
        need = math.ceil(len(x) / fixed) * fixed
        idx = np.arange(need) % len(x)
        x = x[idx]
        batch = fixed
    return [x[i : i + batch] for i in range(0, len(x), batch)]


def reader(name: str, parts: list[np.ndarray]):
    """A CalibrationDataReader streaming {input: batch} dicts (ORT's abstract class)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(parts)

        def get_next(self) -> dict | None:
            part = next(self._it, None)
            return None if part is None else {name: part}

        def __len__(self) -> int:
            return len(parts)

    return _Reader()


def prepare(
    io: ModelIO,
    dataset: Dataset,
    what: str,
    session: ort.InferenceSession,
    src: Path,
    param: str,
) -> np.ndarray:
    """Samples as eval feeds them; data that cannot fit the input is bad input (exit 2)."""
    where = (
        f"{what} {dataset.spec} ({dataset.split}, samples of shape {tuple(dataset.x.shape[1:])})"
    )
    try:
        x = io.prepare(dataset.x)
    except QtoolError as exc:
        raise QtoolError(
            f"{where} cannot feed input {io.input_name!r} {io.input_shape} of {src}: {exc}",
            param=param,
        ) from exc
    try:
        run_scores(session, io, x[: io.fixed_batch or 2])
    except Exception as exc:
        raise QtoolError(
            f"{where} does not run through input {io.input_name!r} {io.input_shape} of {src} "
            f"({first_line(exc)}); pick the data set the model expects or name its input",
            param=param,
        ) from exc
    return x


def labelled_split(
    given: str | None, calib: str, meta: dict, split: str, param: str
) -> tuple[Dataset | None, str | None]:
    """Labelled data of one role: `given` (its own split suffix, else `split`), else the
    calib spec's `split`, else that split of the data set named in the model's metadata.
    None (with the reason) when there is none; given data without labels is bad input."""
    if given:
        ds = load_dataset(given, default_split=split, param=param)
        if ds.y is None:
            raise QtoolError(f"{given} has no labels to score accuracy against", param=param)
        return ds, None
    reasons = []
    for spec in (calib, meta.get("dataset")):
        if not spec:
            continue
        try:
            ds = load_dataset(str(spec), split=split)
        except QtoolError as exc:
            reasons.append(str(exc))
            continue
        if ds.y is not None:
            return ds, None
        reasons.append(f"{spec} ({split}) has no labels")
    return None, "; ".join(reasons) or f"no {split} data"


def calibration_batch(model: onnx.ModelProto, memory_bytes: int) -> int:
    """Samples per calibration run: ORT's calibrator keeps about two copies of every
    activation of a sample (its augmented graph exposes them all), so as many samples as fit
    `memory_bytes` that way, at least 1 and at most CALIB_BATCH (unknown shapes: CALIB_BATCH).
    MinMax ranges do not depend on the batching; histogram methods may shift by a bin."""
    per_sample = 2 * activation_bytes(model, batch=1)
    if per_sample <= 0:
        return CALIB_BATCH
    return max(1, min(CALIB_BATCH, int(memory_bytes // per_sample)))


def debug_subset(x: np.ndarray, count: int, seed: int) -> np.ndarray:
    """A seeded subset of the calibration samples for the per-tensor error run."""
    return x[np.sort(np.random.default_rng(seed).permutation(len(x))[:count])]
