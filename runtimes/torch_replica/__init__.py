"""A differentiable PyTorch replica of an ONNX graph (see `replica.py`), for the bit search.

replica.py      TorchReplica: the graph walk, the differentiable targets, dispatch
base.py         UnsupportedGraph, lazy torch, the base of the op families
elementwise.py  arithmetic, activations, casts, comparisons, logic
shape.py        reshape, slice, pad, gather, concat, constants
nn.py           Conv, Gemm, MatMul, pooling, normalisation, softmax, reductions
quant.py        QuantizeLinear / DequantizeLinear with a straight-through estimator
"""

from qtool.runtimes.torch_replica.base import UnsupportedGraph, torch_module
from qtool.runtimes.torch_replica.replica import TorchReplica

__all__ = ["TorchReplica", "UnsupportedGraph", "torch_module"]
