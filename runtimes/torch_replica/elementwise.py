"""Element-wise ops of the replica: arithmetic, activations, casts, comparisons, logic."""

from __future__ import annotations

from qtool.runtimes.torch_replica.base import ReplicaOps, UnsupportedGraph

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


class ElementwiseOps(ReplicaOps):
    """Ops applied element by element (with broadcasting)."""

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

    def _dtype(self, onnx_type: int):
        name = _TORCH_DTYPES.get(int(onnx_type))
        if name is None:
            raise UnsupportedGraph(f"Cast to ONNX type {onnx_type}")
        return getattr(self.torch, name)

    def _op_Cast(self, node, ins, a):
        return ins[0].to(self._dtype(a["to"]))

    def _op_CastLike(self, node, ins, a):
        return ins[0].to(ins[1].dtype)

    def _op_Identity(self, node, ins, a):
        return ins[0]

    def _op_Dropout(self, node, ins, a):
        return ins[0]

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
