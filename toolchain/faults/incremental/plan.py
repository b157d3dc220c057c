"""Where a model can be cut so that a fault re-runs only the layers after it: graph analysis
on the ONNX proto, no ONNX Runtime.

The nodes that lead to the score output are taken in graph order, leaving out *floating*
nodes: constant ones (computing only from initializers, e.g. the DequantizeLinear of an
int8 weight) and those ONNX Runtime fuses into their consumer (the DequantizeLinear of an
activation). A segment model carries the floating nodes it reads, so ONNX Runtime folds and
fuses them with their consumers exactly as in the whole model; in an INT8 QDQ model a cut
therefore holds quantised tensors, and DQ -> Conv -> Q still becomes one QLinearConv on
both sides of it. A *boundary* is a position in that order, one in front of the first
consumer of each target tensor; the tensors produced before it and read after it are its
*cut*. Other fusions across a boundary are caught by checking every segment against the
whole model (`build.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

# Ops ONNX Runtime fuses into their consumers: computed in each segment that reads them.
FUSED_INTO_CONSUMER = frozenset({"DequantizeLinear"})
# Ops ONNX Runtime fuses into their producer (DQ -> Conv -> Q is one QLinearConv): ordered
# right after the producer, so no boundary separates them.
FUSED_INTO_PRODUCER = frozenset({"QuantizeLinear"})
# Ops whose output differs from run to run: a cached activation would be wrong.
RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
     "Bernoulli"}
)  # fmt: skip


_SUBGRAPH = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


@dataclass(frozen=True)
class Segment:
    """Consecutive nodes of the cut graph, run as one model."""

    nodes: tuple[int, ...]  # indices into graph.node, non-constant, in graph order
    inputs: tuple[str, ...]  # tensors it reads that earlier segments (or the input) produce
    outputs: tuple[str, ...]  # tensors it produces that later segments or the scores need


@dataclass(frozen=True)
class CutPlan:
    """The model cut at `boundaries` (positions in `order`; the first is 0)."""

    order: tuple[int, ...]
    boundaries: tuple[int, ...]
    segments: tuple[Segment, ...]
    cuts: tuple[tuple[str, ...], ...]  # per boundary: the tensors crossing it
    reads: dict[str, tuple[int, ...]]  # target name -> segments whose nodes read it


class GraphInfo:
    """What the cut planning needs to know about a graph, computed once."""

    def __init__(self, model: onnx.ModelProto, input_name: str, output_name: str):
        graph = model.graph
        self.graph = graph
        self.input_name = input_name
        self.output_name = output_name
        self.producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
        self.readers: dict[str, list[int]] = {}
        for i, node in enumerate(graph.node):
            for name in dict.fromkeys(n for n in node.input if n):
                self.readers.setdefault(name, []).append(i)
        constant = {t.name for t in graph.initializer}
        floating: set[int] = set()
        for i, node in enumerate(graph.node):
            ins = [n for n in node.input if n]
            if node.op_type not in RANDOM_OPS and all(n in constant for n in ins):
                floating.add(i)
                constant.update(o for o in node.output if o)
            elif node.op_type in FUSED_INTO_CONSUMER and output_name not in node.output:
                floating.add(i)
        self.constant = constant
        self.floating = floating
        needed: set[int] = set()
        stack = [output_name]
        while stack:
            name = stack.pop()
            i = self.producer.get(name)
            if i is None or i in needed or name == input_name:
                continue
            needed.add(i)
            stack += [n for n in graph.node[i].input if n]
        self.needed = needed
        self.order = self._glued(tuple(i for i in range(len(graph.node)) if i in needed - floating))
        self.position = {node: p for p, node in enumerate(self.order)}

    def _glued(self, order: tuple[int, ...]) -> tuple[int, ...]:
        """`order` with each FUSED_INTO_PRODUCER node moved right after its producer."""
        followers: dict[int, list[int]] = {}
        for i in order:
            node = self.graph.node[i]
            if node.op_type not in FUSED_INTO_PRODUCER:
                continue
            sources = [self.producer.get(n) for n in node.input if n and n not in self.constant]
            if len(sources) == 1 and sources[0] in order:
                followers.setdefault(sources[0], []).append(i)
        moved = {i for group in followers.values() for i in group}
        out: list[int] = []
        for i in order:
            if i not in moved:
                out.append(i)
                out.extend(followers.get(i, ()))
        return tuple(out)

    def sources(self, name: str) -> list[str]:
        """The non-constant tensors a node input comes from, through floating nodes."""
        if name in self.constant or not name:
            return []
        i = self.producer.get(name)
        if i is None or i not in self.floating:
            return [name]
        return [s for n in self.graph.node[i].input for s in self.sources(n)]

    def reads(self, node: int) -> list[str]:
        """The non-constant tensors a node reads, through floating nodes."""
        return list(dict.fromkeys(s for n in self.graph.node[node].input for s in self.sources(n)))

    def consumers(self, name: str) -> set[int]:
        """Needed non-floating nodes reading `name`, directly or through floating nodes."""
        found: set[int] = set()
        names, seen = [name], {name}
        while names:
            for i in self.readers.get(names.pop(), ()):
                if i not in self.needed:
                    continue
                if i not in self.floating:
                    found.add(i)
                    continue
                for out in self.graph.node[i].output:
                    if out and out not in seen:
                        seen.add(out)
                        names.append(out)
        return found

    def cut(self, boundary: int) -> tuple[str, ...]:
        """Tensors produced before position `boundary` (or fed) and read at or after it."""
        made = {self.input_name}
        for i in self.order[:boundary]:
            made.update(o for o in self.graph.node[i].output if o)
        out = dict.fromkeys(n for i in self.order[boundary:] for n in self.reads(i) if n in made)
        if self.output_name in made:
            out[self.output_name] = None
        return tuple(out)


def unsupported(model: onnx.ModelProto) -> str | None:
    """Why the model cannot be evaluated in segments, or None."""
    for node in model.graph.node:
        if any(a.type in _SUBGRAPH for a in node.attribute):
            return f"{node.op_type} node {node.name!r} has subgraphs"
        if node.op_type in RANDOM_OPS:
            return f"{node.op_type} node {node.name!r} is random"
    if model.graph.sparse_initializer:
        return "the model has sparse initializers"
    return None


def propose(info: GraphInfo, targets: list[str]) -> tuple[tuple[int, ...], dict[str, set[int]]]:
    """Boundaries in front of each target's first consumer, and each target's consumers."""
    consumers = {name: info.consumers(name) for name in targets}
    boundaries = {0} | {
        min(info.position[i] for i in nodes) for nodes in consumers.values() if nodes
    }
    return tuple(sorted(boundaries)), consumers


def make_plan(
    info: GraphInfo, boundaries: tuple[int, ...], consumers: dict[str, set[int]]
) -> CutPlan:
    """Segments between the boundaries, their inputs and outputs, and who reads each target."""
    bounds = tuple(sorted(set(boundaries) | {0}))
    ends = (*bounds[1:], len(info.order))
    segment_of: dict[int, int] = {}
    for j, (start, stop) in enumerate(zip(bounds, ends, strict=True)):
        for i in info.order[start:stop]:
            segment_of[i] = j
    cuts = tuple(info.cut(b) for b in bounds)
    segments = []
    for j, (start, stop) in enumerate(zip(bounds, ends, strict=True)):
        nodes = info.order[start:stop]
        made = {o for i in nodes for o in info.graph.node[i].output if o}
        inputs = dict.fromkeys(n for i in nodes for n in info.reads(i) if n not in made)
        later = set(cuts[j + 1]) if j + 1 < len(cuts) else {info.output_name}
        made_in_order = dict.fromkeys(o for i in nodes for o in info.graph.node[i].output)
        outputs = tuple(n for n in made_in_order if n in later)
        segments.append(Segment(tuple(nodes), tuple(inputs), outputs))
    reads = {
        name: tuple(sorted({segment_of[i] for i in nodes if i in segment_of}))
        for name, nodes in consumers.items()
    }
    return CutPlan(info.order, bounds, tuple(segments), cuts, reads)
