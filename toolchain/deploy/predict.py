"""Class predictions from a verified bundle: the only way a bundle's model should be run.

The bundle is verified first; a bundle whose bytes differ from its manifest is refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from qtool.data.inputs import load_inputs
from qtool.deploy.archive import opened_bundle
from qtool.deploy.manifest import read_manifest, safe_member
from qtool.deploy.runtime import choose_runtime
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


def _verified_model(bundle: Path, folder: Path) -> tuple[bytes | Path, dict, dict, str]:
    """(session source, qtool metadata, manifest, manifest sha256) of a bundle that verifies
    intact.

    The model bytes are read once, checked against the manifest, and those same bytes are
    run (not a second read of the file that was checked).
    """
    result = verify(folder)
    if not result.intact:
        changed = [t.name for t in result.tensors[:5]] or result.changed_files
        raise WorkFailed(
            f"bundle {bundle} failed verification ({', '.join(changed)} changed); refusing to "
            "predict. Verify it for the details, and repair it if it was packaged with ECC"
        )
    manifest = read_manifest(folder)
    model_path = safe_member(folder, manifest["model"]["file"])
    model_bytes = model_path.read_bytes()
    expected = manifest["files"][manifest["model"]["file"]]["sha256"]
    if hashlib.sha256(model_bytes).hexdigest() != expected:
        raise WorkFailed(f"{model_path} changed while it was being verified; refusing it")
    meta = qtool_metadata(onnx.load_model_from_string(model_bytes))
    source = model_path if manifest["model"].get("data_files") else model_bytes
    return source, meta, manifest, result.manifest_sha256


def predict_bundle(
    bundle: Path,
    inputs: list[Path],
    providers: list[str] | None = None,
    precision: str | None = None,
) -> tuple[list[Prediction], dict]:
    """Verify, then classify `inputs` with the verified model; refuses a changed bundle.
    Runs on the first usable of `providers` when given, else on the provider the bundle
    records (deploy.runtime.choose_runtime), else the CPU provider."""
    if not bundle.exists():
        raise QtoolError(f"bundle {bundle} does not exist: check the path")
    with opened_bundle(bundle, prefix="qtool-predict-") as folder:
        source, meta, manifest, manifest_sha = _verified_model(bundle, folder)
        run = choose_runtime(manifest, providers, precision)
        session = make_session(source, [run.provider], precision=run.precision)
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
    recorded = (manifest.get("runtime") or {}).get("provider")
    return predictions, {
        "manifest_sha256": manifest_sha,
        "provider": run.provider,
        "precision": run.precision,
        "provider_chosen": run.why,
        "provider_recorded": recorded,
    }
