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

from qtool.runtimes.torch_replica.base import UnsupportedGraph, attributes, torch_module
from qtool.runtimes.torch_replica.elementwise import ElementwiseOps
from qtool.runtimes.torch_replica.nn import LayerOps
from qtool.runtimes.torch_replica.quant import QuantOps
from qtool.runtimes.torch_replica.shape import ShapeOps


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


class TorchReplica(ElementwiseOps, ShapeOps, LayerOps, QuantOps):
    """Interpret an ONNX graph with torch ops; `params` are the differentiable targets.

    Each op is a method `_op_<OpType>` of one family (elementwise, shape, nn, quant); an op
    is supported when one of them defines it, so adding an op is one method in its family.
    """

    SUPPORTED: frozenset[str] = frozenset()  # set below from the `_op_` methods

    def __init__(self, model: onnx.ModelProto, trainable: Iterable[str] = ()):
        torch = torch_module()
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

    def run(self, feeds: dict[str, Any], outputs: list[str] | None = None) -> list:
        """Evaluate the graph on torch tensors; returns the requested tensors."""
        env = self.run_env(feeds)
        return [env[n] for n in (outputs or self.output_names)]

    def static_values(self) -> dict[str, Any]:
        """Outputs of the nodes that read initializers only (the DequantizeLinear of each
        int8 weight): with autograd, for `run_env(given=...)`, so a batch split into chunks
        dequantises its weights once instead of once per chunk."""
        known = set(self.consts) | set(self.params) | {""}
        static = []
        for node in self.graph.node:
            if all(i in known for i in node.input):
                static.append(node)
                known.update(node.output)
        env = dict(self.consts)
        env.update(self.params)
        env[""] = None
        self._run_nodes(static, env)
        return {out: env[out] for node in static for out in node.output if out}

    def run_env(
        self,
        feeds: dict[str, Any] | None = None,
        cache: dict[str, Any] | None = None,
        changed: Iterable[str] = (),
        given: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Every tensor of the graph by name. With `cache` (an earlier run's result) only the
        nodes downstream of the `changed` tensors are recomputed: a one-weight change then
        costs the layers after it, not the whole network. Nodes whose outputs are `given`
        (`static_values` of the current weights) are not run."""
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
        nodes = list(self.graph.node)
        if given:
            env.update(given)
            nodes = [n for n in nodes if not _all_given(n, given)]
        if dirty is not None:
            kept = []
            for node in nodes:
                if any(i in dirty for i in node.input):
                    dirty.update(node.output)
                    kept.append(node)
            nodes = kept
        self._run_nodes(nodes, env)
        return env

    def _run_nodes(self, nodes: list, env: dict[str, Any]) -> None:
        for node in nodes:
            ins = [env[i] if i else None for i in node.input]
            try:
                result = getattr(self, "_op_" + node.op_type)(node, ins, attributes(node))
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


def _all_given(node: onnx.NodeProto, given: dict[str, Any]) -> bool:
    outs = [o for o in node.output if o]
    return bool(outs) and all(o in given for o in outs)


TorchReplica.SUPPORTED = frozenset(
    name[len("_op_") :] for name in dir(TorchReplica) if name.startswith("_op_")
)
