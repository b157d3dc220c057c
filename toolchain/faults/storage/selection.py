"""What a storage fault may hit and how: target classes, bit positions, layers, fault model.

`Selection` is the typed description every storage-fault entry point takes (one injection,
a campaign, a replayed manifest); `FlipSettings` adds the number of bits and the seed of one
injection. Values are checked here, each error naming its parameter; parsing command-line
text into these values is the command's job (`qtool.commands.flip`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qtool.errors import QtoolError
from qtool.faults.storage.models import FAULT_MODELS, StorageFault
from qtool.faults.words import BIT_CLASSES, MAX_BIT

# target class -> the graph role it selects (qtool.modelfile.roles); ALL selects every role
TARGET_CLASSES = {"weights": "weight", "biases": "bias", "qparams": "qparam", "others": "other"}
ALL = "all"


@dataclass(frozen=True, kw_only=True)
class Selection:
    """Eligible bits: tensors by graph role (and a layer regex), bits of each stored word,
    and the storage fault model that hits them."""

    targets: tuple[str, ...] = ("weights",)
    positions: tuple[str | int, ...] = ("any",)
    layers: str | None = None
    fault: str = "flip"

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "positions", tuple(self.positions))
        names = ", ".join([*TARGET_CLASSES, ALL])
        if not self.targets:
            raise QtoolError(f"select at least one target class: {names}", param="targets")
        for t in self.targets:
            if t not in TARGET_CLASSES and t != ALL:
                raise QtoolError(f"unknown target class {t!r}: use {names}", param="targets")
        for item in self.positions:
            if isinstance(item, int) and not 0 <= item <= MAX_BIT:
                raise QtoolError(f"bit {item} is not in 0-{MAX_BIT}", param="positions")
            if not isinstance(item, int):
                BIT_CLASSES.get(item, param="positions")
        if not self.positions:
            raise QtoolError("select at least one bit position", param="positions")
        object.__setattr__(self, "fault", FAULT_MODELS.canonical(self.fault) or self.fault)
        FAULT_MODELS.get(self.fault, param="fault")
        self.pattern()

    def roles(self) -> set[str] | None:
        """The graph roles selected, or None for every numeric initializer."""
        if ALL in self.targets:
            return None
        return {TARGET_CLASSES[t] for t in self.targets}

    def pattern(self) -> re.Pattern | None:
        try:
            return re.compile(self.layers) if self.layers else None
        except re.error as exc:
            raise QtoolError(
                f"{self.layers!r} is not a regular expression: {exc}", param="layers"
            ) from exc

    @property
    def fault_model(self) -> StorageFault:
        return FAULT_MODELS.get(self.fault, param="fault")

    # the record kept in manifests and reports: comma-joined text, as a user would type it
    @property
    def targets_text(self) -> str:
        return ",".join(self.targets)

    @property
    def positions_text(self) -> str:
        return ",".join(str(p) for p in self.positions)

    def describe(self) -> str:
        layers = f", layers={self.layers}" if self.layers else ""
        return f"targets={self.targets_text}, positions={self.positions_text}{layers}"


def selection_of_record(record: dict) -> Selection:
    """The Selection a manifest (or campaign report) recorded with `Selection.*_text`."""
    positions = [int(p) if p.isdigit() else p for p in _items(record["positions"])]
    return Selection(
        targets=tuple(_items(record["targets"])),
        positions=tuple(positions),
        layers=record["layers"],
        fault=record["fault"],
    )


@dataclass(frozen=True, kw_only=True)
class FlipSettings(Selection):
    """One injection: `bits` distinct eligible bits drawn with `seed`."""

    bits: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bits < 0:
            raise QtoolError(f"{self.bits} bits: give a count of 0 or more", param="bits")
        if self.seed < 0:
            raise QtoolError(f"seed {self.seed}: give 0 or more", param="seed")


def _items(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]
