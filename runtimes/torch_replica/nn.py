"""Layers of the replica: convolutions, matrix products, pooling, normalisation, reductions."""

from __future__ import annotations

import numpy as np

from qtool.runtimes.torch_replica.base import ReplicaOps, UnsupportedGraph


class LayerOps(ReplicaOps):
    """Conv, Gemm, MatMul, pooling, BatchNormalization, Softmax, reductions, Einsum."""

    def _spatial_pads(self, a: dict, x, kernel: list[int], strides: list[int], dil: list[int]):
        nd = len(kernel)
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads_b, pads_e = [], []
            for i in range(nd):
                size = x.shape[2 + i]
                out = -(-size // strides[i])
                total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - size)
                small, big = total // 2, total - total // 2
                pads_b.append(small if auto == "SAME_UPPER" else big)
                pads_e.append(big if auto == "SAME_UPPER" else small)
            return pads_b + pads_e
        if auto == "VALID":
            return [0] * (2 * nd)
        return list(a.get("pads", [0] * (2 * nd)))

    def _pad_input(self, x, pads: list[int], value: float = 0.0):
        """Explicit F.pad for ONNX pads [b1, b2, ..., e1, e2, ...] over trailing dims."""
        nd = len(pads) // 2
        torch_pads: list[int] = []
        for i in reversed(range(nd)):
            torch_pads += [pads[i], pads[nd + i]]
        return self.torch.nn.functional.pad(x, torch_pads, value=value)

    def _op_Conv(self, node, ins, a):
        F = self.torch.nn.functional
        x, w = ins[0], ins[1]
        b = ins[2] if len(ins) > 2 else None
        nd = w.dim() - 2
        kernel = list(a.get("kernel_shape", w.shape[2:]))
        strides = list(a.get("strides", [1] * nd))
        dil = list(a.get("dilations", [1] * nd))
        pads = self._spatial_pads(a, x, kernel, strides, dil)
        if pads[:nd] == pads[nd:]:
            padding = pads[:nd]
        else:
            x, padding = self._pad_input(x, pads), [0] * nd
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}.get(nd)
        if conv is None:
            raise UnsupportedGraph(f"Conv with {nd} spatial dims")
        return conv(x, w, b, strides, padding, dil, int(a.get("group", 1)))

    def _op_Gemm(self, node, ins, a):
        A, B = ins[0], ins[1]
        C = ins[2] if len(ins) > 2 else None
        if a.get("transA", 0):
            A = A.t()
        if a.get("transB", 0):
            B = B.t()
        y = float(a.get("alpha", 1.0)) * (A @ B)
        if C is not None:
            y = y + float(a.get("beta", 1.0)) * C
        return y

    def _op_MatMul(self, node, ins, a):
        return self.torch.matmul(ins[0], ins[1])

    def _softmax_like(self, fn, node, ins, a):
        x = ins[0]
        if self.opset >= 13:
            return fn(x, dim=int(a.get("axis", -1)))
        axis = int(a.get("axis", 1)) % x.dim()
        flat = x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)
        return fn(flat, dim=1).reshape(x.shape)

    def _op_Softmax(self, node, ins, a):
        return self._softmax_like(self.torch.softmax, node, ins, a)

    def _op_LogSoftmax(self, node, ins, a):
        return self._softmax_like(self.torch.log_softmax, node, ins, a)

    def _reduce(self, fn, node, ins, a):
        x = ins[0]
        axes = self._axes(ins, a)
        keep = bool(a.get("keepdims", 1))
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.dim()))
        axes = sorted(ax % x.dim() for ax in axes)
        return fn(x, axes, keep)

    def _op_ReduceMean(self, node, ins, a):
        return self._reduce(lambda x, ax, k: x.mean(dim=ax, keepdim=k), node, ins, a)

    def _op_ReduceSum(self, node, ins, a):
        return self._reduce(lambda x, ax, k: x.sum(dim=ax, keepdim=k), node, ins, a)

    def _op_ReduceMax(self, node, ins, a):
        return self._reduce(lambda x, ax, k: self.torch.amax(x, dim=ax, keepdim=k), node, ins, a)

    def _op_ReduceMin(self, node, ins, a):
        return self._reduce(lambda x, ax, k: self.torch.amin(x, dim=ax, keepdim=k), node, ins, a)

    def _op_GlobalAveragePool(self, node, ins, a):
        x = ins[0]
        return x.mean(dim=list(range(2, x.dim())), keepdim=True)

    def _op_GlobalMaxPool(self, node, ins, a):
        x = ins[0]
        return self.torch.amax(x, dim=list(range(2, x.dim())), keepdim=True)

    def _pool(self, node, ins, a, kind: str):
        F = self.torch.nn.functional
        x = ins[0]
        kernel = list(a["kernel_shape"])
        nd = len(kernel)
        strides = list(a.get("strides", [1] * nd))
        dil = list(a.get("dilations", [1] * nd))
        pads = self._spatial_pads(a, x, kernel, strides, dil)
        ceil = bool(a.get("ceil_mode", 0))
        symmetric = pads[:nd] == pads[nd:] and all(
            p <= k // 2 for p, k in zip(pads[:nd], kernel, strict=True)
        )
        if kind == "max":
            if not symmetric:
                x, pads = self._pad_input(x, pads, float("-inf")), [0] * (2 * nd)
            fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
            return fn(x, kernel, strides, pads[:nd], dil, ceil_mode=ceil)
        if any(d != 1 for d in dil):
            raise UnsupportedGraph("AveragePool with dilations")
        include = bool(a.get("count_include_pad", 0))
        if not symmetric:
            if not include and any(pads):
                raise UnsupportedGraph("AveragePool with asymmetric pads excluding padding")
            x, pads = self._pad_input(x, pads), [0] * (2 * nd)
        fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
        return fn(x, kernel, strides, pads[:nd], ceil_mode=ceil, count_include_pad=include)

    def _op_MaxPool(self, node, ins, a):
        if len(node.output) > 1 and node.output[1]:
            raise UnsupportedGraph("MaxPool with an Indices output")
        return self._pool(node, ins, a, "max")

    def _op_AveragePool(self, node, ins, a):
        return self._pool(node, ins, a, "avg")

    def _op_BatchNormalization(self, node, ins, a):
        x, scale, bias, mean, var = ins[:5]
        shape = [1, -1] + [1] * (x.dim() - 2)
        eps = float(a.get("epsilon", 1e-5))
        inv = scale / self.torch.sqrt(var + eps)
        return (x - mean.reshape(shape)) * inv.reshape(shape) + bias.reshape(shape)

    def _op_Einsum(self, node, ins, a):
        eq = a["equation"]
        eq = eq.decode() if isinstance(eq, bytes) else eq
        return self.torch.einsum(eq, *ins)
