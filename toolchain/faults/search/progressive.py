"""The progressive bit search loop (Rakin et al. 2019): one chosen flip per iteration.

Each iteration asks the gradient searcher for its best flip (or, without one, the oracle),
applies it to the ONNX *bytes* (the one fault `apply`, as random flips do) and measures
accuracy on the test split in ONNX Runtime from those bytes. It stops after N flips or when
the test accuracy reaches the target. The manifest has the random-flip format (replay, undo
and `qtool verify` work on it) plus a `search` section logging every iteration.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from qtool.errors import QtoolError
from qtool.faults.campaign.stats import chance_accuracy
from qtool.faults.search.attacked import ATTACK_SPLIT, WEIGHTS, Loader, SearchModel
from qtool.faults.search.gradient import GradientSearcher
from qtool.faults.search.oracle import oracle_step
from qtool.faults.search.values import SEARCH_TYPES
from qtool.faults.storage.manifest import (
    SourceRecord,
    build_manifest,
    flip_entry,
    tensor_record,
)
from qtool.modelfile.buffers import ModelFiles, sha256_hex, write_model_files
from qtool.report import info, progress

METHODS = ("auto", "gradient", "oracle")


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
    loss_before: float  # the searcher's attack loss before this flip
    loss: float  # attack loss after the flip as measured by the searcher (replica or ORT)
    attack_loss: float  # attack loss after the flip, ONNX Runtime on the flipped bytes
    attack_agreement: float  # attack samples still given their clean label
    test_accuracy: float  # ONNX Runtime, flipped bytes
    nonfinite_outputs: int
    candidates: int  # candidates whose real loss was measured in this iteration


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
    provider: str = "cpu"  # the execution provider the ONNX Runtime evaluations ran on
    precision: str = "fp32"
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


def progressive_search(
    model: Path | str,
    data: str,
    bits: int,
    until_accuracy: float | None = None,
    attack_samples: int = 128,
    seed: int = 0,
    *,
    method: str = "auto",
    per_layer: int = 1,
    oracle_elements: int = 4,
    select: str = "loss",
    objective: str = "auto",
    show_progress: bool = False,
    provider: str = "cpu",
    precision: str = "fp32",
    files: ModelFiles | None = None,
    load: Loader | None = None,
) -> SearchResult:
    """Choose up to `bits` bit flips that raise the attack loss most (Rakin et al. 2019).

    `until_accuracy` is a fraction (0.2 = 20 %); the search stops once the ONNX Runtime test
    accuracy is at or below it. `method`: auto (gradient, falling back to the oracle when the
    graph cannot be replicated or torch is missing), gradient, or oracle. The flipped model is
    in `result.files` (write it with `write_search`); the model file is never modified.
    Every ONNX Runtime evaluation (loss oracle, attack labels, test accuracy) runs on
    `provider` at `precision`; the gradients come from the torch replica either way.
    `files` and `load` are the model's bytes and a data loader sent to a worker.
    """
    start = time.perf_counter()
    _check_arguments(method, bits, attack_samples, until_accuracy)
    path = Path(model)
    m = SearchModel(path, data, attack_samples, seed, provider, precision, files=files, load=load)
    if bits > m.total_bits:
        raise QtoolError(
            f"{bits} is more than the {m.total_bits} weight bits of {path}", param="bits"
        )
    rng = np.random.default_rng([seed, 0xB175])
    searcher, reason = _gradient_searcher(m, method, per_layer, objective)
    _, clean_acc, clean_loss, _ = m.evaluate()
    run = _Run(m, searcher, rng, oracle_elements, select, [clean_acc])
    run.steps_until(bits, until_accuracy, show_progress)
    accuracies, steps = run.accuracies, run.steps
    used = {s.method for s in steps} or {"gradient" if searcher is not None else "oracle"}
    result = SearchResult(
        model=str(path),
        data=data,
        seed=seed,
        method="+".join(h for h in ("gradient", "oracle") if h in used),
        fallback_reason=reason,
        bits=bits,
        until_accuracy=until_accuracy,
        attack_samples=len(m.xa),
        attack_split=ATTACK_SPLIT,
        eval_split=m.evaluation.split,
        eval_samples=len(m.xe),
        chance=chance_accuracy(m.evaluation.y),
        clean_accuracy=clean_acc,
        clean_attack_loss=clean_loss,
        flips_to_target=flips_to(accuracies, until_accuracy),
        final_accuracy=accuracies[-1],
        accuracies=accuracies,
        steps=steps,
        search_seconds=time.perf_counter() - start,
        provider=provider,
        precision=precision,
        files=m.files,
    )
    result.manifest = search_manifest(m, result, run.entries)
    return result


def _check_arguments(
    method: str, bits: int, attack_samples: int, until_accuracy: float | None
) -> None:
    if method not in METHODS:
        raise QtoolError(f"unknown search method {method!r}: use {', '.join(METHODS)}")
    if bits < 1:
        raise QtoolError(f"{bits}: a bit search needs at least 1 bit", param="bits")
    if attack_samples < 1:
        raise QtoolError(f"{attack_samples}: give at least 1 sample", param="attack_samples")
    if until_accuracy is not None and not 0.0 <= until_accuracy <= 1.0:
        raise QtoolError(
            f"{until_accuracy}: the accuracy target is a fraction between 0 and 1",
            param="until_accuracy",
        )


def _gradient_searcher(
    m: SearchModel, method: str, per_layer: int, objective: str
) -> tuple[GradientSearcher | None, str | None]:
    """The gradient searcher, or (None, why not) when `auto` falls back to the oracle."""
    if method not in ("auto", "gradient"):
        return None, None
    from qtool.runtimes.torch_replica import UnsupportedGraph

    try:
        return GradientSearcher(m, per_layer, objective), None
    except UnsupportedGraph as exc:
        if method == "gradient":
            raise
        info(f"gradient search unavailable ({exc}); using the ONNX Runtime loss oracle")
        return None, str(exc)


@dataclass
class _Run:
    """The loop's state: the model being flipped, the searchers, and the log so far."""

    m: SearchModel
    searcher: GradientSearcher | None
    rng: np.random.Generator
    oracle_elements: int
    select: str
    accuracies: list[float]
    steps: list[SearchStep] = field(default_factory=list)
    entries: list[dict] = field(default_factory=list)

    def steps_until(self, bits: int, until_accuracy: float | None, show_progress: bool) -> None:
        """Up to `bits` iterations, stopping once accuracy is at or below the target."""
        with progress() as bar:
            task = bar.add_task("bit search", total=bits, status="")
            bar.update(task, visible=show_progress)
            for step in range(1, bits + 1):
                if until_accuracy is not None and self.accuracies[-1] <= until_accuracy:
                    break
                choice = self.gradient_choice() if self.searcher is not None else None
                if choice is None:  # no gradient path, or no first-order candidate helps
                    choice = self.oracle_choice()
                done = self.take(choice, step)
                bar.update(task, advance=1, status=f"accuracy {100 * done.test_accuracy:.1f} %")

    def gradient_choice(self) -> Choice | None:
        """The candidate with the highest real loss (or attack error rate, select="errors")."""
        assert self.searcher is not None
        before, cands = self.searcher.candidates()
        best = None
        for gain, i, w, b, new in cands:
            loss, errors = self.searcher.measure(i, w, new)
            key = (errors, loss) if self.select == "errors" else (loss, errors)
            if best is None or key > best[0]:
                best = (key, loss, gain, i, w, b)
        if best is None:
            return None
        _, loss, gain, i, w, b = best
        return Choice("gradient", i, w, b, before, loss, gain, len(cands))

    def oracle_choice(self) -> Choice:
        before = self.m.ort_attack_loss()[0]
        i, w, b, loss, n = oracle_step(self.m, self.rng, self.oracle_elements)
        return Choice("oracle", i, w, b, before, loss, None, n)

    def take(self, c: Choice, step: int) -> SearchStep:
        """Flip the chosen bit in the bytes, measure in ONNX Runtime, log it."""
        m = self.m
        t = m.targets[c.target]
        site = t.site(c.word, c.bit)
        old_word, old_byte = t.word_bytes(m.files.main, c.word), m.files.main[site.offset]
        m.flip(c.target, c.word, c.bit)
        m.flipped.add((c.target, c.word, c.bit))
        new_word = t.word_bytes(m.files.main, c.word)
        if self.searcher is not None:
            self.searcher.sync(c.target, c.word)
        scores, acc, ort_loss, agree = m.evaluate()
        entry = flip_entry(
            t, c.word, c.bit, old_word, new_word, old_byte, m.files.main[site.offset]
        )
        done = SearchStep(
            step=step,
            method=c.method,
            tensor=t.loc.name,
            layer=sorted(set(m.readers.get(t.key, []))),
            flat_index=entry["flat_index"],
            coords=entry["coords"],
            bit=c.bit,
            old_value=entry["old_value"],
            new_value=entry["new_value"],
            predicted_gain=c.gain,
            loss_before=c.loss_before,
            loss=c.loss,
            attack_loss=ort_loss,
            attack_agreement=agree,
            test_accuracy=acc,
            nonfinite_outputs=0 if scores is None else int(scores.nonfinite.sum()),
            candidates=c.candidates,
        )
        self.accuracies.append(acc)
        self.entries.append(entry)
        self.steps.append(done)
        return done


def search_manifest(m: SearchModel, result: SearchResult, entries: list[dict]) -> dict:
    """The random-flip manifest format plus the `search` section."""
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
