"""Clean activations at the cuts, per ONNX Runtime run, for one data set.

The values come from one *probe*: the whole model with the cut tensors added as outputs,
run in the very batches `run_scores` uses (same rows, same padding of a static batch), so
a chain of segments started on them sees what the whole model computed. Their size is
known before they are stored (bytes per row x rows); `build.py` keeps it under the limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from qtool.evaluation.model_io import ModelIO, batches


@dataclass
class ActivationCache:
    """Inputs, cut activations and current raw scores of one data set, per ORT run."""

    x: np.ndarray  # prepared inputs
    batch: int  # rows per run (a static-batch model's own batch overrides it)
    io: ModelIO
    scores: np.ndarray  # raw scores of the current weights, (samples, classes)
    runs: list[dict[str, np.ndarray]] = field(default_factory=list)  # cut tensors per run
    rows: list[int] = field(default_factory=list)  # real (unpadded) rows per run
    feeds: list[np.ndarray] = field(default_factory=list)  # the input of each run

    def __post_init__(self) -> None:
        if not self.feeds:
            pairs = list(batches(self.io, self.x, self.batch))
            self.rows = [rows for rows, _ in pairs]
            self.feeds = [feed for _, feed in pairs]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for run in self.runs for a in run.values())

    def env(self, run: int, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Values of `names` for one run: the input itself or cached activations."""
        stored = self.runs[run]
        return {n: self.feeds[run] if n == self.io.input_name else stored[n] for n in names}


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit equality (NaN payloads and the sign of zero included)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def rows_differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row (first axis): do the two arrays differ in any bit?"""
    k = len(a)
    a = np.ascontiguousarray(a).reshape(k, -1).view(np.uint8)
    b = np.ascontiguousarray(b).reshape(k, -1).view(np.uint8)
    return (a != b).any(axis=1)


def probe_model(proto: onnx.ModelProto, names: list[str]) -> bytes:
    """The whole model with `names` added as outputs (types left to ONNX Runtime)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    present = {o.name for o in probe.graph.output}
    for name in names:
        if name not in present:
            probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return probe.SerializeToString()


def probe(
    proto: onnx.ModelProto,
    names: list[str],
    input_name: str,
    feeds: list[np.ndarray],
    new_session: Callable[[bytes], Any],
) -> tuple[list[dict[str, np.ndarray]], dict[str, tuple[str, list | None]]]:
    """Values of `names` for each feed, and ONNX Runtime's (type, shape) of each."""
    if not names:
        return [{} for _ in feeds], {}
    session = new_session(probe_model(proto, names))
    kinds = {
        o.name: (o.type, None if o.shape is None else list(o.shape)) for o in session.get_outputs()
    }
    runs = [dict(zip(names, session.run(names, {input_name: f}), strict=True)) for f in feeds]
    return runs, {n: kinds[n] for n in names}


def row_bytes(runs: list[dict[str, np.ndarray]], rows: int) -> dict[str, float]:
    """Bytes per row of each probed tensor (from a probe of `rows` rows)."""
    return {name: value.nbytes / max(1, rows) for name, value in runs[0].items()} if runs else {}
