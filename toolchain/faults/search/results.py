"""What the bit search reports: each chosen flip, the run's result (complete or partial), its
manifest (the random-flip format plus a `search` section) and writing them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from qtool.errors import QtoolError
from qtool.faults.incremental import EvaluationMode
from qtool.faults.search.attacked import WEIGHTS, SearchModel
from qtool.faults.search.values import SEARCH_TYPES
from qtool.faults.storage.manifest import SourceRecord, build_manifest, tensor_record
from qtool.modelfile.buffers import ModelFiles, sha256_hex, write_model_files


@dataclass
class SearchStep:
    """One chosen flip and what it did (losses on the attack batch, accuracy on the test set)."""

    step: int
    method: str  # gradient | oracle
    tensor: str
    layer: list[str]  # nodes reading the tensor
    flat_index: int
    coords: list[int]
    bit: int
    old_value: float
    new_value: float
    predicted_gain: float | None  # first-order loss change (gradient path)
    loss_before: float  # the search objective before this flip (ONNX Runtime)
    loss: float  # the search objective after the flip (ONNX Runtime, flipped bytes)
    attack_loss: float  # cross-entropy on the attack batch after the flip (ONNX Runtime)
    attack_agreement: float  # attack samples still given their clean label
    test_accuracy: float  # ONNX Runtime, flipped bytes
    nonfinite_outputs: int
    candidates: int  # candidates whose real loss was measured in this iteration
    seconds: float  # wall time of this iteration


@dataclass
class SearchResult:
    model: str
    data: str
    seed: int
    method: str  # what found the bits: gradient, oracle, or gradient+oracle
    fallback_reason: str | None
    bits: int
    until_accuracy: float | None
    attack_samples: int
    attack_split: str
    eval_split: str
    eval_samples: int
    chance: float
    clean_accuracy: float
    clean_attack_loss: float
    flips_to_target: int | None
    final_accuracy: float
    accuracies: list[float]  # test accuracy after 0, 1, 2, ... flips
    steps: list[SearchStep]
    search_seconds: float
    evaluation: EvaluationMode  # incremental or whole-model scoring, and why
    provider: str = "cpu"  # the execution provider the ONNX Runtime evaluations ran on
    precision: str = "fp32"
    partial: bool = False  # stopped before `bits` flips or the target (see `stopped`)
    stopped: str | None = None  # why the search ended early (time budget, signal, running)
    manifest: dict = field(repr=False, default_factory=dict)
    files: ModelFiles | None = field(repr=False, default=None)

    def accuracy_at(self, budget: int) -> float:
        """Accuracy after `budget` flips (the last one when the search stopped earlier)."""
        return self.accuracies[min(budget, len(self.accuracies) - 1)]

    def summary(self) -> dict:
        out = asdict(self)
        out.pop("manifest")
        out.pop("files")
        return out


@dataclass
class Choice:
    """The flip an iteration chose, and what the searcher measured for it."""

    method: str
    target: int
    word: int
    bit: int
    loss_before: float
    loss: float
    gain: float | None
    candidates: int


def flips_to(accuracies: list[float], target: float | None) -> int | None:
    """The number of flips after which accuracy was first at or below the target."""
    if target is None:
        return None
    return next((k for k, a in enumerate(accuracies) if a <= target + 1e-12), None)


def search_manifest(m: SearchModel, result: SearchResult, entries: list[dict]) -> dict:
    """The random-flip manifest format plus `partial` (with its reason) and `search`."""
    source = SourceRecord(m.source_sha, m.flippable_sha, m.converted, m.originals)
    eligible = [tensor_record(t, t.words * SEARCH_TYPES[t.loc.data_type]) for t in m.targets]
    manifest = build_manifest(
        m.path,
        source,
        {"": sha256_hex(m.files.main)},
        WEIGHTS,
        result.seed,
        (m.total_bits, eligible),
        entries,
    )
    manifest["partial"] = result.partial
    if result.partial:
        manifest["partial_reason"] = result.stopped
    search = result.summary()
    manifest["search"] = {"algorithm": "progressive bit search (Rakin et al. 2019)", **search}
    return manifest


def write_search(
    result: SearchResult, out: Path | str | None, manifest: Path | str | None, force: bool = False
) -> None:
    """Write the flipped model and its manifest atomically (existing files need `force`)."""
    if result.files is None:
        raise QtoolError("this search result holds no model bytes to write")
    if out is not None:
        result.manifest["out"] = str(out)
    pair = None if manifest is None else (manifest, result.manifest)
    write_model_files(result.files, out, force=force, manifest=pair)  # one unit
