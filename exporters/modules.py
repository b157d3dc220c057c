"""Which torch module computed each tensor of an exported graph, kept after debug info goes.

The dynamo exporter writes each node's module path in its metadata (`pkg.torch.onnx.
name_scopes`, e.g. ['', 'layer3', 'layer3.0', 'layer3.0.conv1', 'convolution']); the
TorchScript exporter puts it in node names (`/layer3/layer3.0/conv1/Conv`). Both are
read before the per-node debug info is stripped (it is over half of a small model's file)
and kept as one metadata entry, tensor name -> module path, so reports about tensors
(quantisation error, fault locations) can name `layer3.0.conv1` instead of `getitem_30`.
"""

from __future__ import annotations

import ast
import json

TENSOR_MODULES_KEY = "qtool.tensor_modules"
NAME_SCOPES = "pkg.torch.onnx.name_scopes"


def scope_of_node_name(name: str) -> str | None:
    """A TorchScript node name `/layer3/layer3.0/conv1/Conv` -> `layer3.0.conv1`."""
    if not name.startswith("/") or name.count("/") < 2:
        return None
    parts: list[str] = []
    for part in name.strip("/").split("/")[:-1]:  # the last part is the op
        if parts and part.startswith(parts[-1] + "."):
            parts[-1] = part  # a Sequential child spelled with its parent: layer3 -> layer3.0
        else:
            parts.append(part)
    return ".".join(parts) or None


def _scope_of_metadata(node) -> str | None:
    """The innermost module of a dynamo node's name scopes (its last entry is the op)."""
    for prop in node.metadata_props:
        if prop.key == NAME_SCOPES:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            modules = [s for s in scopes[:-1] if isinstance(s, str) and s]
            return modules[-1] if modules else None
    return None


def tensor_modules(graph) -> dict[str, str]:
    """Tensor name -> the module path of the node that produces it (top graph). A batch
    norm right after a convolution is named after both (`layer1.0.conv1 + layer1.0.bn1`): the
    optimiser folds it into the convolution, whose output keeps the batch norm's name."""
    out: dict[str, str] = {}
    for node in graph.node:
        scope = _scope_of_metadata(node) or scope_of_node_name(node.name)
        if not scope:
            continue
        if node.op_type == "BatchNormalization" and node.input and out.get(node.input[0]):
            conv = out[node.input[0]]
            if conv != scope:
                scope = f"{conv} + {scope}"
        for tensor in node.output:
            if tensor:
                out[tensor] = scope
    return out


def fx_tensor_modules(program) -> dict[str, str]:
    """Tensor name -> module path from a dynamo export's torch.export graph (its node names
    are the ONNX tensor names), seeing through getitem and naming a batch norm that follows a
    convolution after both: the exporter's optimiser folds the two into one Conv that keeps
    only the batch norm's name scope. Best effort: {} when the program has no such graph."""
    try:
        nodes = [n for n in program.exported_program.graph.nodes if n.op == "call_function"]
    except Exception:
        return {}
    scopes: dict[str, str] = {}
    for node in nodes:
        stack = node.meta.get("nn_module_stack") or {}
        if not stack and "getitem" not in str(node.target):
            continue
        scope = str(list(stack.values())[-1][0]) if stack else ""
        source = node.args[0] if node.args else None
        target = str(node.target)
        if "getitem" in target and getattr(source, "name", None) in scopes:
            scope = scopes[source.name]
        elif "batch_norm" in target and getattr(source, "name", None) in scopes:
            if "conv" in str(source.target) and scopes[source.name] != scope:
                scope = f"{scopes[source.name]} + {scope}"
        if scope:
            scopes[node.name] = scope
    return scopes


def record_tensor_modules(model, before: dict[str, str] | None = None) -> None:
    """Store tensor -> module for the model's graph as one metadata entry (none if empty).
    Names already recorded, then `before` (e.g. fx_tensor_modules), win over the nodes' own
    debug info for the tensors the graph still has."""
    mapping = tensor_modules(model.graph)
    recorded = next((p.value for p in model.metadata_props if p.key == TENSOR_MODULES_KEY), "{}")
    known = {**(before or {}), **json.loads(recorded)}
    produced = {t for node in model.graph.node for t in node.output if t}
    mapping.update({t: m for t, m in known.items() if t in produced})
    kept = [p for p in model.metadata_props if p.key != TENSOR_MODULES_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    if mapping:
        model.metadata_props.add(
            key=TENSOR_MODULES_KEY, value=json.dumps(mapping, separators=(",", ":"))
        )
