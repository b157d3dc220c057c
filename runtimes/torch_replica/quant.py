"""QuantizeLinear / DequantizeLinear: exact forward, clipped straight-through backward."""

from __future__ import annotations

from qtool.runtimes.torch_replica.base import ReplicaOps, UnsupportedGraph

# quantised type -> (lowest, highest) representable value
_QRANGE = {2: (0, 255), 3: (-128, 127), 4: (0, 65535), 5: (-32768, 32767)}


class QuantOps(ReplicaOps):
    """QDQ pairs as the int8 arithmetic ONNX Runtime does, differentiable."""

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
        return _quantize_function(torch).apply(x, scale, zp, lo, hi)


_FUNCTION = None


def _quantize_function(torch):
    """QuantizeLinear as one autograd node: the forward works in place on one tensor and
    keeps a byte mask, instead of five differentiable steps each keeping a float tensor.
    The gradient is computed as the five steps computed it (mask, then / scale), so it
    is the same to the bit."""
    global _FUNCTION
    if _FUNCTION is None:

        class QuantizeLinear(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, scale, zp, lo, hi):
                q = torch.div(x, scale)
                q.round_()  # half to even, as ONNX, before the zero point is added
                if zp is not None:
                    q.add_(zp.float())
                inside = (q >= lo) & (q <= hi)  # where the rounding is not saturated
                ctx.save_for_backward(inside, scale)
                return q.clamp_(lo, hi)

            @staticmethod
            def backward(ctx, grad):
                inside, scale = ctx.saved_tensors
                return torch.where(inside, grad, 0.0) / scale, None, None, None, None

        _FUNCTION = QuantizeLinear
    return _FUNCTION
