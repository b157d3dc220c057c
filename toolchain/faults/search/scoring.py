"""The model under attack, scored in ONNX Runtime: its current scores on the attack batch and
the test split, the loss of candidate flips, and flips made permanent.

Incremental by default (`qtool.faults.incremental`): a candidate builds a session for the
one segment its bit is in and runs from there, on cached activations of the current model;
a chosen flip is committed into the segments and the caches are brought up to date from
that segment on. Candidates run in parallel threads, each ONNX Runtime session on one
thread, so the numbers do not depend on the core count. Without segments (or when asked),
every evaluation builds a session of the whole model, as before.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx

from qtool.errors import QtoolError
from qtool.evaluation.batching import intermediate_bytes_per_row, rows_per_run
from qtool.evaluation.model_io import ModelIO, batches, run_scores
from qtool.faults.incremental import (
    DEFAULT_CACHE_MB,
    EvaluationMode,
    NotIdentical,
    build_incremental,
)
from qtool.faults.incremental.segments import session_factory
from qtool.faults.storage.models import FAULT_MODELS, BitSite
from qtool.faults.storage.targets import Target
from qtool.stopping import Deadline

OPT_LEVEL = "all"  # as a server runs the model, and as campaigns evaluate it
# attack samples per ONNX Runtime run: bounds the activations of a candidate's evaluation
# whatever --attack-samples is (the default 128 runs as one batch unless the model's
# intermediates per row say fewer: `qtool.evaluation.batching`)
ATTACK_BATCH = 128
FLIP = FAULT_MODELS.get("flip")


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class Scoring:
    """Scores of the current bytes on the attack batch (`xa`) and the test split (`xe`)."""

    def __init__(
        self,
        buf: bytearray,
        proto: onnx.ModelProto,
        io: ModelIO,
        targets: list[Target],
        xa: np.ndarray,
        xe: np.ndarray,
        *,
        incremental: bool = True,
        cache_mb: float = DEFAULT_CACHE_MB,
        workers: int | None = None,
        provider: str = "cpu",
        precision: str = "fp32",
    ):
        self.buf, self.io, self.xa, self.xe = buf, io, xa, xe
        self.workers = workers or available_cores()
        self.new_session = session_factory(1, OPT_LEVEL, provider, precision)
        session = self.new_session(bytes(buf))
        row_bytes = intermediate_bytes_per_row(proto, io.input_name)  # `proto` parses `buf`
        self.attack_batch = min(ATTACK_BATCH, rows_per_run(row_bytes, len(xa)))
        self.test_batch = rows_per_run(row_bytes, len(xe))
        self.attack = run_scores(session, io, xa, batch=self.attack_batch)
        self.test = run_scores(session, io, xe, batch=self.test_batch)
        self.inc, self.caches = None, []
        self.mode = EvaluationMode("full", "whole-model evaluation asked for", limit_mb=cache_mb)
        if incremental:
            self._segments(targets, session, cache_mb)
        self._locks: dict[int, threading.Lock] = {}

    def _segments(self, targets: list[Target], session, cache_mb: float) -> None:
        rows = sum(len(f) for _, f in batches(self.io, self.xa, self.attack_batch))
        rows += sum(len(f) for _, f in batches(self.io, self.xe, self.test_batch))
        inc, self.mode = build_incremental(
            self.buf, self.io, targets, self.xa, session, self.new_session,
            rows=rows, limit_mb=cache_mb,
        )  # fmt: skip
        if inc is None:
            return
        try:
            caches = [inc.cache(self.xa, self.attack_batch, self.attack)]
            caches.append(inc.cache(self.xe, self.test_batch, self.test))
        except NotIdentical as exc:
            self.mode.mode, self.mode.reason = "full", f"{exc} on the data"
            return
        self.inc, self.caches = inc, caches
        self.mode.cache_mb = sum(c.nbytes for c in caches) / 2**20
        self.mode.rowwise = inc.rowwise

    # --- candidates ---------------------------------------------------------------------

    def candidate_scores(
        self, sites: list[BitSite], deadline: Deadline | None = None
    ) -> list[np.ndarray | None]:
        """Attack-batch scores with each site's bit flipped (None: ORT refused the model)."""
        deadline = deadline or Deadline()
        with ThreadPoolExecutor(self.workers) as pool:
            futures = [pool.submit(self._one, site) for site in sites]
            try:
                out = []
                for future in futures:
                    out.append(future.result())
                    deadline.check()
                return out
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    def _one(self, site: BitSite) -> np.ndarray | None:
        try:
            if self.inc is None:
                data = bytearray(self.buf)
                FLIP.apply({None: data}, [site])
                session = self.new_session(bytes(data))
                return run_scores(session, self.io, self.xa, self.attack_batch)
            sessions = {j: self.new_session(data) for j, data in self._patched(site).items()}
            return self.inc.scores(self.caches[0], sessions)
        except QtoolError:  # ONNX Runtime cannot load the flipped model: it is broken
            return None

    def _patched(self, site: BitSite) -> dict[int, bytes]:
        """The bytes of each segment the bit is in, flipped (segment buffers are shared by
        the threads: each is patched, copied and restored under its own lock)."""
        assert self.inc is not None
        out = {}
        for j, local in self.inc.segments.segment_sites([site]).items():
            buf = self.inc.segments.models[j].buf
            with self._locks.setdefault(j, threading.Lock()):
                undo = FLIP.apply({None: buf}, local)
                try:
                    out[j] = bytes(buf)
                finally:
                    undo.restore()
        return out

    # --- the chosen flips ---------------------------------------------------------------

    def commit(self, site: BitSite) -> bool:
        """Bring the scores up to date after `site` was flipped in `buf`; False when ORT
        refuses the flipped model."""
        if self.inc is not None:
            self.inc.commit(FLIP, [site], self.caches)
            self.attack, self.test = self.caches[0].scores, self.caches[1].scores
            return True
        try:
            session = self.new_session(bytes(self.buf))
        except QtoolError:
            return False
        self.attack = run_scores(session, self.io, self.xa, batch=self.attack_batch)
        self.test = run_scores(session, self.io, self.xe, batch=self.test_batch)
        return True
