"""The model as a chain of segment models, each with an ONNX Runtime session built once.

A fault is a byte edit (the one storage `apply`) in the serialized segment models that read
the hit tensor; only those segments get a new session, built from their patched bytes, and
the chain runs from the earliest of them on cached activations (`cache.py`). Segments after
it reuse their clean sessions: a flip in the last layer builds a session for that layer
alone and runs only it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnx.utils

from qtool.errors import QtoolError
from qtool.faults.incremental.plan import CutPlan, GraphInfo, Segment, make_plan
from qtool.faults.storage.models import BitSite, StorageFault
from qtool.modelfile.locate import locate_initializers
from qtool.runtimes import make_session
from qtool.runtimes.providers import DEFAULT_PRECISION

# onnxruntime's type strings -> onnx data types (value infos of the cut tensors)
_ORT_TYPES = {
    "float": onnx.TensorProto.FLOAT, "uint8": onnx.TensorProto.UINT8,
    "int8": onnx.TensorProto.INT8, "uint16": onnx.TensorProto.UINT16,
    "int16": onnx.TensorProto.INT16, "int32": onnx.TensorProto.INT32,
    "int64": onnx.TensorProto.INT64, "bool": onnx.TensorProto.BOOL,
    "float16": onnx.TensorProto.FLOAT16, "double": onnx.TensorProto.DOUBLE,
    "uint32": onnx.TensorProto.UINT32, "uint64": onnx.TensorProto.UINT64,
    "bfloat16": onnx.TensorProto.BFLOAT16,
}  # fmt: skip


def value_info(name: str, ort_type: str, shape: list | None) -> onnx.ValueInfoProto:
    """A value info from what ONNX Runtime reports for a session output."""
    elem = _ORT_TYPES.get(ort_type.removeprefix("tensor(").removesuffix(")"))
    if elem is None:
        raise QtoolError(f"tensor {name!r} has type {ort_type}, which segments cannot carry")
    dims = None if shape is None else [d if isinstance(d, (int, str)) else None for d in shape]
    return onnx.helper.make_tensor_value_info(name, elem, dims)


@dataclass
class SegmentModel:
    """One segment: its serialized model, its clean session and where each target's data is."""

    segment: Segment
    buf: bytearray
    session: Any
    offsets: dict[str, int]  # target name -> offset of its stored data in `buf`


class SegmentedModel:
    """Segment models for a set of boundaries; builds each distinct segment once."""

    def __init__(
        self,
        proto: onnx.ModelProto,
        info: GraphInfo,
        consumers: dict[str, set[int]],
        targets: dict[str, tuple[int, int]],
        session: Callable[[bytes], Any],
    ):
        """`proto` carries value infos for every cut tensor; `targets` maps each target name
        to (offset, length) of its data in the whole model's bytes; `session` builds an ORT
        session from bytes with the whole model's settings."""
        self.info = info
        self.consumers = consumers
        self.targets = targets
        self._extractor = onnx.utils.Extractor(proto)
        self._new_session = session
        self._built: dict[tuple[int, ...], SegmentModel] = {}
        self._ranges = sorted((off, off + length, name) for name, (off, length) in targets.items())
        self.plan: CutPlan | None = None
        self.models: list[SegmentModel] = []

    def use(self, boundaries: tuple[int, ...]) -> CutPlan:
        """Cut at these boundaries (segments already built are reused)."""
        plan = make_plan(self.info, boundaries, self.consumers)
        self.plan = plan
        self.models = [self._segment(s) for s in plan.segments]
        self._last_read = {}
        for j, s in enumerate(plan.segments):
            for name in s.inputs:
                self._last_read[name] = j
        return plan

    def _segment(self, segment: Segment) -> SegmentModel:
        built = self._built.get(segment.nodes)
        if built is not None and built.segment == segment:
            return built
        proto = self._extractor.extract_model(list(segment.inputs), list(segment.outputs))
        buf = bytearray(proto.SerializeToString())
        offsets = {}
        for loc in locate_initializers(buf):
            whole = self.targets.get(loc.name)
            if whole is None or loc.graph != "main":
                continue
            if loc.length != whole[1] or not loc.flippable:
                raise QtoolError(f"tensor {loc.name!r} is stored differently in a segment")
            offsets[loc.name] = loc.offset
        model = SegmentModel(segment, buf, self._new_session(bytes(buf)), offsets)
        self._built[segment.nodes] = model
        return model

    # --- running ------------------------------------------------------------------------

    def forward(
        self,
        start: int,
        env: dict[str, np.ndarray],
        sessions: dict[int, Any] | None = None,
        keep: Container[str] = (),
    ) -> dict[str, np.ndarray]:
        """Run segments `start`... on `env` (holding the cut at `start`), in place; tensors
        no later segment reads are dropped as the chain goes, except those in `keep`."""
        sessions = sessions or {}
        output = self.info.output_name
        for j in range(start, len(self.models)):
            model = self.models[j]
            seg = model.segment
            feeds = {name: env[name] for name in seg.inputs}
            results = sessions.get(j, model.session).run(list(seg.outputs), feeds)
            env.update(zip(seg.outputs, results, strict=True))
            for name in seg.inputs:
                if self._last_read.get(name) == j and name != output and name not in keep:
                    env.pop(name, None)
        return env

    # --- faults ---------------------------------------------------------------------------

    def segment_sites(self, sites: list[BitSite]) -> dict[int, list[BitSite]]:
        """Whole-model bit sites -> the same bits in every segment that reads their tensor."""
        assert self.plan is not None
        out: dict[int, list[BitSite]] = {}
        starts = [r[0] for r in self._ranges]
        for site in sites:
            k = bisect.bisect_right(starts, site.offset) - 1
            if k < 0 or site.file is not None or site.offset >= self._ranges[k][1]:
                raise QtoolError(f"byte {site.offset} is not in a target of the segments")
            start, _, name = self._ranges[k]
            for j in self.plan.reads.get(name, ()):
                local = self.models[j].offsets[name] + site.offset - start
                out.setdefault(j, []).append(BitSite(None, local, site.bit))
        return out

    def patched_sessions(self, fault: StorageFault, sites: list[BitSite]) -> dict[int, Any]:
        """Sessions of the segments the faults touch, built from their patched bytes (the
        bytes are restored before returning, even when ONNX Runtime refuses them)."""
        sessions = {}
        for j, local in self.segment_sites(sites).items():
            buf = self.models[j].buf
            undo = fault.apply({None: buf}, local)
            try:
                sessions[j] = self._new_session(bytes(buf))
            finally:
                undo.restore()
        return sessions

    def commit(self, fault: StorageFault, sites: list[BitSite]) -> set[int]:
        """Make faults permanent in the segments (their sessions are rebuilt); returns the
        segments that changed."""
        touched = self.segment_sites(sites)
        for j, local in touched.items():
            model = self.models[j]
            fault.apply({None: model.buf}, local)
            model.session = self._new_session(bytes(model.buf))
        self._built = {m.segment.nodes: m for m in self.models}  # others hold old bytes
        return set(touched)


def session_factory(
    threads: int | None,
    opt_level: str,
    provider: str = "cpu",
    precision: str = DEFAULT_PRECISION,
) -> Callable[[bytes], Any]:
    """Sessions built as the whole model's: same execution provider, precision, threads and
    optimisation level, no spinning; no memory arena, so the segments (a few dozen sessions)
    do not each keep their largest working set once a run is over."""

    def build(data: bytes):
        return make_session(
            data,
            [provider],
            threads=threads,
            opt_level=opt_level,
            spinning=False,
            precision=precision,
            arena=False,
        )

    return build
