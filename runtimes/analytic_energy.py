"""Analytic energy per inference: operation counts by executed dtype x a published 45 nm table.

This is the method of energy claims in the quantisation literature (and of the seed's SASA
paper), not a measurement: count what one inference (batch 1) computes and moves, and price
each operation and byte with Horowitz's table of energy per operation at 45 nm. It is always
labelled "analytic" and never compared with a measured (RAPL) or estimated (CPU time) figure
as if alike: the table prices arithmetic units and memory accesses of a 2014 process, while a
CPU spends most of its energy on instruction handling, caches and data movement the count
does not see.

What is counted, on the graph ONNX Runtime's CPU provider runs after its optimisations
(qtool.runtimes.executed: the dtype of each node is read from ORT, not assumed):
- multiply-accumulates of Conv/Gemm/MatMul in every form (qtool.runtimes.opcount): in an
  integer kernel an 8-bit multiply and a 32-bit integer add (int8 kernels accumulate in 32
  bits), in float a 32-bit float multiply and add;
- element-wise arithmetic per output element (Add, Sub: an add; Mul, Div: a multiply; a
  BatchNormalization: one of each; Softmax: one of each, the exponential is not priced),
  and reductions and average pools (an add per input element), in the dtype they run in;
- Q/DQ conversions left in the graph: a float multiply and add per element;
- bytes moved: every weight read once (batch 1), every activation written once and read by
  each consumer; view ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity) move nothing,
  since ORT aliases their buffers.
Comparisons (Relu, MaxPool), transcendental functions and data movement within an op (Pad,
Slice, Concat, Gather) cost only the bytes they move.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from qtool.runtimes.executed import LEVEL_NAME, QDQ_OPS, ExecutedGraph, executed_graph, measure
from qtool.runtimes.opcount import base_op, node_macs

KIND = "analytic"
LABEL = "ANALYTIC (45 nm table, not measured)"

# Horowitz, ISSCC 2014, energy per operation at 45 nm, 0.9 V (pJ). Memory: per 64-bit access.
TABLE_SOURCE = (
    'M. Horowitz, "Computing\'s energy problem (and what we can do about it)", IEEE ISSCC '
    "2014, pp. 10-14, doi:10.1109/ISSCC.2014.6757323: energy per operation, 45 nm, 0.9 V"
)
HOROWITZ_45NM_PJ = {
    "8-bit int add": 0.03,
    "32-bit int add": 0.1,
    "8-bit int multiply": 0.2,
    "32-bit int multiply": 3.1,
    "16-bit float add": 0.4,
    "32-bit float add": 0.9,
    "16-bit float multiply": 1.1,
    "32-bit float multiply": 3.7,
    "64-bit cache access, 8 KB": 10.0,
    "64-bit cache access, 32 KB": 20.0,
    "64-bit cache access, 1 MB": 100.0,
    "64-bit DRAM access": 1300.0,  # the table gives 1.3-2.6 nJ: the low end is used
}
WEIGHT_MEMORY = "64-bit DRAM access"
ACTIVATION_MEMORY = "64-bit cache access, 1 MB"
MEMORY_CHOICE = (
    "weights: the DRAM figure at the low end of the table's 1.3-2.6 nJ per 64 bits "
    "(162.5 pJ/byte), because a served model's weights (MBs at 1-25 M parameters) do not stay "
    "in the table's 8 KB-1 MB caches between requests and every inference at batch 1 reads "
    "each weight once; activations: the 1 MB cache figure (12.5 pJ/byte), because a layer's "
    "activations at batch 1 (KBs to a few MB) are written and read back while they are on "
    "chip, and 1 MB is the table's largest cache"
)
ELEMENTWISE = {  # base op -> (adds, multiplies) per output element
    "Add": (1, 0),
    "Sub": (1, 0),
    "Mul": (0, 1),
    "Div": (0, 1),
    "BatchNormalization": (1, 1),
    "Softmax": (1, 1),
}
REDUCING = ("ReduceSum", "ReduceMean", "AveragePool", "GlobalAveragePool")  # an add per input
VIEW_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")
PRECISION = {"int8": "8-bit int", "fp16": "16-bit float", "fp32": "32-bit float"}
ACCUMULATOR = {"int8": "32-bit int", "fp16": "16-bit float", "fp32": "32-bit float"}


@dataclass
class EnergyTerm:
    """One line of the bill: how many operations (or bytes) at how many pJ each."""

    what: str
    count: int
    unit: str  # "operations" or "bytes"
    pj_each: float
    pj: float
    priced_as: str  # the table entry


@dataclass
class AnalyticEnergy:
    """Energy of one inference at batch 1 by operation counts x Horowitz's 45 nm table."""

    model: str
    pj_per_inference: float
    terms: list[EnergyTerm]  # per call: `batch` inferences (1 unless the model fixes it)
    int8_macs: int
    fp32_macs: int
    weight_bytes: int
    activation_bytes: int
    conversion_elements: int  # elements through Q/DQ left in the graph
    batch: int = 1  # samples per call the counts are for (a static-batch model's own batch)
    kind: str = KIND
    label: str = LABEL
    source: str = TABLE_SOURCE
    table_pj: dict[str, float] = field(default_factory=lambda: dict(HOROWITZ_45NM_PJ))
    memory_choice: str = MEMORY_CHOICE
    graph: str = f"the graph ONNX Runtime's CPU provider runs, optimised at level {LEVEL_NAME}"

    @property
    def mj_per_inference(self) -> float:
        return self.pj_per_inference * 1e-9

    def to_dict(self) -> dict:
        out = asdict(self)
        out["mj_per_inference"] = self.mj_per_inference
        return out


