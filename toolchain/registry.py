"""A registry maps a name (and its aliases) to one entry of a variation point.

Fault models, execution providers, data sources and commands are each one registry in one
file, the way onnxruntime's `quantization/registry.py` maps op types to handler classes:
adding a kind is adding an entry, never a new string branch elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from qtool.errors import QtoolError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind; lookups of unknown names are bad input listing the names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, entry: T, aliases: tuple[str, ...] = ()) -> T:
        if name in self._entries or name in self._aliases:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        for alias in aliases:
            self._aliases[alias.lower()] = name
        return entry

    def register(self, name: str, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator form of `add`."""

        def decorate(entry: T) -> T:
            return self.add(name, entry, aliases)

        return decorate

    def canonical(self, name: str) -> str | None:
        key = name.strip()
        if key in self._entries:
            return key
        return self._aliases.get(key.lower(), key.lower() if key.lower() in self._entries else None)

    def get(self, name: str, *, param: str | None = None) -> T:
        found = self.canonical(name)
        if found is None:
            raise QtoolError(
                f"unknown {self.kind} {name!r}: use one of {', '.join(self.names())}", param=param
            )
        return self._entries[found]

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.canonical(name) is not None

    def __iter__(self) -> Iterator[T]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)
