"""A differentiable PyTorch replica of an ONNX graph, for gradient-guided bit search.

The bit-flip attack needs dL/dW for every stored weight element. ONNX Runtime gives no
gradients, so this module interprets the ONNX nodes with torch operations, reading the very
initializer values stored in the file. Attack targets (int8/uint8 tensors read by a
DequantizeLinear, FP32 weights of Conv/Gemm/MatMul) become leaf tensors with
`requires_grad`, holding the *stored* values: for an INT8 weight the leaf is the integer
(as float32), so its gradient is dL/d(stored int) and a flip's first-order effect is
gradient x (new_int - old_int).

QuantizeLinear -> DequantizeLinear pairs on activations are simulated exactly in the
forward pass (round half to even, saturate) with a clipped straight-through estimator in
the backward pass: gradient 1 inside the representable range, 0 where it saturates.

Graphs with ops outside the supported set raise `UnsupportedGraph` so the caller can fall
back to a gradient-free search. torch is imported lazily (`qtool` must run without it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from qtool.errors import QtoolError


class UnsupportedGraph(QtoolError):
    """The graph uses an op (or attribute) the replica cannot reproduce; fall back."""


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise UnsupportedGraph(
            "the torch replica needs PyTorch: pip install 'qtool[torch]'"
        ) from exc
    return torch


# ONNX TensorProto data type -> torch dtype name
_TORCH_DTYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    16: "bfloat16",
}
_QRANGE = {2: (0, 255), 3: (-128, 127), 4: (0, 65535), 5: (-32768, 32767)}


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


class TorchReplica:
    """Interpret an ONNX graph with torch ops; `params` are the differentiable targets."""

    SUPPORTED = frozenset(
        """Conv Gemm MatMul Add Sub Mul Div Pow Sqrt Neg Exp Log Abs Reciprocal Min Max Sum
        Relu LeakyRelu Sigmoid Tanh Softmax LogSoftmax Erf Gelu HardSigmoid HardSwish Clip Elu
        Flatten Reshape Transpose Concat Slice Pad Gather Unsqueeze Squeeze Shape Size Constant
        ConstantOfShape Cast CastLike Expand Range Split Tile ReduceMean ReduceSum ReduceMax
        ReduceMin GlobalAveragePool GlobalMaxPool MaxPool AveragePool BatchNormalization
        Identity Dropout Einsum Where Equal Greater Less GreaterOrEqual LessOrEqual Not And Or
        QuantizeLinear DequantizeLinear""".split()
    )

    def __init__(self, model: onnx.ModelProto, trainable: Iterable[str] = ()):
        torch = _torch()
        self.torch = torch
        self.graph = model.graph
        self.opset = _opset(model)
        bad = sorted(
            {
                f"{n.domain + '.' if n.domain not in ('', 'ai.onnx') else ''}{n.op_type}"
                for n in self.graph.node
                if n.domain not in ("", "ai.onnx") or n.op_type not in self.SUPPORTED
            }
        )
        if bad:
            raise UnsupportedGraph(f"the torch replica does not support op(s): {', '.join(bad)}")
        inits = {t.name: t for t in self.graph.initializer}
        trainable = set(trainable)
        missing = trainable - set(inits)
        if missing:
            raise UnsupportedGraph(f"no initializer named {sorted(missing)[0]!r} to differentiate")
        self.consts: dict[str, Any] = {}
        self.params: dict[str, Any] = {}
        for name, tensor in inits.items():
            array = numpy_helper.to_array(tensor)
            if name in trainable:
                if array.dtype.kind not in "fiu":
                    raise UnsupportedGraph(f"target {name!r} has non-numeric type {array.dtype}")
                leaf = torch.tensor(array.astype(np.float32), requires_grad=True)
                self.params[name] = leaf
            else:
                self.consts[name] = self._from_numpy(array)
        self.input_names = [i.name for i in self.graph.input if i.name not in inits]
        self.output_names = [o.name for o in self.graph.output]
        self.producers = {out: node for node in self.graph.node for out in node.output}

    # --- values ------------------------------------------------------------------------------

    def _from_numpy(self, array: np.ndarray):
        torch = self.torch
        if array.dtype == np.uint16 or array.dtype == np.uint32 or array.dtype == np.uint64:
            array = array.astype(np.int64)
        if array.dtype.kind == "U" or array.dtype == object:
            raise UnsupportedGraph("string tensors are not supported by the torch replica")
        return torch.from_numpy(np.ascontiguousarray(array).copy())

    def set_element(self, name: str, flat_index: int, value: float) -> None:
        """Overwrite one element of a target (kept in step with the flipped bytes)."""
        with self.torch.no_grad():
            self.params[name].view(-1)[flat_index] = float(value)

    def logits_name(self, output: str) -> tuple[str, str]:
        """(tensor to take the loss on, "logits" or "log_probs"): skip a final Softmax."""
        node = self.producers.get(output)
        if node is not None and node.op_type == "Softmax":
            return node.input[0], "logits"
        if node is not None and node.op_type == "LogSoftmax":
            return output, "log_probs"
        return output, "logits"

    # --- running -----------------------------------------------------------------------------

    def run(self, feeds: dict[str, Any], outputs: list[str] | None = None) -> list:
        """Evaluate the graph on torch tensors; returns the requested tensors."""
        env = self.run_env(feeds)
        return [env[n] for n in (outputs or self.output_names)]

    def run_env(
        self,
        feeds: dict[str, Any] | None = None,
        cache: dict[str, Any] | None = None,
        changed: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Every tensor of the graph by name. With `cache` (an earlier run's result) only the
        nodes downstream of the `changed` tensors are recomputed: a one-weight change then
        costs the layers after it, not the whole network."""
        if cache is not None:
            env = dict(cache)
            env.update(self.params)
            dirty = set(changed)
        else:
            env = dict(self.consts)
            env.update(self.params)
            env[""] = None
            for name, value in (feeds or {}).items():
                env[name] = (
                    value if isinstance(value, self.torch.Tensor) else self.torch.as_tensor(value)
                )
            dirty = None
        for node in self.graph.node:
            if dirty is not None:
                if not any(i in dirty for i in node.input):
                    continue
                dirty.update(node.output)
            ins = [env[i] if i else None for i in node.input]
            try:
                result = getattr(self, "_op_" + node.op_type)(node, ins, _attrs(node))
            except UnsupportedGraph:
                raise
            except (RuntimeError, ValueError, IndexError, TypeError, KeyError) as exc:
                raise UnsupportedGraph(
                    f"torch replica failed at {node.op_type} node {node.name!r}: {exc}"
                ) from exc
            if not isinstance(result, (list, tuple)):
                result = [result]
            for out, value in zip(node.output, result, strict=False):
                if out:
                    env[out] = value
        return env

    # --- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _ints(t) -> list[int]:
        return [int(v) for v in t.reshape(-1).tolist()]

    def _float(self, t):
        return t if t.is_floating_point() else t.float()

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

    # --- ops ---------------------------------------------------------------------------------

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

    def _binary(self, fn, ins):
        x, y = ins
        return fn(x, y)

    def _op_Add(self, node, ins, a):
        return ins[0] + ins[1]

    def _op_Sub(self, node, ins, a):
        return ins[0] - ins[1]

    def _op_Mul(self, node, ins, a):
        return ins[0] * ins[1]

    def _op_Div(self, node, ins, a):
        x, y = ins
        if not x.is_floating_point() and not y.is_floating_point():
            return self.torch.div(x, y, rounding_mode="trunc")
        return x / y

    def _op_Pow(self, node, ins, a):
        return self.torch.pow(ins[0], ins[1])

    def _op_Sqrt(self, node, ins, a):
        return self.torch.sqrt(ins[0])

    def _op_Neg(self, node, ins, a):
        return -ins[0]

    def _op_Exp(self, node, ins, a):
        return self.torch.exp(ins[0])

    def _op_Log(self, node, ins, a):
        return self.torch.log(ins[0])

    def _op_Abs(self, node, ins, a):
        return self.torch.abs(ins[0])

    def _op_Reciprocal(self, node, ins, a):
        return 1.0 / ins[0]

    def _variadic(self, fn, ins):
        out = ins[0]
        for t in ins[1:]:
            out = fn(out, t)
        return out

    def _op_Min(self, node, ins, a):
        return self._variadic(self.torch.minimum, ins)

    def _op_Max(self, node, ins, a):
        return self._variadic(self.torch.maximum, ins)

    def _op_Sum(self, node, ins, a):
        return self._variadic(lambda p, q: p + q, ins)

    def _op_Relu(self, node, ins, a):
        return self.torch.relu(ins[0])

    def _op_LeakyRelu(self, node, ins, a):
        return self.torch.nn.functional.leaky_relu(ins[0], float(a.get("alpha", 0.01)))

    def _op_Elu(self, node, ins, a):
        return self.torch.nn.functional.elu(ins[0], float(a.get("alpha", 1.0)))

    def _op_Sigmoid(self, node, ins, a):
        return self.torch.sigmoid(ins[0])

    def _op_Tanh(self, node, ins, a):
        return self.torch.tanh(ins[0])

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

    def _op_Erf(self, node, ins, a):
        return self.torch.erf(ins[0])

    def _op_Gelu(self, node, ins, a):
        approx = a.get("approximate", b"none")
        approx = approx.decode() if isinstance(approx, bytes) else approx
        return self.torch.nn.functional.gelu(ins[0], approximate=approx)

    def _op_HardSigmoid(self, node, ins, a):
        alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
        return self.torch.clamp(alpha * ins[0] + beta, 0.0, 1.0)

    def _op_HardSwish(self, node, ins, a):
        return self.torch.nn.functional.hardswish(ins[0])

    def _op_Clip(self, node, ins, a):
        x = ins[0]
        lo = ins[1] if len(ins) > 1 and ins[1] is not None else a.get("min")
        hi = ins[2] if len(ins) > 2 and ins[2] is not None else a.get("max")
        if lo is not None:
            x = self.torch.maximum(x, self.torch.as_tensor(lo, dtype=x.dtype))
        if hi is not None:
            x = self.torch.minimum(x, self.torch.as_tensor(hi, dtype=x.dtype))
        return x

    def _op_Flatten(self, node, ins, a):
        x = ins[0]
        axis = int(a.get("axis", 1)) % max(1, x.dim()) if x.dim() else 0
        lead = int(np.prod(x.shape[:axis], dtype=np.int64))
        return x.reshape(lead, -1)

    def _op_Reshape(self, node, ins, a):
        x, shape = ins[0], self._ints(ins[1])
        if not a.get("allowzero", 0):
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return x.reshape(shape)

    def _op_Transpose(self, node, ins, a):
        x = ins[0]
        perm = list(a.get("perm", reversed(range(x.dim()))))
        return x.permute(perm)

    def _op_Concat(self, node, ins, a):
        parts = [t for t in ins if t is not None and t.numel() > 0] or [ins[0]]
        dtype = parts[0].dtype
        return self.torch.cat([p.to(dtype) for p in parts], dim=int(a["axis"]))

    def _op_Slice(self, node, ins, a):
        x = ins[0]
        if self.opset < 10:
            starts, ends = list(a["starts"]), list(a["ends"])
            axes = list(a.get("axes", range(len(starts))))
            steps = [1] * len(starts)
        else:
            starts, ends = self._ints(ins[1]), self._ints(ins[2])
            axes = (
                self._ints(ins[3])
                if len(ins) > 3 and ins[3] is not None
                else list(range(len(starts)))
            )
            steps = self._ints(ins[4]) if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
        index: list[Any] = [slice(None)] * x.dim()
        flips = []
        for s, e, ax, st in zip(starts, ends, axes, steps, strict=False):
            ax %= x.dim()
            size = x.shape[ax]
            if st > 0:
                s = max(0, min(size, s + size if s < 0 else s))
                e = max(0, min(size, e + size if e < 0 else e))
                index[ax] = slice(s, e, st)
            else:  # negative step: slice forward, then flip
                s = max(-1, min(size - 1, s + size if s < 0 else s))
                e = max(-1, min(size - 1, e + size if e < 0 else e))
                idx = list(range(s, e, st))
                index[ax] = self.torch.tensor(idx, dtype=self.torch.long) if idx else slice(0, 0)
                flips.append(ax)
        out = x
        for ax, ix in enumerate(index):  # one axis at a time (tensor indices don't combine)
            if ix != slice(None):
                sel: list[Any] = [slice(None)] * x.dim()
                sel[ax] = ix
                out = out[tuple(sel)]
        return out

    def _op_Pad(self, node, ins, a):
        x = ins[0]
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if self.opset < 11:
            pads, value = list(a["pads"]), float(a.get("value", 0.0))
        else:
            pads = self._ints(ins[1])
            value = (
                float(ins[2].reshape(-1)[0])
                if len(ins) > 2 and ins[2] is not None and ins[2].numel()
                else 0.0
            )
            if len(ins) > 3 and ins[3] is not None:
                axes = [ax % x.dim() for ax in self._ints(ins[3])]
                full = [0] * (2 * x.dim())
                for i, ax in enumerate(axes):
                    full[ax], full[x.dim() + ax] = pads[i], pads[len(axes) + i]
                pads = full
        nd = x.dim()
        torch_pads: list[int] = []
        for i in reversed(range(nd)):
            torch_pads += [pads[i], pads[nd + i]]
        while len(torch_pads) > 2 and torch_pads[-2:] == [0, 0]:
            torch_pads = torch_pads[:-2]
        F = self.torch.nn.functional
        if mode == "constant":
            return F.pad(x, torch_pads, value=value)
        torch_mode = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(mode)
        if torch_mode is None:
            raise UnsupportedGraph(f"Pad mode {mode}")
        return F.pad(x, torch_pads, mode=torch_mode)

    def _op_Gather(self, node, ins, a):
        x, idx = ins
        axis = int(a.get("axis", 0)) % x.dim()
        idx = idx.long()
        idx = self.torch.where(idx < 0, idx + x.shape[axis], idx)
        out = self.torch.index_select(x, axis, idx.reshape(-1))
        return out.reshape(list(x.shape[:axis]) + list(idx.shape) + list(x.shape[axis + 1 :]))

    def _axes(self, ins, a, pos: int = 1) -> list[int] | None:
        if "axes" in a:
            return list(a["axes"])
        if len(ins) > pos and ins[pos] is not None:
            return self._ints(ins[pos])
        return None

    def _op_Unsqueeze(self, node, ins, a):
        x = ins[0]
        axes = self._axes(ins, a)
        rank = x.dim() + len(axes)
        for ax in sorted(ax % rank for ax in axes):
            x = x.unsqueeze(ax)
        return x

    def _op_Squeeze(self, node, ins, a):
        x = ins[0]
        axes = self._axes(ins, a)
        if axes is None:
            return x.squeeze()
        for ax in sorted((ax % x.dim() for ax in axes), reverse=True):
            x = x.squeeze(ax)
        return x

    def _op_Shape(self, node, ins, a):
        shape = list(ins[0].shape)
        start, end = int(a.get("start", 0)), a.get("end")
        shape = shape[start:] if end is None else shape[start : int(end)]
        return self.torch.tensor(shape, dtype=self.torch.int64)

    def _op_Size(self, node, ins, a):
        return self.torch.tensor(ins[0].numel(), dtype=self.torch.int64)

    def _op_Constant(self, node, ins, a):
        if "value" in a:
            return self._from_numpy(numpy_helper.to_array(a["value"]))
        for key, dtype in (
            ("value_float", np.float32),
            ("value_floats", np.float32),
            ("value_int", np.int64),
            ("value_ints", np.int64),
        ):
            if key in a:
                return self._from_numpy(np.array(a[key], dtype=dtype))
        raise UnsupportedGraph(f"Constant node {node.name!r} with {sorted(a)}")

    def _op_ConstantOfShape(self, node, ins, a):
        value = a.get("value")
        fill = (
            numpy_helper.to_array(value).reshape(-1)
            if value is not None
            else np.zeros(1, np.float32)
        )
        proto = self._from_numpy(fill)
        return self.torch.full(self._ints(ins[0]), proto[0].item(), dtype=proto.dtype)

    def _dtype(self, onnx_type: int):
        name = _TORCH_DTYPES.get(int(onnx_type))
        if name is None:
            raise UnsupportedGraph(f"Cast to ONNX type {onnx_type}")
        return getattr(self.torch, name)

    def _op_Cast(self, node, ins, a):
        return ins[0].to(self._dtype(a["to"]))

    def _op_CastLike(self, node, ins, a):
        return ins[0].to(ins[1].dtype)

    def _op_Expand(self, node, ins, a):
        x, shape = ins[0], self._ints(ins[1])
        target = list(self.torch.broadcast_shapes(tuple(x.shape), tuple(shape)))
        return x.expand(target)

    def _op_Range(self, node, ins, a):
        start, limit, delta = (t.item() for t in ins)
        return self.torch.arange(start, limit, delta, dtype=ins[0].dtype)

    def _op_Split(self, node, ins, a):
        x = ins[0]
        axis = int(a.get("axis", 0))
        if len(ins) > 1 and ins[1] is not None:
            sizes = self._ints(ins[1])
        elif "split" in a:
            sizes = list(a["split"])
        else:
            n = int(a.get("num_outputs", len(node.output)))
            size = -(-x.shape[axis] // n)
            sizes = [min(size, x.shape[axis] - i * size) for i in range(n)]
        return list(self.torch.split(x, sizes, dim=axis))

    def _op_Tile(self, node, ins, a):
        return ins[0].repeat(self._ints(ins[1]))

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

    def _op_Identity(self, node, ins, a):
        return ins[0]

    def _op_Dropout(self, node, ins, a):
        return ins[0]

    def _op_Einsum(self, node, ins, a):
        eq = a["equation"]
        eq = eq.decode() if isinstance(eq, bytes) else eq
        return self.torch.einsum(eq, *ins)

    def _op_Where(self, node, ins, a):
        return self.torch.where(ins[0].bool(), ins[1], ins[2])

    def _op_Equal(self, node, ins, a):
        return ins[0] == ins[1]

    def _op_Greater(self, node, ins, a):
        return ins[0] > ins[1]

    def _op_Less(self, node, ins, a):
        return ins[0] < ins[1]

    def _op_GreaterOrEqual(self, node, ins, a):
        return ins[0] >= ins[1]

    def _op_LessOrEqual(self, node, ins, a):
        return ins[0] <= ins[1]

    def _op_Not(self, node, ins, a):
        return ~ins[0].bool()

    def _op_And(self, node, ins, a):
        return ins[0].bool() & ins[1].bool()

    def _op_Or(self, node, ins, a):
        return ins[0].bool() | ins[1].bool()

    # --- quantisation ------------------------------------------------------------------------

    def _qparams(self, node, ins, a, x):
        scale = self._float(ins[1])
        zp = ins[2] if len(ins) > 2 and ins[2] is not None else None
        if "block_size" in a and int(a["block_size"]) > 0:
            raise UnsupportedGraph("blocked QuantizeLinear/DequantizeLinear")
        if (
            scale.dim() == 1
            and scale.numel() > 1
            or (scale.dim() == 1 and x.dim() > 1 and "axis" in a)
        ):
            axis = int(a.get("axis", 1)) % x.dim()
            shape = [1] * x.dim()
            shape[axis] = -1
            scale = scale.reshape(shape)
            zp = zp.reshape(shape) if zp is not None else None
        return scale, zp

    def _op_DequantizeLinear(self, node, ins, a):
        x = ins[0]
        scale, zp = self._qparams(node, ins, a, x)
        xf = x if x.is_floating_point() else x.float()
        if zp is not None:
            xf = xf - zp.float()
        return xf * scale

    def _op_QuantizeLinear(self, node, ins, a):
        """Exact forward (round half to even, saturate); clipped straight-through backward."""
        torch = self.torch
        x = self._float(ins[0])
        scale, zp = self._qparams(node, ins, a, x)
        if zp is not None:
            dtype = {torch.uint8: 2, torch.int8: 3, torch.int16: 5}.get(zp.dtype)
            if dtype is None:
                raise UnsupportedGraph(f"QuantizeLinear to {zp.dtype}")
        else:
            dtype = int(a.get("output_dtype", 0)) or 2
        if dtype not in _QRANGE:
            raise UnsupportedGraph(f"QuantizeLinear to ONNX type {dtype}")
        lo, hi = _QRANGE[dtype]
        t = x / scale
        t = t + (torch.round(t) - t).detach()  # ONNX rounds x / scale before adding zp
        q = t + (zp.float() if zp is not None else 0.0)
        return torch.clamp(q, lo, hi)  # saturation: zero gradient outside the range
