"""One campaign trial: hit N seeded bits of a model held in memory, score it, put them back.

Each model is held as one bytearray. A trial draws its bits, applies the fault model,
builds an ONNX Runtime session from the bytes, scores the (once-prepared) test inputs, and
restores the bytes, so the model is never re-serialised and never re-read. Every trial's
bits come from its own seed (seed, model sha256, budget, trial), so results do not depend on
the number of worker processes or on the order in which trials run, and the same model on two
execution providers gets the same flips in the same trials (a paired comparison of kernels).

With incremental evaluation (the default; `qtool.faults.incremental`) the same bits are
applied to the segment models that read them and only the layers from there on run, on
cached clean activations; the scores are bit-identical to the whole model's (checked when
the model is prepared, else the trial runs the whole model). The segments and the cache
are built once per process, in `prepare_model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper

from qtool.data.datasets import Dataset
from qtool.errors import QtoolError
from qtool.evaluation.batching import intermediate_bytes_per_row, rows_per_run
from qtool.evaluation.evaluate import ModelIO, model_io, run_scores
from qtool.evaluation.model_io import batches
from qtool.faults.campaign.stats import TrialResult
from qtool.faults.incremental import (
    DEFAULT_CACHE_MB,
    ActivationCache,
    EvaluationMode,
    Incremental,
    NotIdentical,
    build_incremental,
)
from qtool.faults.incremental.segments import session_factory
from qtool.faults.storage.models import StorageFault
from qtool.faults.storage.selection import Selection
from qtool.faults.storage.space import BitSpace, bit_space
from qtool.faults.storage.targets import Target, prepare_bytes, select_targets
from qtool.modelfile.buffers import ModelFiles, read_model_files
from qtool.modelfile.metadata import qtool_metadata
from qtool.runtimes import make_session
from qtool.runtimes.providers import DEFAULT_PRECISION

# Trials run the model as a server would: ONNX Runtime's default (all optimisations), so a
# flipped int8 weight goes through the same fused QLinearConv kernels as in deployment. It is
# also the fastest on the zoo's INT8 CNN (7.4 ms per trial vs 33.5 ms with "basic", where the
# QDQ pairs stay unfused); benchmarks/flip.py measures each level.
DEFAULT_OPT_LEVEL = "all"


def inline_bytes(files: ModelFiles) -> bytearray:
    """The model with external data pulled inside (done once; campaigns need one buffer), from
    the bytes in memory: the ones hashed, and all a worker without the files has."""
    if not files.external:
        return bytearray(files.main)
    model = onnx.ModelProto.FromString(bytes(files.main))
    for tensor in external_data_helper._get_all_tensors(model):
        if external_data_helper.uses_external_data(tensor):
            info = external_data_helper.ExternalDataInfo(tensor)
            data = files.external[info.location]
            start = info.offset or 0
            end = start + info.length if info.length else len(data)
            tensor.raw_data = bytes(data[start:end])
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
    return bytearray(model.SerializeToString())


@dataclass
class Scores:
    pred: np.ndarray
    nonfinite: np.ndarray  # rows with any NaN/Inf score


def scores_of(raw: np.ndarray) -> Scores:
    nonfinite = ~np.isfinite(raw).all(axis=1)
    pred = np.argmax(np.nan_to_num(raw, nan=-np.inf), axis=1)
    return Scores(pred, nonfinite)


def predict(session, io: ModelIO, x: np.ndarray, batch: int) -> Scores:
    return scores_of(run_scores(session, io, x, batch=batch))


@dataclass
class PreparedModel:
    """Everything a trial needs, built once per model (per process)."""

    path: str
    sha256: str
    key: int
    buf: bytearray
    targets: list[Target]
    space: BitSpace
    io: ModelIO
    x: np.ndarray
    batch: int  # rows per ONNX Runtime run, the incremental cache's too (batching.py)
    clean: Scores
    converted: list[str]
    opt_level: str
    threads: int
    evaluation: EvaluationMode
    provider: str = "cpu"
    precision: str = DEFAULT_PRECISION
    incremental: Incremental | None = None
    cache: ActivationCache | None = None

    @property
    def fault(self) -> StorageFault:
        return self.space.fault

    def session(self, data: bytes | bytearray | None = None):
        return make_session(
            bytes(self.buf if data is None else data),
            [self.provider],
            threads=self.threads,
            opt_level=self.opt_level,
            spinning=False,
            precision=self.precision,
        )


def prepare_model(
    path: str | Path,
    data: Dataset,
    selection: Selection,
    opt_level: str = DEFAULT_OPT_LEVEL,
    threads: int = 1,
    provider: str = "cpu",
    precision: str = DEFAULT_PRECISION,
    *,
    files: ModelFiles | None = None,
    incremental: bool = False,
    cache_mb: float = DEFAULT_CACHE_MB,
) -> PreparedModel:
    """Read (or take the bytes already read from `path`), inline, select and convert once;
    score the clean model on the data, on the execution provider every trial of this model
    will run on; with `incremental`, cut it into verified segments and cache their inputs (at
    most `cache_mb` MB, else the whole model runs in every trial)."""
    files = files if files is not None else read_model_files(path)
    sha = files.sha256()[""]
    inline = ModelFiles(Path(path), inline_bytes(files))
    targets = select_targets(inline.main, selection)
    targets, converted, _ = prepare_bytes(inline, targets, selection.positions)
    if not targets:
        raise QtoolError(f"{path}: no eligible bits for {selection.describe()}", param="targets")
    space = bit_space(targets, inline.buffers(), selection.fault_model)
    proto = onnx.ModelProto.FromString(bytes(inline.main))
    meta = qtool_metadata(proto)
    session = make_session(
        bytes(inline.main),
        [provider],
        threads=threads,
        opt_level=opt_level,
        spinning=False,
        precision=precision,
    )
    io = model_io(session, meta)
    x = io.prepare(data.x)
    batch = rows_per_run(intermediate_bytes_per_row(proto, io.input_name), len(x))
    del proto
    raw = run_scores(session, io, x, batch=batch)
    mode, inc, cache = (
        EvaluationMode("full", "whole-model evaluation asked for", limit_mb=cache_mb),
        None,
        None,
    )
    if incremental:
        new_session = session_factory(threads, opt_level, provider, precision)
        inc, mode, cache = _incremental(inline.main, io, targets, x, batch, raw, session,
                                        new_session, cache_mb)  # fmt: skip
    return PreparedModel(
        path=str(path),
        sha256=sha,
        key=int(sha[:15], 16),
        buf=inline.main,
        targets=targets,
        space=space,
        io=io,
        x=x,
        batch=batch,
        clean=scores_of(raw),
        converted=converted,
        opt_level=opt_level,
        threads=threads,
        provider=provider,
        precision=precision,
        evaluation=mode,
        incremental=inc,
        cache=cache,
    )


def _incremental(buf, io, targets, x, batch, raw, session, new_session, cache_mb):
    """(segments, how trials are evaluated, cache), or no segments and why not."""
    rows = sum(len(feed) for _, feed in batches(io, x, batch))
    inc, mode = build_incremental(
        buf, io, targets, x, session, new_session, rows=rows, limit_mb=cache_mb
    )
    if inc is None:
        return None, mode, None
    try:
        cache = inc.cache(x, batch, raw)
    except NotIdentical as exc:
        mode.mode, mode.reason = "full", f"{exc} on the data set"
        return None, mode, None
    mode.cache_mb = cache.nbytes / 2**20
    mode.rowwise = inc.rowwise
    return inc, mode, cache


def trial_rng(seed: int, model_key: int, bits: int, trial: int) -> np.random.Generator:
    return np.random.default_rng([seed, model_key, bits, trial])


def run_trial(
    model: PreparedModel, index: int, y: np.ndarray, bits: int, trial: int, seed: int
) -> TrialResult:
    """Hit, build a session from the bytes, score, restore (always, even on failure)."""
    rng = trial_rng(seed, model.key, bits, trial)
    buffers = {None: model.buf}
    hits = model.fault.draw(model.space, bits, rng, buffers)
    sites = [model.targets[h.target].site(h.word, h.bit) for h in hits]
    scores = _incremental_scores(model, sites)
    if scores is None:
        undo = model.fault.apply(buffers, sites)
        try:
            scores = predict(model.session(), model.io, model.x, model.batch)
        except Exception as exc:  # a flipped model ONNX Runtime refuses: counted, not fatal
            return TrialResult(index, bits, trial, 0.0, 0.0, 0, str(exc).splitlines()[0][:200])
        finally:
            undo.restore()
    clean_ok = model.clean.pred == y
    wrong = (scores.pred != y) & ~scores.nonfinite
    sdc = float((clean_ok & wrong).sum() / max(1, clean_ok.sum()))
    return TrialResult(
        index, bits, trial, float((scores.pred == y).mean()), sdc, int(scores.nonfinite.sum())
    )


def _incremental_scores(model: PreparedModel, sites: list) -> Scores | None:
    """Scores from the segments the faults touch onward, or None to run the whole model (no
    segments, or ONNX Runtime refused a faulted segment: the whole model says how)."""
    if model.incremental is None or model.cache is None:
        return None
    try:
        sessions = model.incremental.segments.patched_sessions(model.fault, sites)
        return scores_of(model.incremental.scores(model.cache, sessions))
    except Exception:  # noqa: BLE001 - the whole model reproduces the failure and its message
        return None
