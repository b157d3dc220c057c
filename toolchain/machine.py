"""The machine a figure was measured on: CPU model and the instruction-set flags that decide
which ONNX Runtime kernels run (a report or benchmark line states them beside every figure,
since the CPU can change between runs)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# flags that change which integer and float kernels ONNX Runtime and OpenVINO pick
NOTABLE_FLAGS = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
    "amx_tile", "amx_int8", "amx_bf16",
)  # fmt: skip
CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo() -> str:
    try:
        return CPUINFO.read_text()
    except OSError:  # not Linux, or hidden: no model name and no flags
        return ""


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags (x86 `flags`, Arm `Features`) of /proc/cpuinfo or of the text
    given; empty when it cannot be read."""
    flags: set[str] = set()
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def cpu_info() -> dict:
    """Machine, processor, model name and every flag /proc/cpuinfo lists (Linux)."""
    text = _cpuinfo()
    info: dict = {"machine": platform.machine(), "processor": platform.processor()}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name":
            info["model"] = value.strip()
            break
    info["flags"] = sorted(cpu_flags(text))
    return info


def cpu_line() -> str:
    """One line for a benchmark's output: model, logical CPUs and the notable flags."""
    info = cpu_info()
    model = info.get("model") or info["processor"] or info["machine"] or "unknown CPU"
    shown = [f for f in NOTABLE_FLAGS if f in info["flags"]]
    return f"{model}; {os.cpu_count()} logical CPUs; flags: {', '.join(shown) or 'none of note'}"
