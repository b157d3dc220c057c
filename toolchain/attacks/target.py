"""The deployed model as the attacker meets it: an ONNX Runtime session, nothing more.

A `Target` holds a session and the input/output choice of `qtool eval`; there is no path from it
to the weights, no torch module and no gradient. The file is read once to build the session and
its metadata (normalisation, class names) and never written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from qtool.evaluation.evaluate import ModelIO, model_io, run_scores
from qtool.modelfile.load import load_model
from qtool.modelfile.metadata import qtool_metadata
from qtool.runtimes import make_session

BATCH = 64  # rows per session.run: queries reach the model in batches


@dataclass
class Target:
    name: str
    session: ort.InferenceSession
    io: ModelIO

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Class scores for images in [0, 1] (the model's own preprocessing applied)."""
        return run_scores(self.session, self.io, self.io.prepare(x), BATCH)

    def predict(self, x: np.ndarray) -> np.ndarray:
        scores = self.scores(x)
        return np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=1)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """What a scoring service would return: softmax of logits, probabilities as they are."""
        s = np.nan_to_num(self.scores(x).astype(np.float64), nan=0.0)
        if np.all(s >= 0) and np.allclose(s.sum(axis=1), 1.0, atol=1e-3):
            return s.astype(np.float32)
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def load_target(path: str | Path, data: bytes | None = None) -> Target:
    """The target at `path`, or from `data` (its bytes with any external data inlined, as
    sent to a worker that does not have the file)."""
    path = Path(path)
    proto = load_model(path) if data is None else onnx.ModelProto.FromString(data)
    session = make_session(path if data is None else data)
    return Target(str(path), session, model_io(session, qtool_metadata(proto)))
