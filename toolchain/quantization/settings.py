"""What the caller asks for (`QuantizeOptions`) and what shaped the INT8 model (`QuantSettings`).

`reduce_range` defaults to what ONNX Runtime advises for this CPU, read from its flags.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

import onnxruntime as ort

from qtool.errors import QtoolError
from qtool.machine import cpu_flags

METHODS = ("minmax", "entropy", "percentile", "distribution")
FORMATS = ("qdq", "qoperator")
INT8_TYPES = ("uint8", "int8")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "amx_tile")
X86_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")
PLACEMENTS = ("int8-kernels", "ort")  # qtool.quantization.placement implements them
DEFAULT_ACTIVATION_MEMORY_MB = 1024


@dataclass
class QuantizeOptions:
    """How to quantise, calibrate and judge one model; defaults are qtool quantize's.

    Field names are the parameter names errors point at (`QtoolError.param`).
    """

    samples: int = 256  # calibration samples: a seeded subsample of the calib split
    method: str = "minmax"  # calibration method, one of METHODS
    fmt: str = "qdq"  # one of FORMATS
    per_channel: bool = True
    activation_type: str = "uint8"
    weight_type: str = "int8"
    reduce_range: bool | None = None  # None: chosen from the CPU (default_reduce_range)
    exclude_nodes: list[str] = field(default_factory=list)  # node names kept in FP32
    exclude_op_types: list[str] = field(default_factory=list)  # op types not quantised
    input_name: str | None = None  # None: the first float input
    # labelled data the accuracy budget is judged on; None: the calib spec's val split, else
    # the val split of the data set named in the model's metadata
    val_data: str | None = None
    # labelled data accuracy is only reported on (never used to choose anything); None: the
    # calib spec's test split, else the model's data set's
    test_data: str | None = None
    max_accuracy_drop: float | None = None  # budget in percentage points, judged on val_data
    fallback_step: int = 2  # worst tensors whose nodes go back to FP32 per step
    max_steps: int | None = None  # None: until the budget is met or nothing is left
    keep_best: bool = False  # write the best attempt even if the budget is not met
    debug_samples: int = 32  # samples for the per-tensor FP32-vs-INT8 error
    placement: str = "int8-kernels"  # one of PLACEMENTS: Q/DQ only where ORT runs INT8, or "ort"
    # activations (MiB) calibration and the error analysis may hold at a time: batches shrink
    # to fit (down to one sample)
    activation_memory_mb: int = DEFAULT_ACTIVATION_MEMORY_MB
    seed: int = 0
    providers: list[str] | None = None  # providers the accuracy checks run on (default cpu)
    precision: str = "fp32"  # fp32: reduced precision forbidden on them; auto: their choice

    def validate(self) -> None:
        """Reject values no quantisation could use (bad input, exit 2)."""
        _check_choice("method", self.method, METHODS)
        _check_choice("fmt", self.fmt, FORMATS)
        _check_choice("activation_type", self.activation_type, INT8_TYPES)
        _check_choice("weight_type", self.weight_type, INT8_TYPES)
        _check_choice("placement", self.placement, PLACEMENTS)
        for name in ("samples", "debug_samples", "fallback_step", "activation_memory_mb"):
            if getattr(self, name) < 1:
                raise QtoolError(f"must be at least 1, got {getattr(self, name)}", param=name)
        if self.max_steps is not None and self.max_steps < 0:
            raise QtoolError(f"must be 0 or more, got {self.max_steps}", param="max_steps")
        from qtool.runtimes.providers import compared_specs

        for spec in compared_specs(self.providers, param="providers"):
            spec.check_precision(self.precision)
        if self.max_accuracy_drop is not None and self.max_accuracy_drop < 0:
            raise QtoolError(
                "the accuracy budget is in percentage points and must be >= 0",
                param="max_accuracy_drop",
            )


def _check_choice(param: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise QtoolError(f"{value!r} is not one of: {', '.join(choices)}", param=param)


@dataclass
class QuantSettings:
    """Every setting that shaped the INT8 model; stored as the `qtool.quantization` metadata."""

    method: str
    format: str
    per_channel: bool
    activation_type: str
    weight_type: str
    reduce_range: bool
    reduce_range_reason: str
    exclude_nodes: list[str]  # asked for by the user
    exclude_op_types: list[str]
    fp32_nodes: list[str]  # kept in FP32 by the accuracy-aware loop
    calibration: str  # data spec
    calibration_split: str
    samples: int  # calibration samples actually used
    seed: int
    preprocessed: bool
    calibration_batch: int = 0  # samples per calibration run (from activation_memory_mb)
    placement: dict = field(default_factory=dict)  # mode and nodes kept out (Placement.record)
    onnxruntime_version: str = ort.__version__


def default_reduce_range(
    machine: str | None = None, flags: set[str] | None = None
) -> tuple[bool, str]:
    """reduce_range as ONNX Runtime advises it for this CPU, with the reason in words.

    On x86 without VNNI the u8 x s8 multiply-add (vpmaddubsw) can saturate its 16-bit
    intermediate sums, so ORT advises 7-bit weights there; VNNI/AMX accumulate in 32 bits
    and other architectures do not use that path, so full range is kept.
    """
    machine = (machine or platform.machine()).lower()
    if machine not in X86_MACHINES:
        return False, f"auto: {machine} is not x86, no u8s8 saturation risk"
    flags = cpu_flags() if flags is None else flags
    found = sorted(f for f in VNNI_FLAGS if f in flags)
    if found:
        return False, f"auto: x86 with {'/'.join(found)} (no u8s8 saturation)"
    if not flags:
        return True, "auto: x86, CPU flags unreadable, assuming no VNNI (avoids u8s8 saturation)"
    return True, "auto: x86 without VNNI (avoids u8s8 saturation)"


def resolve_reduce_range(choice: bool | None) -> tuple[bool, str]:
    """The user's choice when given, else the CPU's default; with the reason in words."""
    if choice is None:
        return default_reduce_range()
    return choice, "set by the user"
