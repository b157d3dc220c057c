"""Shape and layout ops of the replica: reshape, slicing, padding, gathering, constants."""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import numpy_helper

from qtool.runtimes.torch_replica.base import ReplicaOps, UnsupportedGraph


class ShapeOps(ReplicaOps):
    """Ops that move, cut or make tensors without arithmetic on their values."""

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
