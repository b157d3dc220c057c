"""Classification accuracy of an ONNX model in ONNX Runtime, for models qtool made or not.

`ModelIO` decides once which input to feed, which output holds class scores and what
preprocessing the model's metadata asks for; eval, quantise, flip campaigns and predict all
share it, so they agree on what "the model's answer" is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from qtool.data.datasets import Dataset, fit_to_input, normalize
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
    inputs = session.get_inputs()
    if input_name is not None:
        chosen_in = next((i for i in inputs if i.name == input_name), None)
        if chosen_in is None:
            names = ", ".join(i.name for i in inputs)
            raise QtoolError(f"the model has no input {input_name!r}; its inputs are: {names}")
    else:
        floats = [i for i in inputs if i.type in FLOAT_TYPES]
        if not floats:
            kinds = ", ".join(f"{i.name} ({i.type})" for i in inputs)
            raise QtoolError(
                f"the model has no float tensor input to feed samples into ({kinds}); "
                "qtool evaluates models with float inputs"
            )
        chosen_in = floats[0]
    if chosen_in.type not in FLOAT_TYPES:
        raise QtoolError(
            f"input {chosen_in.name!r} has type {chosen_in.type}; qtool feeds float tensors only"
        )
    outputs = session.get_outputs()
    if output_name is not None:
        chosen_out = next((o for o in outputs if o.name == output_name), None)
        if chosen_out is None:
            names = ", ".join(o.name for o in outputs)
            raise QtoolError(f"the model has no output {output_name!r}; its outputs are: {names}")
    else:
        scores = [o for o in outputs if o.type in FLOAT_TYPES and len(o.shape or []) == 2]
        if not scores:
            kinds = ", ".join(f"{o.name} ({o.type})" for o in outputs)
            raise QtoolError(
                f"no output holds class scores as a float (batch, classes) tensor ({kinds}); "
                "pick one with --output (skl2onnx models: convert with zipmap=False)"
            )
        chosen_out = scores[0]
    norm = metadata.get("normalization") or {}
    names = metadata.get("class_names")
    return ModelIO(
        input_name=chosen_in.name,
        input_shape=list(chosen_in.shape),
        input_dtype=FLOAT_TYPES[chosen_in.type],
        output_name=chosen_out.name,
        mean=norm.get("mean"),
        std=norm.get("std"),
        class_names=list(names) if names else None,
    )


def run_scores(
    session: ort.InferenceSession, io: ModelIO, x: np.ndarray, batch: int = 64
) -> np.ndarray:
    """Class scores for prepared inputs, batch by batch (batch forced by a static input)."""
    step = io.fixed_batch or batch
    chunks = []
    for start in range(0, len(x), step):
        part = x[start : start + step]
        if io.fixed_batch and len(part) < step:  # pad the last batch of a static-batch model
            pad = np.zeros((step - len(part),) + part.shape[1:], dtype=part.dtype)
            out = session.run([io.output_name], {io.input_name: np.concatenate([part, pad])})[0]
            out = out[: len(part)]
        else:
            out = session.run([io.output_name], {io.input_name: part})[0]
        chunks.append(np.asarray(out).reshape(len(part), -1))
    if not chunks:
        raise QtoolError("the data set is empty; nothing to evaluate")
    return np.concatenate(chunks)


@dataclass
class ClassStats:
    name: str
    precision: float
    recall: float
    support: int


@dataclass
class EvalResult:
    accuracy: float
    samples: int
    correct: int
    nonfinite_outputs: int
    per_class: list[ClassStats]
    confusion: list[list[int]]
    data: str = ""
    split: str = ""
    output: str = ""
    sensitivity: float | None = None
    specificity: float | None = None
    positive_class: str | None = None
    extra: dict = field(default_factory=dict)


def classification_metrics(
    pred: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    positive: int | None = None,
) -> EvalResult:
    """Accuracy, per-class precision/recall, confusion matrix (rows: true, cols: predicted)."""
    k = max(len(class_names), int(labels.max()) + 1, int(pred.max()) + 1 if len(pred) else 0)
    names = list(class_names) + [str(i) for i in range(len(class_names), k)]
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    per_class = []
    for c in range(k):
        tp = confusion[c, c]
        predicted = confusion[:, c].sum()
        actual = confusion[c, :].sum()
        per_class.append(
            ClassStats(
                names[c],
                float(tp / predicted) if predicted else 0.0,
                float(tp / actual) if actual else 0.0,
                int(actual),
            )
        )
    correct = int(np.trace(confusion))
    result = EvalResult(
        accuracy=correct / len(labels) if len(labels) else 0.0,
        samples=int(len(labels)),
        correct=correct,
        nonfinite_outputs=0,
        per_class=per_class,
        confusion=confusion.tolist(),
    )
    if k == 2:
        pos = 1 if positive is None else positive
        neg = 1 - pos
        result.positive_class = names[pos]
        result.sensitivity = per_class[pos].recall
        result.specificity = per_class[neg].recall
    return result


def evaluate_session(
    session: ort.InferenceSession,
    io: ModelIO,
    dataset: Dataset,
    batch: int = 64,
    positive: int | None = None,
) -> EvalResult:
    if dataset.y is None:
        raise QtoolError(
            f"data set {dataset.spec} ({dataset.split}) has no labels to score against"
        )
    scores = run_scores(session, io, io.prepare(dataset.x), batch)
    nonfinite = int((~np.isfinite(scores)).any(axis=1).sum())
    pred = np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=1)
    names = io.class_names or dataset.class_names
    if positive is None:
        positive = dataset.extra.get("positive_class")
    result = classification_metrics(pred, dataset.y, names, positive)
    result.nonfinite_outputs = nonfinite
    result.data, result.split, result.output = dataset.spec, dataset.split, io.output_name
    return result
