"""What `quantize_model` measured (`QuantizeReport`) and the failure that carries it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import onnx

from qtool.errors import WorkFailed
from qtool.quantization.fallback import FallbackStep
from qtool.quantization.settings import QuantSettings
from qtool.quantization.tensor_errors import TensorError


@dataclass
class QuantizeReport:
    """Everything `qtool quantize` measured; JSON-able with qtool.outputs.to_jsonable."""

    source: str
    output: str | None
    written: bool
    settings: QuantSettings
    source_sha256: str
    size_before: int
    size_after: int
    size_ratio: float
    initializer_bytes_before: int  # tensors only: the file minus graph structure and metadata
    initializer_bytes_after: int
    eval_data: str | None
    eval_samples: int
    accuracy_before: float | None
    accuracy_after: float | None
    accuracy_drop_pp: float | None
    top1_agreement: float | None
    max_accuracy_drop_pp: float | None
    within_budget: bool | None
    fallback_step_size: int
    fallback_steps: list[FallbackStep]
    debug_samples: int
    tensor_errors: list[TensorError]
    notes: list[str] = field(default_factory=list)
    # accuracy before/after on every provider the checks ran on; accuracy_before/after and
    # top1_agreement are the first provider's, accuracy_drop_pp the worst over them all
    providers: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class BudgetNotMet(WorkFailed):
    """The accuracy budget could not be met (exit 1); `.report` says how close it came."""

    def __init__(self, message: str, report: QuantizeReport):
        super().__init__(message)
        self.report = report
        self.param = "max_accuracy_drop"


def initializer_bytes(model: onnx.ModelProto) -> int:
    """Serialized bytes of initializers and Constant-node tensors (what quantisation shrinks)."""
    total = sum(t.ByteSize() for t in model.graph.initializer)
    for node in model.graph.node:
        if node.op_type == "Constant":
            total += sum(a.t.ByteSize() for a in node.attribute if a.HasField("t"))
    return max(int(total), 1)
