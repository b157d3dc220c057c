"""The command registry: one entry per `qtool` command, imported only when it runs.

Adding a command is one module here (a click command named `command`) plus one entry below;
the short help is kept here so `qtool --help` lists every command without importing any.
"""

from __future__ import annotations

from dataclasses import dataclass

from qtool.registry import Registry


@dataclass(frozen=True)
class CommandEntry:
    module: str  # module holding a click command named `command`
    short_help: str


COMMANDS: Registry[CommandEntry] = Registry("command")
for _name, _help in [
    ("demo", "The whole pipeline on the built-in models, offline."),
    ("train", "Train a zoo model (cnn, sasa, mlp) on a data set."),
    ("export", "Export a PyTorch model to ONNX, checked for parity."),
    ("inspect", "What is in an ONNX file: inputs, size, FLOPs, roles, metadata."),
    ("eval", "Accuracy of an ONNX model on a data set, in ONNX Runtime."),
    ("quantize", "Static INT8 quantisation with ONNX Runtime, accuracy kept in a budget."),
    ("bench", "Latency and energy of ONNX models side by side."),
    ("flip", "Bit flips in stored weights: one injection, campaigns, the bit search."),
    ("keygen", "Make an Ed25519 key pair for signing bundles."),
    ("package", "Bundle a model with hashes, a model card, optional ECC and a signature."),
    ("verify", "Check a bundle's signature and files against its manifest; repair with ECC."),
    ("predict", "Classify inputs (images, DICOM, .npz) with a verified bundle's model."),
    ("serve", "Serve a verified bundle over HTTP (Open Inference Protocol v2)."),
    ("attack", "Lightweight black-box attacks (few samples, no outputs) vs the noise floor."),
]:
    COMMANDS.add(_name, CommandEntry(f"qtool.commands.{_name}", _help))
