"""Class predictions from a verified bundle: the only way a bundle's model should be run.

The bundle is verified first; a bundle whose bytes differ from its manifest is refused.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from qtool.data.inputs import load_inputs
from qtool.deploy.bundle import extract_archive, is_archive, read_manifest, safe_member
from qtool.deploy.verify import verify
from qtool.errors import QtoolError, WorkFailed
from qtool.evaluation.evaluate import model_io, run_scores
from qtool.modelfile.metadata import qtool_metadata
from qtool.runtimes import make_session


@dataclass
class Prediction:
    source: str
    index: int
    label: int
    class_name: str
    probability: float


def probabilities(scores: np.ndarray) -> np.ndarray:
    """Scores that already are probabilities pass through; logits get a softmax."""
    if np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3):
        return scores
    shifted = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def predict_bundle(bundle: Path, inputs: list[Path]) -> tuple[list[Prediction], dict]:
    """Verify, then run the verified bytes (not a second read of the file that was checked)."""
    if not bundle.exists():
        raise QtoolError(f"bundle {bundle} does not exist: check the path")
    with tempfile.TemporaryDirectory(prefix="qtool-predict-") as tmp:
        folder = extract_archive(bundle, Path(tmp)) if is_archive(bundle) else bundle
        result = verify(folder)
        if not result.intact:
            changed = [t.name for t in result.tensors[:5]] or result.changed_files
            raise WorkFailed(
                f"bundle {bundle} failed verification ({', '.join(changed)} changed); refusing "
                "to predict. Run qtool verify for details, or qtool verify --repair with ECC"
            )
        manifest = read_manifest(folder)
        model_path = safe_member(folder, manifest["model"]["file"])
        model_bytes = model_path.read_bytes()
        expected = manifest["files"][manifest["model"]["file"]]["sha256"]
        if hashlib.sha256(model_bytes).hexdigest() != expected:
            raise WorkFailed(f"{model_path} changed while it was being verified; refusing it")
        # metadata (normalisation, class names) from the verified bytes, not a re-read
        meta = qtool_metadata(onnx.load_model_from_string(model_bytes))
        source = model_path if manifest["model"].get("data_files") else model_bytes
        session = make_session(source)
    io = model_io(session, meta)
    x, origin = load_inputs(inputs, io.input_shape)
    probs = probabilities(run_scores(session, io, io.prepare(x)))
    names = io.class_names or [str(i) for i in range(probs.shape[1])]
    labels = probs.argmax(axis=1)
    predictions = [
        Prediction(
            src,
            idx,
            int(label),
            names[label] if label < len(names) else str(label),
            float(probs[row, label]),
        )
        for row, ((src, idx), label) in enumerate(zip(origin, labels, strict=True))
    ]
    return predictions, {"manifest_sha256": result.manifest_sha256}
