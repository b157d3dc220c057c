"""Every resource that input can inflate, with its default limit, in one place.

A hostile or broken input (an archive bomb, a label of 2**40, a 200-megapixel PNG, an option
value of 10**9) must end in one line and exit 2 naming the limit, not in a MemoryError, a
hang or a full disk. Each limit here has a default meant to pass any real model and data set
of the sizes qtool targets (1-25 M parameters, 64-224 px images), a one-line doc, and is
raised for one call with `qtool --limit NAME=VALUE ...` (repeatable, or the environment
variable QTOOL_LIMITS="NAME=VALUE NAME=VALUE"); from Python, `with limits.using(pixels=...)`.

Library code asks `current()` for the active values and calls `check(name, value, what)`,
which raises `LimitExceeded` (a QtoolError, exit 2) naming the limit; the CLI adds how to
raise it. A leaf module: any part of qtool may import it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace

from qtool.errors import QtoolError

GiB, MiB = 2**30, 2**20


def _doc(text: str, unit: str = "", shown: str | None = None) -> dict:
    return {"doc": text, "unit": unit, "shown": shown}


def _default_threads() -> int:
    return 4 * (os.cpu_count() or 1)


@dataclass(frozen=True)
class Limits:
    """The limits of one call (field name = limit name with `_` for `-`)."""

    bundle_bytes: int = field(
        default=4 * GiB,
        metadata=_doc("bytes a bundle archive may unpack to (from its headers, and counted "
                      "while extracting)", "bytes"),
    )  # fmt: skip
    bundle_files: int = field(default=1000, metadata=_doc("members of a bundle archive", "members"))
    bundle_ratio: int = field(
        default=100,
        metadata=_doc("unpacked size / archive size of a bundle archive over 64 MiB "
                      "(zip/tar bombs; real bundles compress by under 5x)", "", "100x"),
    )  # fmt: skip
    data_bytes: int = field(
        default=4 * GiB,
        metadata=_doc("bytes a data set may take once decoded (.npz arrays from their "
                      "headers, image folders as they are read)", "bytes"),
    )  # fmt: skip
    pixels: int = field(
        default=2**27,
        metadata=_doc("pixel values of one image or DICOM file (frames x rows x columns x "
                      "channels), before it is decoded", "values"),
    )  # fmt: skip
    classes: int = field(
        default=2048,
        metadata=_doc("classes of a data set or model (labels index them; the confusion "
                      "matrix is classes^2)", "classes"),
    )  # fmt: skip
    trials: int = field(default=100_000, metadata=_doc("trials per bit budget of a campaign"))
    batch: int = field(default=4096, metadata=_doc("samples per batch of bench", "samples"))
    threads: int = field(
        default_factory=_default_threads,
        metadata=_doc("ONNX Runtime threads or worker processes of one call", "threads",
                      "4 x the CPUs"),
    )  # fmt: skip
    json_bytes: int = field(
        default=256 * MiB,
        metadata=_doc("bytes of one JSON input (bundle manifest, flip manifest, report)",
                      "bytes"),
    )  # fmt: skip
    json_depth: int = field(default=64, metadata=_doc("nesting depth of one JSON input", "levels"))

    @staticmethod
    def names() -> list[str]:
        return [cli_name(f.name) for f in fields(Limits)]


def cli_name(name: str) -> str:
    return name.replace("_", "-")


def describe() -> list[tuple[str, str, str]]:
    """(name, default, what it bounds) of every limit, for --help and the README table."""
    defaults = Limits()
    return [
        (
            cli_name(f.name),
            f.metadata["shown"] or human(getattr(defaults, f.name), f.metadata["unit"]),
            f.metadata["doc"],
        )
        for f in fields(Limits)
    ]


def human(value: int, unit: str = "") -> str:
    """A limit or a counted amount for a message: bytes in KiB/MiB/GiB, the rest with commas."""
    if unit != "bytes":
        return f"{value:,}" + (f" {unit}" if unit else "")
    for size, name in ((GiB, "GiB"), (MiB, "MiB"), (2**10, "KiB")):
        if value >= size:
            amount = value / size
            return f"{amount:.0f} {name}" if amount == int(amount) else f"{amount:.1f} {name}"
    return f"{value} bytes"


_ACTIVE: contextvars.ContextVar[Limits | None] = contextvars.ContextVar(
    "qtool_limits", default=None
)


def current() -> Limits:
    """The limits in force for this call (the defaults unless raised with `using`)."""
    active = _ACTIVE.get()
    return active if active is not None else Limits()


@contextlib.contextmanager
def using(**values: int) -> Iterator[Limits]:
    """Raise (or lower) limits for the code inside: `with using(pixels=2**28): ...`."""
    unknown = [k for k in values if k not in {f.name for f in fields(Limits)}]
    if unknown:
        raise QtoolError(
            f"unknown limit {cli_name(unknown[0])!r}: use {', '.join(Limits.names())}",
            param="limits",
        )
    token = _ACTIVE.set(replace(current(), **values))
    try:
        yield current()
    finally:
        _ACTIVE.reset(token)


class LimitExceeded(QtoolError):
    """An input needs more of a resource than a limit allows (exit 2). `limit` is its name."""

    def __init__(self, message: str, *, limit: str, param: str | None = None):
        super().__init__(message, param=param)
        self.limit = cli_name(limit)


def check(name: str, value: int, what: str, *, param: str | None = None) -> None:
    """Refuse `value` when it is over the limit `name`; `what` says what was counted."""
    limit = getattr(current(), name)
    if value > limit:
        unit = next(f.metadata["unit"] for f in fields(Limits) if f.name == name)
        raise LimitExceeded(
            f"{what} is {human(value, unit)}, over the {cli_name(name)} limit of "
            f"{human(limit, unit)}",
            limit=name,
            param=param,
        )


_SUFFIXES = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_assignments(items: list[str] | tuple[str, ...]) -> dict[str, int]:
    """['pixels=2e8', 'bundle-bytes=8G'] -> {'pixels': 200000000, 'bundle_bytes': 8 GiB}."""
    out: dict[str, int] = {}
    known = {f.name for f in fields(Limits)}
    for item in (part for text in items for part in text.replace(",", " ").split()):
        name, sep, text = item.partition("=")
        key = name.strip().lower().replace("-", "_")
        if not sep or key not in known:
            raise QtoolError(
                f"{item!r}: give NAME=VALUE with NAME one of {', '.join(Limits.names())}",
                param="limits",
            )
        out[key] = _parse_value(text.strip(), item)
    return out


def _parse_value(text: str, item: str) -> int:
    scale = 1
    lowered = text.lower().removesuffix("ib").removesuffix("b")
    if lowered and lowered[-1] in _SUFFIXES:
        scale, lowered = _SUFFIXES[lowered[-1]], lowered[:-1]
    try:
        value = float(lowered) * scale
    except ValueError:
        value = -1.0
    if not value >= 1 or value > 2**62 or value != value:
        raise QtoolError(
            f"{item!r}: a limit is a positive number, optionally with K, M, G or T (x1024)",
            param="limits",
        )
    return int(value)
