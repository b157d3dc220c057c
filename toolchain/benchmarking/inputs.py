"""Inputs prepared before the clock starts, so the timed call is the plain `session.run`.

Every input of every session gets an array: samples of a data set for the model's sample
input when one is given, else seeded random values. Inputs with the same name, type and shape
share one array across models, so models compared in one configuration see the same values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnxruntime as ort

from qtool.errors import QtoolError
from qtool.runtimes.timing import Contender

TENSOR_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int16)": np.int16,
    "tensor(uint16)": np.uint16,
    "tensor(int32)": np.int32,
    "tensor(uint32)": np.uint32,
    "tensor(int64)": np.int64,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


class BenchModel(NamedTuple):
    """One model of a configuration: its label, file, session and qtool metadata."""

    name: str
    path: str
    session: ort.InferenceSession
    metadata: dict


@dataclass
class Prepared:
    """A session with its inputs prepared (contiguous arrays of the input dtypes, output names
    resolved), so the timed call is the plain `session.run` a user makes and nothing else.

    (`run_with_ort_values` was measured and rejected: in ORT 1.32 its Python wrapper adds tens
    of microseconds per call, more than a small model's whole inference.)"""

    name: str
    session: ort.InferenceSession
    feeds: dict
    output_names: list[str]
    inputs: str

    def contender(self, items_per_call: int = 1) -> Contender:
        return Contender(
            self.name, self.session.run, (self.output_names, self.feeds), items_per_call
        )


def model_names(models: Sequence[str | Path]) -> list[str]:
    """Short, unique labels: file names, made unique with #2, #3 when repeated."""
    names: list[str] = []
    for path in models:
        base = Path(path).name
        name, k = base, 2
        while name in names:
            name, k = f"{base}#{k}", k + 1
        names.append(name)
    return names


def input_arrays(
    session: ort.InferenceSession,
    model: str,
    batch: int,
    rng: np.random.Generator,
    cache: dict,
    metadata: dict,
    data_x: np.ndarray | None = None,
    data_input: str | None = None,
) -> list[tuple[str, np.ndarray]]:
    """Arrays for every input of a session: data for the sample input when given, else random.

    Symbolic first dimensions become `batch`; a fixed first dimension must equal it. Other
    symbolic dimensions are taken from the model's recorded qtool.input_shape.
    """
    out = []
    declared = metadata.get("input_shape")
    for inp in session.get_inputs():
        if inp.type not in TENSOR_DTYPES:
            raise QtoolError(
                f"{model}: input {inp.name!r} has type {inp.type}; qtool bench feeds numeric "
                "and bool tensors only (no strings, sequences, maps or optionals)"
            )
        shape = resolve_shape(model, inp.name, list(inp.shape or []), batch, declared)
        dtype = TENSOR_DTYPES[inp.type]
        if data_x is not None and inp.name == data_input:
            out.append((inp.name, np.ascontiguousarray(data_x, dtype=dtype)))
            continue
        key = (inp.name, inp.type, tuple(shape))
        if key not in cache:
            cache[key] = random_array(rng, dtype, shape)
        out.append((inp.name, cache[key]))
    return out


def resolve_shape(model: str, name: str, dims: list, batch: int, declared: object) -> list[int]:
    """The concrete shape of one input at this batch, or bad input saying what is missing."""
    shape = []
    for i, dim in enumerate(dims):
        fixed = isinstance(dim, int) and dim > 0
        if i == 0:
            if fixed and dim != batch:
                raise QtoolError(
                    f"{model}: input {name!r} has a fixed batch of {dim} (shape {dims}), "
                    f"so it cannot run batch {batch}; bench it at batch {dim} or export the "
                    "model with a dynamic batch dimension",
                    param="batches",
                )
            shape.append(batch)
        elif fixed:
            shape.append(dim)
        elif _declared_dim(declared, len(dims), i):
            shape.append(declared[i])
        else:
            raise QtoolError(
                f"{model}: input {name!r} has a symbolic dimension {dim!r} at position {i} "
                f"(shape {dims}) that bench cannot guess; export the model with that "
                "dimension fixed or record qtool.input_shape in its metadata"
            )
    return shape


def _declared_dim(declared: object, rank: int, i: int) -> bool:
    return (
        isinstance(declared, list)
        and len(declared) == rank
        and isinstance(declared[i], int)
        and declared[i] > 0
    )


def random_array(rng: np.random.Generator, dtype, shape: list[int]) -> np.ndarray:
    """Floats uniform in [0, 1) (image-like); integers 0 or 1 (safe as indices); random bools."""
    if np.issubdtype(dtype, np.floating):
        return rng.random(shape, dtype=np.float64).astype(dtype)
    if dtype is np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    return rng.integers(0, 2, size=shape).astype(dtype)


def data_batch(x: np.ndarray, batch: int) -> np.ndarray:
    """The first `batch` samples, repeated cyclically when the data set is smaller."""
    return np.take(x, np.arange(batch) % len(x), axis=0)


def prepare_sessions(
    sessions: Sequence[BenchModel | tuple[str, str, ort.InferenceSession, dict]],
    batch: int,
    seed: int,
    dataset=None,
) -> list[Prepared]:
    """Inputs of every session prepared up front and checked by one run, ready to be timed."""
    rng = np.random.default_rng([seed, batch])
    cache: dict = {}
    prepared = []
    for name, path, session, meta in sessions:
        data_x = data_input = None
        source = f"random (seed {seed}): floats U[0,1), integers 0/1"
        if dataset is not None:
            data_x, data_input, source = _data_feed(session, meta, path, batch, dataset)
        arrays = input_arrays(session, path, batch, rng, cache, meta, data_x, data_input)
        feeds = {k: np.ascontiguousarray(v) for k, v in arrays}
        outputs = [o.name for o in session.get_outputs()]
        item = Prepared(name, session, feeds, outputs, source)
        _check_runs(item, path, source, batch)
        prepared.append(item)
    return prepared


def _data_feed(session, meta: dict, path: str, batch: int, dataset) -> tuple:
    """The model's sample input filled from the data set: (array, input name, description)."""
    from qtool.evaluation.evaluate import model_io

    io = model_io(session, meta, output_name=session.get_outputs()[0].name)
    if io.fixed_batch and io.fixed_batch != batch:
        resolve_shape(path, io.input_name, io.input_shape, batch, None)
    source = f"data {dataset.spec} ({dataset.split}), first {batch} samples, into {io.input_name!r}"
    return io.prepare(data_batch(dataset.x, batch)), io.input_name, source


def _check_runs(item: Prepared, path: str, source: str, batch: int) -> None:
    """One untimed call: a model that fails on these inputs is bad input, not a crash."""
    try:
        item.contender()()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QtoolError(
            f"ONNX Runtime failed running {path} on {source.split(':')[0]} inputs of batch "
            f"{batch}: {first}; give real inputs from a data set",
            param="data",
        ) from exc
