"""Where Q/DQ pairs go: only around nodes ONNX Runtime runs in INT8, read from the graph it runs.

ORT's QDQ quantiser wraps every op it can in DequantizeLinear -> op -> QuantizeLinear. Whether
that op then runs in INT8 is decided later, by ORT's graph optimiser for the execution
provider: it fuses the group into an integer kernel (QLinearConv, QGemm, QLinearConcat...),
drops the pair around data movement so it runs on 8-bit values, or leaves the op computing in
float between a dequantise and a quantise, where the pair is pure overhead (file bytes, two
passes over the tensor, rounding noise). No list of op names says which: qtool quantises,
lets ORT optimise the result for the CPU (qtool.runtimes.executed), and reads off what each
wrapped node became. Then, in rounds:

- a node ORT runs in float is kept out of quantisation, unless its output feeds 8-bit data
  movement (excluding it would move the quantiser's boundary past a fan-out, one Q per
  consumer instead of one: measured on SASA's Pad -> Slice x 9);
- data movement on 8-bit values that touches no integer kernel (a Reshape between two float
  ops) is kept out too: its pair only converts there and back;
- an element-wise integer kernel (QLinearMul, QLinearAdd...: one operation per element, no
  multiply-accumulate to save) whose result is only dequantised for float consumers is kept
  out: it converts its inputs to 8 bits and its output back to do what float does in one
  pass (SASA's attention products, Mul -> ReduceSum: INT8 2.7x slower than FP32 with them);
- the re-quantised model is kept only if ORT's optimised graph has no more Q/DQ conversions
  left on activations and the file is no larger; otherwise the previous round stands.

`mode="ort"` keeps ORT's full placement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from qtool.errors import QtoolError
from qtool.runtimes.executed import ExecutedGraph, executed_graph

MAX_ROUNDS = 3
# ORT's integer kernels that compute one value per element (no multiply-accumulate): a
# property of the kernels, read off each node ORT's optimiser produced
ELEMENTWISE_KERNELS = frozenset(
    {"QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax"}
)
KERNEL, MOVEMENT, FLOAT, FUSED = "int8 kernel", "int8 data movement", "float", "fused away"


@dataclass
class PlacementRound:
    excluded: list[str]  # nodes this round kept out of quantisation
    conversions: int  # Q/DQ left on activations in ORT's optimised graph
    file_bytes: int
    accepted: bool


@dataclass
class Placement:
    """How Q/DQ placement was decided; recorded in the model's metadata and the report."""

    mode: str
    excluded: list[str] = field(default_factory=list)  # kept FP32: ORT would run them in float
    kinds: dict[str, int] = field(default_factory=dict)  # wrapped nodes by how ORT runs them
    float_kept: list[str] = field(default_factory=list)  # float, left wrapped (feed 8-bit moves)
    rounds: list[PlacementRound] = field(default_factory=list)
    note: str = ""  # why ORT's placement was kept, when the graph could not be read

    def record(self) -> dict:
        """What the model's metadata keeps: the mode and the nodes kept out (the rest is in
        the report; a 1 k-parameter model's file should not grow by its own history)."""
        out: dict = {"mode": self.mode, "excluded": list(self.excluded)}
        if self.note:
            out["note"] = self.note
        return out


Quantize = Callable[[list[str], Path], None]


def place(
    quantize: Quantize,
    exclude: list[str],
    op_types: list[str],
    tmp: Path,
    mode: str = "int8-kernels",
) -> tuple[Path, Placement]:
    """Quantise with `quantize(exclude, out)`, then (mode int8-kernels) re-quantise with the
    nodes ORT's CPU provider would run in float kept out, round by round while that helps.
    Returns the chosen model file and how it was chosen."""
    path = tmp / "placement_0.onnx"
    quantize(list(exclude), path)
    placement = Placement(mode)
    if mode == "ort":
        return path, placement
    try:
        graph = executed_graph(path)
    except QtoolError as exc:  # the quantised model is still ORT's own: keep its placement
        placement.note = f"ORT's placement kept: its optimised graph could not be read ({exc})"
        return path, placement
    placement.rounds.append(PlacementRound([], graph.conversions(), _size(path), True))
    kept, rounds = list(exclude), 0
    while True:
        model = onnx.load(str(path), load_external_data=False)
        kinds = classify(model, graph, set(op_types), set(kept))
        placement.kinds = _histogram(kinds)
        candidates, placement.float_kept = _candidates(graph, kinds)
        if not candidates or rounds == MAX_ROUNDS:
            break
        rounds += 1
        trial = tmp / f"placement_{rounds}.onnx"
        quantize(kept + candidates, trial)
        try:
            trial_graph = executed_graph(trial)
        except QtoolError:  # ORT cannot run that placement: the previous one stands
            break
        last = placement.rounds[-1]
        conversions, size = trial_graph.conversions(), _size(trial)
        better = conversions <= last.conversions and size <= last.file_bytes
        placement.rounds.append(PlacementRound(candidates, conversions, size, better))
        if not better:
            break
        kept += candidates
        placement.excluded += candidates
        path, graph = trial, trial_graph
    return path, placement


