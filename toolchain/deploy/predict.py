"""Class predictions from a verified bundle: the only way a bundle's model should be run.

The bundle is verified first (its signature too, given a trust list); a bundle whose bytes
differ from its manifest is refused, and the bytes that were verified are the ones run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qtool.data.inputs import load_inputs
from qtool.deploy.archive import opened_bundle
from qtool.deploy.runtime import choose_runtime
from qtool.deploy.verified import load_verified
from qtool.errors import QtoolError
from qtool.evaluation.evaluate import model_io, run_scores
from qtool.evaluation.roc import probabilities
from qtool.runtimes import make_session


@dataclass
class Prediction:
    source: str
    index: int
    label: int
    class_name: str
    probability: float


def predict_bundle(
    bundle: Path,
    inputs: list[Path],
    trust: dict | None = None,
    max_pixels: int | None = None,
    providers: list[str] | None = None,
    precision: str | None = None,
) -> tuple[list[Prediction], dict]:
    """Verify (with `trust`, the signature first), then classify `inputs` with the verified
    model bytes; a changed, unsigned or untrusted bundle is refused. Runs on the first usable
    of `providers` when given, else on the provider the bundle records
    (deploy.runtime.choose_runtime), else the CPU provider."""
    if not bundle.exists():
        raise QtoolError(f"bundle {bundle} does not exist: check the path")
    with opened_bundle(bundle, prefix="qtool-predict-") as folder:
        model = load_verified(folder, trust, label=str(bundle))
    run = choose_runtime(model.manifest, providers, precision)
    session = make_session(model.session_bytes(), [run.provider], precision=run.precision)
    io = model_io(session, model.metadata)
    x, origin = load_inputs(inputs, io.input_shape, max_pixels)
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
    signer = model.signature.summary if model.signature else ""
    recorded = (model.manifest.get("runtime") or {}).get("provider")
    return predictions, {
        "manifest_sha256": model.manifest_sha256,
        "signer": signer,
        "provider": run.provider,
        "precision": run.precision,
        "provider_chosen": run.why,
        "provider_recorded": recorded,
    }
