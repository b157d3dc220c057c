"""Scores of a faulted model from the segments a fault touches onward, row by row.

A trial's chain starts at the earliest patched segment. Every segment after it runs only on
the rows whose inputs differ (in any bit) from the clean run: a row whose activations at a
cut equal the clean ones gives the clean scores from there on, because each later segment
is the same deterministic computation on the same bytes. Patched segments run every row.
Skipping rows needs ONNX Runtime's result for a row not to depend on the other rows of its
batch; `Incremental.cache` checks that on the data (every other row against the whole
batch) and otherwise runs whole batches (a segment none of whose inputs changed is still
skipped: that needs nothing but determinism).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from qtool.evaluation.model_io import ModelIO
from qtool.faults.incremental.cache import ActivationCache, probe, rows_differ, same
from qtool.faults.incremental.segments import SegmentedModel
from qtool.faults.storage.models import BitSite, StorageFault


class NotIdentical(Exception):
    """A segment did not reproduce the whole model bit for bit."""


class Incremental:
    """A model cut into verified segments; caches per data set; faults evaluated from the
    earliest segment they touch."""

    def __init__(self, segments: SegmentedModel, proto: onnx.ModelProto, io: ModelIO):
        self.segments = segments
        self.proto = proto
        self.io = io
        self.rowwise = io.fixed_batch is None  # a static batch cannot run a subset of rows

    def cache(self, x: np.ndarray, batch: int, reference: np.ndarray) -> ActivationCache:
        """Probe the data set at every cut; check each segment on it, on whole batches and
        on every other row (NotIdentical when a whole batch differs)."""
        plan = self.segments.plan
        assert plan is not None
        cache = ActivationCache(x, batch, self.io, np.array(reference, copy=True))
        names = sorted({n for cut in plan.cuts[1:] for n in cut} - {self.io.input_name})
        cache.runs, _ = probe(
            self.proto, names, self.io.input_name, cache.feeds, self.segments._new_session
        )
        offset = 0
        for r, rows in enumerate(cache.rows):
            expect = dict(cache.runs[r])
            expect[self.io.output_name] = reference[offset : offset + rows]
            for j, model in enumerate(self.segments.models):
                if not self._segment_matches(model, cache.env(r, model.segment.inputs), expect):
                    raise NotIdentical(f"segment {j} differs from the whole model")
                if self.rowwise and rows > 1:
                    every_other = np.arange(0, rows, 2)
                    env = {k: v[every_other] for k, v in cache.env(r, model.segment.inputs).items()}
                    self.rowwise = self._segment_matches(model, env, expect, every_other)
            offset += rows
        return cache

    def _segment_matches(self, model, env, expect, rows: np.ndarray | None = None) -> bool:
        got = model.session.run(list(model.segment.outputs), env)
        for name, value in zip(model.segment.outputs, got, strict=True):
            want = expect[name] if rows is None else expect[name][rows]
            if name == self.io.output_name:
                value = np.asarray(value)[: len(want)].reshape(len(want), -1)
            if not same(value, want):
                return False
        return True

    def scores(self, cache: ActivationCache, sessions: dict[int, Any] | None = None) -> np.ndarray:
        """Raw scores with `sessions` (patched segments) in place of the clean ones."""
        if not sessions:
            return cache.scores.copy()
        return self._run(cache, sessions, set(sessions), store=False)

    def commit(self, fault: StorageFault, sites: list[BitSite], caches: list[ActivationCache]):
        """Make faults permanent and bring every cache up to date (the bit search's steps)."""
        touched = self.segments.commit(fault, sites)
        if touched:
            for cache in caches:
                cache.scores = self._run(cache, {}, touched, store=True)

    def _run(self, cache: ActivationCache, sessions, patched: set[int], *, store: bool):
        scores = cache.scores.copy()
        offset = 0
        for r, rows in enumerate(cache.rows):
            final = self._chain(cache, r, sessions, patched, store)
            if final is not None:
                index, values = final
                keep = index < rows
                scores[offset + index[keep]] = values.reshape(len(index), -1)[keep]
            offset += rows
        return scores

    def _chain(self, cache: ActivationCache, r: int, sessions, patched: set[int], store: bool):
        """Run one batch from the first patched segment; returns (rows computed, raw output)
        of the final segment, or None when no change reached it."""
        stored, feed = cache.runs[r], cache.feeds[r]
        n = len(feed)
        changed: dict[str, np.ndarray] = {}  # tensors that differ from the clean run (n rows)
        dirty: dict[str, np.ndarray] = {}  # their differing rows
        final = None
        for j in range(min(patched), len(self.segments.models)):
            model = self.segments.models[j]
            seg = model.segment
            run = None  # every row
            if j not in patched:
                masks = [dirty[name] for name in seg.inputs if name in dirty]
                if not masks:
                    continue
                if self.rowwise:
                    run = np.flatnonzero(np.logical_or.reduce(masks))
            feeds = {}
            for name in seg.inputs:
                value = changed.get(name)
                if value is None:
                    value = feed if name == self.io.input_name else stored[name]
                feeds[name] = value if run is None else value[run]
            outs = sessions.get(j, model.session).run(list(seg.outputs), feeds)
            index = np.arange(n) if run is None else run
            for name, out in zip(seg.outputs, outs, strict=True):
                if name == self.io.output_name:
                    final = (index, np.asarray(out))
                    continue
                base = stored[name]
                differ = rows_differ(out, base[index])
                if not differ.any():
                    continue
                value = changed.get(name)
                if value is None:
                    value = base.copy()
                value[index] = out
                mask = dirty.get(name, np.zeros(n, dtype=bool))
                mask[index] = differ
                changed[name], dirty[name] = value, mask
        if store:
            stored.update((name, value) for name, value in changed.items() if name in stored)
        return final