def classify(
    model: onnx.ModelProto, graph: ExecutedGraph, op_types: set[str], skip: set[str]
) -> dict[str, str]:
    """How ORT runs each node the quantiser wrapped in Q/DQ: as an integer kernel, as data
    movement on 8-bit values, in float, or fused away into a neighbour (absent by name)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers = _consumers(model.graph)
    run = {n.name: n for n in graph.nodes}
    kinds = {}
    for node in model.graph.node:
        if node.op_type not in op_types or node.name in skip:
            continue
        from_dq = any(_op(producer.get(i)) == "DequantizeLinear" for i in node.input)
        to_q = any(_op(c) == "QuantizeLinear" for o in node.output for c in consumers.get(o, []))
        if not (from_dq or to_q):
            continue
        ran = run.get(node.name)
        if ran is None:
            kinds[node.name] = FUSED
        elif not graph.runs_in_int8(ran):
            kinds[node.name] = FLOAT
        elif (ran.op_type, ran.domain) != (node.op_type, node.domain):
            kinds[node.name] = KERNEL
        else:
            kinds[node.name] = MOVEMENT
    return kinds


def _candidates(graph: ExecutedGraph, kinds: dict[str, str]) -> tuple[list[str], list[str]]:
    """Nodes to keep out of quantisation next, and float nodes left wrapped (and why not)."""
    run_consumers = _consumers(graph.model.graph)
    run = {n.name: n for n in graph.nodes}
    out, float_kept = [], []
    for name, kind in kinds.items():
        if kind != FLOAT:
            continue
        if _feeds_movement(run[name], run_consumers, kinds):
            float_kept.append(name)
        else:
            out.append(name)
    out += _isolated_movement(graph, kinds)
    out += _bracketed_elementwise(run, kinds, run_consumers)
    return sorted(out), sorted(float_kept)


def _bracketed_elementwise(
    run: dict[str, onnx.NodeProto], kinds: dict[str, str], consumers: dict
) -> list[str]:
    """Element-wise integer kernels (`run`: the executed nodes by name) whose every consumer
    is a DequantizeLinear (or none): their 8-bit result goes straight back to float."""
    out = []
    for name, kind in kinds.items():
        node = run.get(name)
        if kind != KERNEL or node is None or node.op_type not in ELEMENTWISE_KERNELS:
            continue
        readers = [c for o in node.output for c in consumers.get(o, [])]
        if all(c.op_type == "DequantizeLinear" for c in readers):
            out.append(name)
    return out


def _feeds_movement(node: onnx.NodeProto, consumers: dict, kinds: dict[str, str]) -> bool:
    """Whether `node`'s output reaches 8-bit data movement through its QuantizeLinear."""
    for out in node.output:
        for q in consumers.get(out, []):
            if q.op_type != "QuantizeLinear":
                continue
            if any(kinds.get(c.name) == MOVEMENT for c in consumers.get(q.output[0], [])):
                return True
    return False


def _isolated_movement(graph: ExecutedGraph, kinds: dict[str, str]) -> list[str]:
    """8-bit data movement in regions (nodes linked by 8-bit tensors) with no integer kernel:
    it converts to 8 bits and back for nothing."""
    int8_nodes = [n for n in graph.nodes if graph.runs_in_int8(n)]
    parent = {n.name: n.name for n in int8_nodes}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    producer = {o: n for n in int8_nodes for o in n.output}
    for node in int8_nodes:
        for i in node.input:
            if i in producer:
                parent[root(node.name)] = root(producer[i].name)
    # a node the quantised graph does not have by name is one ORT made: count it as a kernel
    with_kernel = {root(n.name) for n in int8_nodes if kinds.get(n.name, KERNEL) == KERNEL}
    return [
        n.name
        for n in int8_nodes
        if kinds.get(n.name) == MOVEMENT and root(n.name) not in with_kernel
    ]


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for i in node.input:
            out.setdefault(i, []).append(node)
    return out


def _op(node: onnx.NodeProto | None) -> str | None:
    return None if node is None else node.op_type


def _histogram(kinds: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind in kinds.values():
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def _size(path: Path) -> int:
    return path.stat().st_size
