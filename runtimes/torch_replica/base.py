"""What every op family of the replica shares: the lazily imported torch, the error that
sends the caller to a gradient-free fallback, and small value helpers."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from qtool.errors import QtoolError


class UnsupportedGraph(QtoolError):
    """The graph uses an op (or attribute) the replica cannot reproduce; fall back."""


def torch_module():
    """torch, imported on first use (qtool runs without it)."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise UnsupportedGraph(
            "the torch replica needs PyTorch: pip install 'qtool[torch]'"
        ) from exc
    return torch


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class ReplicaOps:
    """Base of the op families: each `_op_<OpType>(node, inputs, attributes)` method computes
    one ONNX op with torch; the replica dispatches on the op type's name."""

    torch: Any
    opset: int

    def _from_numpy(self, array: np.ndarray):
        torch = self.torch
        if array.dtype == np.uint16 or array.dtype == np.uint32 or array.dtype == np.uint64:
            array = array.astype(np.int64)
        if array.dtype.kind == "U" or array.dtype == object:
            raise UnsupportedGraph("string tensors are not supported by the torch replica")
        return torch.from_numpy(np.ascontiguousarray(array).copy())

    @staticmethod
    def _ints(t) -> list[int]:
        return [int(v) for v in t.reshape(-1).tolist()]

    def _float(self, t):
        return t if t.is_floating_point() else t.float()

    def _axes(self, ins, a, pos: int = 1) -> list[int] | None:
        if "axes" in a:
            return list(a["axes"])
        if len(ins) > pos and ins[pos] is not None:
            return self._ints(ins[pos])
        return None
