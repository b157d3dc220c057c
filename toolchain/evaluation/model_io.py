"""Which tensors of a session take samples and give class scores, and running them in batches.

`ModelIO` decides once which input to feed, which output holds class scores and what
preprocessing the model's metadata asks for; eval, quantise, flip campaigns, the bit search
and predict all share it, so they agree on what "the model's answer" is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from qtool import limits
from qtool.data.shaping import fit_to_input, normalize
from qtool.errors import QtoolError

FLOAT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
}


@dataclass
class ModelIO:
    """Which tensors of a session carry samples in and class scores out."""

    input_name: str
    input_shape: list
    input_dtype: type
    output_name: str
    mean: list[float] | None = None
    std: list[float] | None = None
    class_names: list[str] | None = None
    positive_class: int | None = None  # index of the metadata's positive class (two classes)

    @property
    def fixed_batch(self) -> int | None:
        dim = self.input_shape[0] if self.input_shape else None
        return dim if isinstance(dim, int) and dim > 0 else None

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """Data-set samples -> the array this model's input wants."""
        x = fit_to_input(x, self.input_shape)
        x = normalize(x, self.mean, self.std)
        return x.astype(self.input_dtype, copy=False)


def model_io(
    session: ort.InferenceSession,
    metadata: dict | None = None,
    input_name: str | None = None,
    output_name: str | None = None,
) -> ModelIO:
    """Pick the sample input and the class-score output of a session.

    Input: the named one, else the first float tensor input. Output: the named one, else the
    first float tensor output of rank 2 (scores or probabilities; skl2onnx's int64 `label`
    output is skipped).
    """
    metadata = metadata or {}
    chosen_in = _pick_input(session.get_inputs(), input_name)
    chosen_out = _pick_output(session.get_outputs(), output_name)
    norm = metadata.get("normalization") or {}
    names = metadata.get("class_names")
    width = (chosen_out.shape or [None, None])[-1]
    if names and isinstance(width, int) and width > 0 and len(names) != width:
        raise QtoolError(
            f"the model's metadata names {len(names)} classes but its output "
            f"{chosen_out.name!r} scores {width}; fix qtool.class_names in its metadata"
        )
    return ModelIO(
        input_name=chosen_in.name,
        input_shape=list(chosen_in.shape),
        input_dtype=FLOAT_TYPES[chosen_in.type],
        output_name=chosen_out.name,
        mean=norm.get("mean"),
        std=norm.get("std"),
        class_names=list(names) if names else None,
        positive_class=_positive_index(metadata.get("positive_class"), names),
    )


def _positive_index(name: object, names: object) -> int | None:
    """The recorded positive class as an index into the class names (None if unnamed)."""
    if isinstance(name, str) and isinstance(names, list) and name in names:
        return names.index(name)
    return None


def _named(tensors: list, name: str, kind: str, param: str):
    """The session input/output called `name`, or bad input listing the ones there are."""
    found = next((t for t in tensors if t.name == name), None)
    if found is None:
        names = ", ".join(t.name for t in tensors)
        raise QtoolError(f"the model has no {kind} {name!r}; its {kind}s are: {names}", param=param)
    return found


def _pick_input(inputs: list, name: str | None):
    if name is not None:
        chosen = _named(inputs, name, "input", "input_name")
    else:
        floats = [i for i in inputs if i.type in FLOAT_TYPES]
        if not floats:
            kinds = ", ".join(f"{i.name} ({i.type})" for i in inputs)
            raise QtoolError(
                f"the model has no float tensor input to feed samples into ({kinds}); "
                "qtool evaluates models with float inputs"
            )
        chosen = floats[0]
    if chosen.type not in FLOAT_TYPES:
        raise QtoolError(
            f"input {chosen.name!r} has type {chosen.type}; qtool feeds float tensors only",
            param="input_name",
        )
    return chosen


def _pick_output(outputs: list, name: str | None):
    if name is not None:
        return _named(outputs, name, "output", "output_name")
    scores = [o for o in outputs if o.type in FLOAT_TYPES and len(o.shape or []) == 2]
    if not scores:
        kinds = ", ".join(f"{o.name} ({o.type})" for o in outputs)
        raise QtoolError(
            f"no output holds class scores as a float (batch, classes) tensor ({kinds}); "
            "name the output to read (skl2onnx models: convert with zipmap=False)",
            param="output_name",
        )
    return scores[0]


def batches(io: ModelIO, x: np.ndarray, batch: int = 64):
    """(rows, feed) per ONNX Runtime run, as `run_scores` runs them: `batch` rows at a time,
    or the static batch with the last one zero-padded (keep the first `rows` outputs)."""
    step = io.fixed_batch or batch
    for start in range(0, len(x), step):
        part = x[start : start + step]
        if io.fixed_batch and len(part) < step:  # pad the last batch of a static-batch model
            pad = np.zeros((step - len(part),) + part.shape[1:], dtype=part.dtype)
            yield len(part), np.concatenate([part, pad])
        else:
            yield len(part), part


def run_scores(
    session: ort.InferenceSession, io: ModelIO, x: np.ndarray, batch: int = 64
) -> np.ndarray:
    """Class scores for prepared inputs, batch by batch (batch forced by a static input)."""
    others = [i.name for i in session.get_inputs() if i.name != io.input_name]
    if others:
        raise QtoolError(
            f"the model needs inputs {', '.join(repr(n) for n in others)} besides "
            f"{io.input_name!r}; qtool feeds samples to one input (models with one required "
            "input only)",
            param="input_name",
        )
    chunks = []
    for rows, feed in batches(io, x, batch):
        out = _run(session, io, feed)
        if len(feed) != rows:  # padded: keep the real rows
            out = out[:rows]
        if out.ndim == 0 or out.shape[0] != rows or out.size == 0:
            raise QtoolError(
                f"output {io.output_name!r} has shape {list(out.shape)} for a batch of "
                f"{rows}; qtool reads one row of class scores per sample"
            )
        chunks.append(out.reshape(rows, -1))
    if not chunks:
        raise QtoolError("the data set is empty; nothing to evaluate")
    scores = np.concatenate(chunks)
    limits.check("classes", scores.shape[1], f"the class scores of output {io.output_name!r}")
    return scores


def _run(session: ort.InferenceSession, io: ModelIO, x: np.ndarray) -> np.ndarray:
    """One `session.run`; a model that fails on well-formed input is bad input (exit 2)."""
    try:
        return np.asarray(session.run([io.output_name], {io.input_name: x})[0])
    except Exception as exc:  # onnxruntime's Fail / InvalidArgument / RuntimeException
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QtoolError(
            f"the model fails in ONNX Runtime on {list(x.shape)} input: {first}"
        ) from exc
