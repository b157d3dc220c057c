"""Storage faults: bits of the stored model (the file, or memory before it is loaded).

ONNX Runtime folds and pre-packs weights when it loads a model, so these are faults of the
stored bytes, not run-time DRAM faults of a running session.

    selection.py  what may be hit: `Selection` (targets by role, positions, layers, fault)
                  and `FlipSettings` (plus bits and seed)
    targets.py    eligible tensors by graph role, varint tensors converted to raw_data
    models.py     the fault models (flip, set = stuck-at-1, reset = stuck-at-0), registered
                  in FAULT_MODELS; each has eligible / draw / apply
    space.py      the eligible bit space and sampling in it
    inject.py     one injection, logged
    manifest.py   the log: build, load, replay, undo
"""

from qtool.faults.storage.inject import Injection, inject
from qtool.faults.storage.manifest import MANIFEST_FORMAT, load_manifest, replay
from qtool.faults.storage.models import FAULT_MODELS, BitSite, StorageFault, Undo
from qtool.faults.storage.selection import FlipSettings, Selection

__all__ = [
    "FAULT_MODELS",
    "MANIFEST_FORMAT",
    "BitSite",
    "FlipSettings",
    "Injection",
    "Selection",
    "StorageFault",
    "Undo",
    "inject",
    "load_manifest",
    "replay",
]
