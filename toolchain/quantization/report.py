"""What `quantize_model` measured (`QuantizeReport`) and the failure that carries it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import onnx

from qtool.errors import WorkFailed
from qtool.quantization.fallback import FallbackStep
from qtool.quantization.settings import QuantSettings
from qtool.quantization.tensor_errors import TensorError


@dataclass
class SplitAccuracy:
    """FP32 vs INT8 accuracy on one labelled split, and what the split was used for."""

    data: str  # spec and split, e.g. "digits:val"
    split: str
    role: str  # "budget" (the accuracy budget is judged here) or "reported" (never tuned on)
    samples: int
    fp32: float
    int8: float
    drop_pp: float
    top1_agreement: float


@dataclass
class QuantizeReport:
    """Everything `qtool quantize` measured; JSON-able with qtool.outputs.to_jsonable.

    Accuracy is given per split with its role: `validation` is where the accuracy budget is
    judged (and what the accuracy-aware loop tunes on), `test` is only reported.
    """

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
    validation: SplitAccuracy | None
    test: SplitAccuracy | None
    max_accuracy_drop_pp: float | None
    within_budget: bool | None
    fallback_step_size: int
    fallback_steps: list[FallbackStep]
    debug_samples: int
    tensor_errors: list[TensorError]
    notes: list[str] = field(default_factory=list)
    placement: dict = field(default_factory=dict)  # how Q/DQ placement was decided (Placement)
    # one row per (split, provider) the accuracy checks ran on; `validation`/`test` are the
    # first provider's, and the budget holds on the worst validation drop over them all
    providers: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    # The held-out (test) split's figures, for callers that want one number per model.
    @property
    def accuracy_before(self) -> float | None:
        return None if self.test is None else self.test.fp32

    @property
    def accuracy_after(self) -> float | None:
        return None if self.test is None else self.test.int8

    @property
    def accuracy_drop_pp(self) -> float | None:
        return None if self.test is None else self.test.drop_pp


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
