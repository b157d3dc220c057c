"""The model a server runs: verified bytes, the session built from them, and its two uses.

`infer` answers an Open Inference Protocol request (any model, raw tensors in and out);
`classify` takes an image or DICOM upload through the one decoder (`qtool.data.images`) and
returns class probabilities and names, preprocessed exactly as `eval` and `predict` do.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from qtool.data.images import read_image
from qtool.deploy.predict import probabilities
from qtool.deploy.runtime import choose_runtime
from qtool.deploy.verified import VerifiedModel
from qtool.errors import QtoolError
from qtool.evaluation.model_io import ModelIO, model_io
from qtool.runtimes import make_session
from qtool.serving.protocol import (
    InferRequest,
    RequestError,
    TensorSpec,
    infer_response,
    model_metadata,
)


@dataclass
class Concurrency:
    """Inference runs in flight now and the most seen at once (the --workers check)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    now: int = 0
    peak: int = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc) -> None:
        with self.lock:
            self.now -= 1


@dataclass
class ServedModel:
    verified: VerifiedModel
    session: ort.InferenceSession
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    io: ModelIO | None  # None when the model is not an image classifier (no classify)
    loaded_at: float

    @property
    def name(self) -> str:
        return self.verified.name

    def metadata(self) -> dict:
        return model_metadata(self.name, self.inputs, self.outputs)

    def infer(self, request: InferRequest, running: Concurrency) -> dict:
        names = request.outputs or [t.name for t in self.outputs]
        try:
            with running:
                results = self.session.run(names, request.feeds)
        except InvalidArgument as exc:  # e.g. dynamic dims the graph cannot take
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid input"
            raise RequestError(400, f"the model cannot run on this input: {first}") from exc
        return infer_response(self.name, request.id, list(zip(names, results, strict=True)))

    def classify(self, upload: bytes, max_pixels: int, max_batch: int, running) -> dict:
        """Class probabilities for an uploaded image or DICOM (one row per frame)."""
        if self.io is None or len(self.io.input_shape) != 4:
            raise RequestError(
                404, f"model {self.name!r} does not take images; use /v2/models/{self.name}/infer"
            )
        channels = self.io.input_shape[1] if isinstance(self.io.input_shape[1], int) else None
        try:
            x = read_image(upload, channels, name="the upload", max_pixels=max_pixels)
            prepared = self.io.prepare(x)
        except QtoolError as exc:
            raise RequestError(413 if exc.param == "max_pixels" else 415, str(exc)) from exc
        if len(prepared) > max_batch:
            raise RequestError(
                413,
                f"the upload has {len(prepared)} frames; this server's batch limit is {max_batch}",
            )
        with running:
            scores = self.session.run([self.io.output_name], {self.io.input_name: prepared})[0]
        probs = probabilities(np.asarray(scores, dtype=np.float64).reshape(len(prepared), -1))
        names = self.io.class_names or [str(i) for i in range(probs.shape[1])]
        names = names + [str(i) for i in range(len(names), probs.shape[1])]
        return {
            "model_name": self.name,
            "class_names": names[: probs.shape[1]],
            "predictions": [
                {
                    "frame": i,
                    "label": int(row.argmax()),
                    "class": names[int(row.argmax())],
                    "probability": float(row.max()),
                    "probabilities": [float(p) for p in row],
                }
                for i, row in enumerate(probs)
            ],
        }


def build_served(
    verified: VerifiedModel, providers: list[str] | None = None, threads: int | None = None
) -> ServedModel:
    """A session over the verified bytes (never the file on disk), and what it takes; on the
    provider the bundle was validated on unless `providers` says otherwise, as predict runs."""
    run = choose_runtime(verified.manifest, providers)
    # spinning off: idle intra-op threads of a server waiting for requests burn no CPU
    session = make_session(
        verified.session_bytes(),
        providers=[run.provider],
        threads=threads,
        spinning=False,
        precision=run.precision,
    )
    try:
        io = model_io(session, verified.metadata)
    except QtoolError:
        io = None
    return ServedModel(
        verified=verified,
        session=session,
        inputs=[TensorSpec.from_ort(a) for a in session.get_inputs()],
        outputs=[TensorSpec.from_ort(a) for a in session.get_outputs()],
        io=io,
        loaded_at=time.time(),
    )