def analytic_energy(
    model: str | Path | onnx.ModelProto, providers: list[str] | None = None
) -> AnalyticEnergy:
    """Per-inference (batch 1) energy of `model` by the paper's analytic method.

    The model runs once on zeros at batch 1 (or its own static batch, the figure then divided
    by it) to read every tensor's shape and dtype; inputs must have fixed sizes apart from
    the batch (QtoolError otherwise).
    """
    name = "model" if isinstance(model, onnx.ModelProto) else str(model)
    source = Path(model) if isinstance(model, str) else model
    graph = measure(executed_graph(source, providers), providers)
    counts = count_operations(graph)
    terms = _price(counts)
    batch = graph.batch
    return AnalyticEnergy(
        model=name,
        pj_per_inference=sum(t.pj for t in terms) / batch,
        terms=terms,
        int8_macs=counts.macs["int8"],
        fp32_macs=counts.macs["fp32"],
        weight_bytes=counts.weight_bytes,
        activation_bytes=counts.activation_bytes,
        conversion_elements=counts.conversions,
        batch=batch,
    )


@dataclass
class Counts:
    """What one inference computes and moves, by the precision it runs in."""

    macs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PRECISION, 0))
    adds: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PRECISION, 0))
    mults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PRECISION, 0))
    conversions: int = 0
    weight_bytes: int = 0
    activation_bytes: int = 0


def count_operations(graph: ExecutedGraph) -> Counts:
    """Operation and byte counts of a measured executed graph (shapes known)."""
    counts = Counts()
    inits = graph.initializers
    used = set()
    for node in graph.nodes:
        precision = _precision(graph, node)
        out_elems = _elements(graph, node.output[0]) if node.output else 0
        op = base_op(node.op_type)
        if node.op_type in QDQ_OPS:
            counts.conversions += out_elems
        elif (macs := node_macs(node, graph.shapes)) > 0:
            counts.macs[precision] += macs
        elif op in ELEMENTWISE:
            adds, mults = ELEMENTWISE[op]
            counts.adds[precision] += adds * out_elems
            counts.mults[precision] += mults * out_elems
        elif op in REDUCING:
            counts.adds[precision] += _elements(graph, node.input[0])
        used.update(i for i in node.input if i in inits)
        if op not in VIEW_OPS:
            counts.activation_bytes += _moved(graph, node, inits)
    counts.weight_bytes = sum(_tensor_bytes(inits[name]) for name in used)
    return counts


def _precision(graph: ExecutedGraph, node: onnx.NodeProto) -> str:
    if graph.runs_in_int8(node):
        return "int8"
    types = {graph.types.get(i) for i in node.input if i}
    return "fp16" if "tensor(float16)" in types else "fp32"


def _elements(graph: ExecutedGraph, tensor: str) -> int:
    shape = graph.shapes.get(tensor)
    return int(np.prod(shape, dtype=np.int64)) if shape is not None else 0


def _moved(graph: ExecutedGraph, node: onnx.NodeProto, inits: dict) -> int:
    """Activation bytes a node reads (non-constant inputs) and writes (outputs)."""
    names = [i for i in node.input if i and i not in inits] + [o for o in node.output if o]
    return sum(_elements(graph, n) * _itemsize(graph.types.get(n)) for n in names)


def _itemsize(ort_type: str | None) -> int:
    name = (ort_type or "tensor(float)").removeprefix("tensor(").removesuffix(")")
    sizes = {"int8": 1, "uint8": 1, "bool": 1, "float16": 2, "int16": 2, "int64": 8, "double": 8}
    return sizes.get(name, 4)


def _tensor_bytes(t: onnx.TensorProto) -> int:
    return int(np.prod(t.dims, dtype=np.int64)) * _itemsize(
        f"tensor({onnx.TensorProto.DataType.Name(t.data_type).lower()})"
    )


def _price(c: Counts) -> list[EnergyTerm]:
    """The bill: each count times its table entry; terms with a zero count are left out."""
    terms = []
    for p, label in PRECISION.items():
        acc = ACCUMULATOR[p]
        terms += [
            _term(f"{p} multiply-accumulate: multiplies", c.macs[p], f"{label} multiply"),
            _term(f"{p} multiply-accumulate: adds", c.macs[p], f"{acc} add"),
            _term(f"{p} element-wise multiplies", c.mults[p], f"{label} multiply"),
            _term(f"{p} element-wise adds", c.adds[p], f"{label} add"),
        ]
    terms += [
        _term("Q/DQ conversions: multiplies", c.conversions, "32-bit float multiply"),
        _term("Q/DQ conversions: adds", c.conversions, "32-bit float add"),
    ]
    per_byte = {k: HOROWITZ_45NM_PJ[k] / 8 for k in (WEIGHT_MEMORY, ACTIVATION_MEMORY)}
    terms += [
        _term("weights read", c.weight_bytes, WEIGHT_MEMORY, per_byte[WEIGHT_MEMORY], "bytes"),
        _term(
            "activations written and read",
            c.activation_bytes,
            ACTIVATION_MEMORY,
            per_byte[ACTIVATION_MEMORY],
            "bytes",
        ),
    ]
    return [t for t in terms if t.count]


def _term(
    what: str, count: int, entry: str, pj_each: float | None = None, unit: str = "operations"
) -> EnergyTerm:
    each = HOROWITZ_45NM_PJ[entry] if pj_each is None else pj_each
    priced = entry if pj_each is None else f"{entry} / 8 bytes"
    return EnergyTerm(what, int(count), unit, each, count * each, priced)
