"""The progressive bit search loop (Rakin et al. 2019): one chosen flip per iteration.

Each iteration asks the gradient searcher for its best flips (or, without one, the oracle),
measures each candidate in ONNX Runtime on the attack batch (incremental: only the layers
from the flipped one on), applies the winner to the ONNX *bytes* (the one fault `apply`, as
random flips do) and measures accuracy on the test split from those bytes. It stops after N
flips, when the test accuracy reaches the target, when the time budget runs out, or on
Ctrl-C / SIGTERM. After every flip the `checkpoint` callback gets the result so far (marked
partial), so an interrupted run keeps what it found; the manifest has the random-flip
format (replay, undo and `qtool verify` work on it, partial or not) plus a `search` log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qtool.errors import QtoolError
from qtool.faults.campaign.stats import chance_accuracy
from qtool.faults.incremental import DEFAULT_CACHE_MB
from qtool.faults.search.attacked import ATTACK_SPLIT, Loader, SearchModel
from qtool.faults.search.gradient import GradientSearcher
from qtool.faults.search.oracle import oracle_step
from qtool.faults.search.results import (
    Choice,
    SearchResult,
    SearchStep,
    flips_to,
    search_manifest,
)
from qtool.faults.storage.manifest import flip_entry
from qtool.modelfile.buffers import ModelFiles
from qtool.report import info, progress
from qtool.stopping import Deadline, OutOfTime, deferred, signal_name, stop_on_signals

METHODS = ("auto", "gradient", "oracle")
Checkpoint = Callable[[SearchResult], None]


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
    incremental: bool = True,
    cache_mb: float = DEFAULT_CACHE_MB,
    deadline: Deadline | None = None,
    checkpoint: Checkpoint | None = None,
) -> SearchResult:
    """Choose up to `bits` bit flips that raise the attack loss most (Rakin et al. 2019).

    `until_accuracy` is a fraction (0.2 = 20 %); the search stops once the ONNX Runtime test
    accuracy is at or below it. `method`: auto (gradient, falling back to the oracle when the
    graph cannot be replicated or torch is missing), gradient, or oracle. The flipped model is
    in `result.files` (write it with `write_search`); the model file is never modified.
    Every ONNX Runtime evaluation (loss oracle, attack labels, test accuracy) runs on
    `provider` at `precision`; the gradients come from the torch replica either way.
    `files` and `load` are the model's bytes and a data loader sent to a worker.

    `incremental` (default) scores candidates from the flipped layer on (bit-identical; at
    most `cache_mb` MB of activations, else whole-model sessions). `checkpoint` is called
    with the result so far after every flip (partial) and with the final result. When
    `deadline` passes, the result is partial with the reason; Ctrl-C or SIGTERM re-raise
    KeyboardInterrupt after the checkpoint got the partial result (as `.search_result`).
    """
    start = time.perf_counter()
    _check_arguments(method, bits, attack_samples, until_accuracy)
    path = Path(model)
    m = SearchModel(
        path, data, attack_samples, seed, provider, precision, files=files, load=load,
        incremental=incremental, cache_mb=cache_mb,
    )  # fmt: skip
    if bits > m.total_bits:
        raise QtoolError(
            f"{bits} is more than the {m.total_bits} weight bits of {path}", param="bits"
        )
    searcher, reason = _gradient_searcher(m, method, per_layer, objective)
    rng = np.random.default_rng([seed, 0xB175])
    header = (data, seed, bits, until_accuracy, reason, start)
    run = _Run(m, searcher, rng, oracle_elements, select, deadline or Deadline(), header)

    def on_step() -> None:
        if checkpoint is not None:
            checkpoint(run.result(f"in progress: {len(run.steps)} of {bits} flips"))

    try:
        with stop_on_signals():
            run.steps_until(until_accuracy, show_progress, on_step)
    except KeyboardInterrupt as exc:
        done = f"{len(run.steps)} of {bits} flips"
        exc.search_result = run.result(f"interrupted ({signal_name(exc)}) after {done}")
        if checkpoint is not None:
            checkpoint(exc.search_result)
        raise
    result = run.result(run.stopped)
    if checkpoint is not None:
        checkpoint(result)
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
    deadline: Deadline
    header: tuple  # (data, seed, bits, until_accuracy, fallback reason, start time)
    steps: list[SearchStep] = field(default_factory=list)
    entries: list[dict] = field(default_factory=list)
    stopped: str | None = None

    def __post_init__(self) -> None:
        _, self.clean_accuracy, self.clean_loss, _ = self.m.evaluate()
        self.accuracies = [self.clean_accuracy]

    def steps_until(self, until_accuracy: float | None, show_progress: bool, on_step) -> None:
        """Up to `bits` iterations, stopping once accuracy is at or below the target or the
        time budget is spent; each flip is applied and logged whole (signals wait for it)."""
        bits = self.header[2]
        with progress() as bar:
            task = bar.add_task("bit search", total=bits, status="")
            bar.update(task, visible=show_progress)
            for step in range(1, bits + 1):
                if until_accuracy is not None and self.accuracies[-1] <= until_accuracy:
                    break
                begun = time.perf_counter()
                try:
                    self.deadline.check()
                    choice = self.gradient_choice() if self.searcher is not None else None
                    if choice is None:  # no gradient path, or no first-order candidate helps
                        choice = self.oracle_choice()
                except OutOfTime as exc:
                    self.stopped = f"{exc} after {len(self.steps)} of {bits} flips"
                    break
                with deferred():
                    done = self.take(choice, step, begun)
                    on_step()
                status = f"accuracy {100 * done.test_accuracy:.1f} %, {done.seconds:.1f} s/flip"
                bar.update(task, advance=1, status=status)

    def gradient_choice(self) -> Choice | None:
        """The candidate with the highest real loss (or attack error rate, select="errors"),
        measured in ONNX Runtime."""
        assert self.searcher is not None
        _, cands = self.searcher.candidates(self.deadline)
        if not cands:
            return None
        objective = self.searcher.objective
        bits = [(i, w, b) for _, i, w, b, _ in cands]
        measured = self.m.candidate_losses(bits, objective, self.deadline)
        best = None
        for (gain, i, w, b, _), (loss, errors) in zip(cands, measured, strict=True):
            key = (errors, loss) if self.select == "errors" else (loss, errors)
            if best is None or key > best[0]:
                best = (key, loss, gain, i, w, b)
        _, loss, gain, i, w, b = best
        before = self.m.objective(objective)(None if self.m.broken else self.m.scoring.attack)
        return Choice("gradient", i, w, b, before, loss, gain, len(cands))

    def oracle_choice(self) -> Choice:
        before = self.m.attack_loss()[0]
        i, w, b, loss, n = oracle_step(self.m, self.rng, self.oracle_elements, self.deadline)
        return Choice("oracle", i, w, b, before, loss, None, n)

    def take(self, c: Choice, step: int, begun: float) -> SearchStep:
        """Flip the chosen bit in the bytes, measure in ONNX Runtime, log it."""
        m = self.m
        t = m.targets[c.target]
        site = t.site(c.word, c.bit)
        old_word, old_byte = t.word_bytes(m.files.main, c.word), m.files.main[site.offset]
        m.commit(c.target, c.word, c.bit)
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
            seconds=time.perf_counter() - begun,
        )
        self.accuracies.append(acc)
        self.entries.append(entry)
        self.steps.append(done)
        return done

    def result(self, stopped: str | None) -> SearchResult:
        """The search so far as a result with its manifest (partial when `stopped`)."""
        data, seed, bits, until_accuracy, reason, start = self.header
        m, steps = self.m, list(self.steps)
        used = {s.method for s in steps} or {"gradient" if self.searcher is not None else "oracle"}
        result = SearchResult(
            model=str(m.path),
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
            clean_accuracy=self.clean_accuracy,
            clean_attack_loss=self.clean_loss,
            flips_to_target=flips_to(self.accuracies, until_accuracy),
            final_accuracy=self.accuracies[-1],
            accuracies=list(self.accuracies),
            steps=steps,
            search_seconds=time.perf_counter() - start,
            evaluation=m.scoring.mode,
            provider=m.provider,
            precision=m.precision,
            partial=stopped is not None,
            stopped=stopped,
            files=m.files,
        )
        result.manifest = search_manifest(m, result, list(self.entries))
        return result
