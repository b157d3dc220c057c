"""Cut a model for incremental fault evaluation, keeping only cuts proven bit-identical.

1. `plan.propose` puts a boundary in front of each target's first consumer.
2. A probe on a few rows gives each cut tensor's bytes per row; the earliest boundaries are
   dropped until the cache fits the limit (later cuts are smaller and serve most bits).
3. For each boundary, latest first, the chain of segments started on the probe's values
   must reproduce the whole model's scores bit for bit on those rows; a boundary that does
   not (ONNX Runtime fused across it) is dropped and its segment merges into the one before.
4. `Incremental.cache` probes the whole data set in `run_scores`' batches and checks every
   segment against it, and the last one against the whole model's scores, bit for bit.
Anything else (subgraphs, random ops, no cut left) means full evaluation, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from qtool.evaluation.model_io import ModelIO, batches
from qtool.faults.incremental.cache import probe, row_bytes, same
from qtool.faults.incremental.evaluate import Incremental
from qtool.faults.incremental.plan import GraphInfo, propose, unsupported
from qtool.faults.incremental.segments import SegmentedModel, value_info
from qtool.faults.storage.targets import Target

DEFAULT_CACHE_MB = 1024  # per process; `--cache-mb` raises or lowers it
CHECK_ROWS = 16  # rows of the quick per-boundary check (the whole data set is checked after)


@dataclass
class EvaluationMode:
    """How faulted models are evaluated, as reports state it."""

    mode: str  # incremental | full
    reason: str | None = None  # why full (or what was given up)
    segments: int = 1
    cache_mb: float = 0.0
    limit_mb: float = DEFAULT_CACHE_MB
    cuts_over_limit: int = 0  # boundaries dropped to stay under the limit
    cuts_not_identical: int = 0  # boundaries dropped because ORT fused across them
    rowwise: bool = False  # rows that match the clean run are skipped (see evaluate.py)


def build_incremental(
    model_bytes: bytes | bytearray,
    io: ModelIO,
    targets: list[Target],
    x: np.ndarray,
    full_session: Any,
    new_session: Callable[[bytes], Any],
    *,
    rows: int,
    limit_mb: float = DEFAULT_CACHE_MB,
) -> tuple[Incremental | None, EvaluationMode]:
    """The verified segments of a model (step 1-3 of the module docstring), or None and why.

    `rows` is how many rows the caches will hold in all (padding included); `full_session`
    is the whole model's session, the reference."""
    mode = EvaluationMode("full", limit_mb=limit_mb)
    proto = onnx.ModelProto.FromString(bytes(model_bytes))
    reason = unsupported(proto)
    if reason is not None:
        mode.reason = reason
        return None, mode
    info = GraphInfo(proto, io.input_name, io.output_name)
    names = [t.loc.name for t in targets if t.loc.graph == "main"]
    boundaries, consumers = propose(info, names)
    if len(boundaries) < 2:
        mode.reason = "no cut lies ahead of any target"
        return None, mode
    feeds = [feed for _, feed in batches(io, x[:CHECK_ROWS], CHECK_ROWS)]
    reference = full_session.run([io.output_name], {io.input_name: feeds[0]})[0]
    cut_names = sorted({n for b in boundaries[1:] for n in info.cut(b)} - {io.input_name})
    runs, kinds = probe(proto, cut_names, io.input_name, feeds[:1], new_session)
    per_row = row_bytes(runs, len(feeds[0]))
    kept, dropped = _within_limit(info, boundaries, per_row, rows, limit_mb * 2**20)
    mode.cuts_over_limit = dropped
    if not kept:
        mode.reason = f"the activation cache would exceed its limit of {limit_mb:g} MB"
        return None, mode
    _set_value_infos(proto, kinds)
    ranges = {t.loc.name: (t.loc.offset, t.loc.length) for t in targets if t.loc.graph == "main"}
    segments = SegmentedModel(proto, info, consumers, ranges, new_session)
    kept, rejected = _identical_cuts(segments, kept, runs[0], feeds[0], reference, proto)
    mode.cuts_not_identical = rejected
    if not kept:
        mode.reason = "ONNX Runtime fuses across every cut, so segments would not be identical"
        return None, mode
    mode.mode, mode.reason = "incremental", None
    mode.segments = len(segments.plan.segments) if segments.plan else 1
    return Incremental(segments, proto, io), mode


def _within_limit(
    info: GraphInfo, boundaries: tuple[int, ...], per_row: dict[str, float], rows: int, limit: float
) -> tuple[list[int], int]:
    """The latest boundaries whose cut tensors fit in `limit` bytes for `rows` rows."""
    kept: list[int] = []
    counted: set[str] = set()
    total = 0.0
    later = sorted(boundaries[1:], reverse=True)
    for k, b in enumerate(later):
        new = [n for n in info.cut(b) if n not in counted and n in per_row]
        extra = sum(per_row[n] for n in new) * rows
        if total + extra > limit:
            return sorted(kept), len(later) - k
        total += extra
        counted.update(new)
        kept.append(b)
    return sorted(kept), 0


def _identical_cuts(segments, kept, values, feed, reference, proto) -> tuple[list[int], int]:
    """Boundaries (latest first) from which the chain reproduces the reference bit for bit."""
    info = segments.info
    kept = list(kept)
    rejected = 0
    segments.use(tuple(kept))
    for b in sorted(kept, reverse=True):
        if _chain_matches(segments, b, values, feed, reference):
            continue
        own, _ = probe(proto, list(info.cut(b)), info.input_name, [feed], segments._new_session)
        if _chain_matches(segments, b, own[0], feed, reference):
            continue  # the shared probe was changed by an unusable earlier cut, not this one
        kept.remove(b)
        rejected += 1
        segments.use(tuple(kept))
    return kept, rejected


def _chain_matches(segments, boundary: int, values, feed, reference) -> bool:
    plan = segments.plan
    start = plan.boundaries.index(boundary)
    names = plan.cuts[start]
    env = {n: feed if n == segments.info.input_name else values[n] for n in names}
    try:
        env = segments.forward(start, env)
    except Exception:  # noqa: BLE001 - ORT refusing a segment makes this cut unusable
        return False
    return same(np.asarray(env[segments.info.output_name]), np.asarray(reference))


def _set_value_infos(proto: onnx.ModelProto, kinds: dict[str, tuple[str, list | None]]) -> None:
    """Value infos of the cut tensors as ONNX Runtime inferred them (type and shape), so each
    segment's inputs are declared as precisely as the whole model knows them."""
    outputs = {o.name for o in proto.graph.output}
    names = {n for n in kinds if n not in outputs}
    keep = [v for v in proto.graph.value_info if v.name not in names]
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(keep)
    proto.graph.value_info.extend(value_info(n, *kinds[n]) for n in sorted(names))
