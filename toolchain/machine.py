"""The machine a figure was measured on: CPU model and the instruction-set flags that decide
which ONNX Runtime kernels run (a report or benchmark line states them beside every figure,
since the CPU can change between runs)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# flags that change which integer and float kernels ONNX Runtime and OpenVINO pick
NOTABLE_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


def cpu_info() -> dict:
    """Machine, processor, model name and every flag /proc/cpuinfo lists (Linux)."""
    info = {"machine": platform.machine(), "processor": platform.processor(), "flags": []}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and "model" not in info:
                info["model"] = line.split(":", 1)[1].strip()
            if line.startswith(("flags", "Features")):
                info["flags"] = sorted(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return info


def cpu_line() -> str:
    """One line for a benchmark's output: model, logical CPUs and the notable flags."""
    info = cpu_info()
    model = info.get("model") or info["processor"] or info["machine"] or "unknown CPU"
    shown = [f for f in NOTABLE_FLAGS if f in info["flags"]]
    return f"{model}; {os.cpu_count()} logical CPUs; flags: {', '.join(shown) or 'none of note'}"
