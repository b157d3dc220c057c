"""Clean vs faulted accuracy of one manifest's faults, done in memory on the source model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qtool.data.datasets import load_dataset
from qtool.errors import QtoolError
from qtool.faults.campaign.trials import DEFAULT_OPT_LEVEL, predict, prepare_model
from qtool.faults.storage.manifest import replay_entries
from qtool.faults.storage.selection import selection_of_record
from qtool.runtimes.providers import DEFAULT_PRECISION


@dataclass
class FlipEvaluation:
    data: str
    split: str
    samples: int
    clean_accuracy: float
    flipped_accuracy: float
    sdc_rate: float  # of the inputs the clean model gets right, now wrong with finite scores
    sdc_inputs: int
    clean_correct: int
    nonfinite_rows: int  # flipped-model inputs with NaN/Inf scores
    clean_nonfinite_rows: int
    provider: str = "cpu"  # the execution provider both were scored on
    precision: str = DEFAULT_PRECISION


def evaluate_manifest(
    path: str | Path,
    manifest: dict,
    data_spec: str,
    split: str | None = None,
    opt_level: str = DEFAULT_OPT_LEVEL,
    provider: str = "cpu",
    precision: str = DEFAULT_PRECISION,
) -> FlipEvaluation:
    """Clean vs flipped accuracy of the manifest's flips, done in memory on `path`, in
    ONNX Runtime on `provider`."""
    data = load_dataset(data_spec, split)
    if data.y is None:
        raise QtoolError(f"data set {data_spec} has no labels to score against", param="data_spec")
    selection = selection_of_record(manifest)
    model = prepare_model(path, data, selection, opt_level, 0, provider, precision)
    flipped = {None: bytearray(model.buf)}
    replay_entries(path, flipped, manifest["flips"], check=False, inline=True)
    scores = predict(model.session(flipped[None]), model.io, model.x, model.batch)
    y = data.y
    clean_ok = model.clean.pred == y
    sdc = clean_ok & (scores.pred != y) & ~scores.nonfinite
    return FlipEvaluation(
        data=data.spec,
        split=data.split,
        samples=len(y),
        clean_accuracy=float(clean_ok.mean()),
        flipped_accuracy=float((scores.pred == y).mean()),
        sdc_rate=float(sdc.sum() / max(1, clean_ok.sum())),
        sdc_inputs=int(sdc.sum()),
        clean_correct=int(clean_ok.sum()),
        nonfinite_rows=int(scores.nonfinite.sum()),
        clean_nonfinite_rows=int(model.clean.nonfinite.sum()),
        provider=provider,
        precision=precision,
    )
