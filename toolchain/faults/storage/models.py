"""Storage fault models, one registered class each: how a fault hits a stored bit.

Every model answers three questions, and nothing else in qtool changes stored bytes:
- `eligible`: which words may be hit at a bit position, given that bit's current values
  (a stuck-at-1 fault can only hit bits that are 0: only bits that change count);
- `draw`: n distinct eligible bits, uniform over the eligible bit space (`space.BitSpace`);
- `apply`: change the bytes in place and return an `Undo` that puts them back.

Adding a model (say a row-hammer pattern that hits neighbouring bits of a word) is one class
here plus its test: subclass `StorageFault`, define `hit` (and `eligible`, `draw` where the
defaults do not fit) and register it in `FAULT_MODELS`; `qtool flip --fault NAME`, campaigns,
manifests and replay pick it up from the registry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from qtool.registry import Registry

if TYPE_CHECKING:
    from qtool.faults.storage.space import BitRef, BitSpace
    from qtool.modelfile.buffers import Buffers


@dataclass(frozen=True)
class BitSite:
    """A bit of the stored bytes: buffer key (None: the .onnx file), byte offset, bit 0-7."""

    file: str | None
    offset: int
    bit: int


@dataclass
class Undo:
    """The bytes an `apply` replaced; `restore` writes them back (byte-identical)."""

    buffers: Buffers
    old: list[tuple[str | None, int, int]] = field(default_factory=list)

    def restore(self) -> None:
        for file, offset, byte in reversed(self.old):
            self.buffers[file][offset] = byte
        self.old.clear()


class StorageFault(ABC):
    """A fault in stored bytes; see the module docstring for what a subclass defines."""

    name: ClassVar[str]
    summary: ClassVar[str]
    # eligibility depends on the bits' current values (False: every selected bit qualifies,
    # so the bit space is laid out without reading the tensors)
    reads_values: ClassVar[bool] = False

    @abstractmethod
    def hit(self, byte: int, bit: int) -> int:
        """The value of `byte` after this fault hits bit `bit` (0-7) of it."""

    def eligible(self, values: np.ndarray) -> np.ndarray:
        """Per word, given the 0/1 value of the bit in each: may this fault hit it?"""
        return np.ones(len(values), dtype=bool)

    def draw(
        self, space: BitSpace, n: int, rng: np.random.Generator, buffers: Buffers
    ) -> list[BitRef]:
        """n distinct eligible bits, uniform over the whole space (so size-weighted by tensor)."""
        from qtool.faults.storage.space import sample_indices

        return space.locate(sample_indices(rng, space.total, n), buffers)

    def patches(self, buffers: Buffers, sites: Iterable[BitSite]) -> dict[str | None, dict]:
        """The new value of every byte the sites touch, per buffer, without writing."""
        out: dict[str | None, dict[int, int]] = {}
        for s in sites:
            per_file = out.setdefault(s.file, {})
            per_file[s.offset] = self.hit(per_file.get(s.offset, buffers[s.file][s.offset]), s.bit)
        return out

    def apply(self, buffers: Buffers, sites: Iterable[BitSite]) -> Undo:
        """Hit every site in place: the one place stored bytes are changed by a fault."""
        undo = Undo(buffers)
        for file, per_file in self.patches(buffers, sites).items():
            buf = buffers[file]
            for offset, new in per_file.items():
                undo.old.append((file, offset, buf[offset]))
                buf[offset] = new
        return undo


class BitFlip(StorageFault):
    name = "flip"
    summary = "toggle the bit"

    def hit(self, byte: int, bit: int) -> int:
        return byte ^ (1 << bit)


class StuckAt(StorageFault):
    """The bit reads `value` whatever was stored; only bits holding the other value change,
    so only those are eligible (a stuck-at fault on a bit that already matches is invisible)."""

    reads_values = True

    def __init__(self, value: int):
        self.value = value
        self.name = "set" if value else "reset"
        self.summary = f"stuck-at-{value}"

    def hit(self, byte: int, bit: int) -> int:
        return byte | (1 << bit) if self.value else byte & ~(1 << bit) & 0xFF

    def eligible(self, values: np.ndarray) -> np.ndarray:
        return values != self.value


FAULT_MODELS: Registry[StorageFault] = Registry("fault model")
FAULT_MODELS.add("flip", BitFlip())
FAULT_MODELS.add("set", StuckAt(1), aliases=("stuck-at-1",))
FAULT_MODELS.add("reset", StuckAt(0), aliases=("stuck-at-0",))
