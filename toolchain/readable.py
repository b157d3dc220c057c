"""Input files checked where they are opened: plain files only, JSON within its limits.

A FIFO named `x.png` blocks a reader forever and `/dev/zero` never ends, so every input qtool
opens by path (models, data files, manifests, reports, keys) must be a regular file (after
following symlinks). JSON inputs are read whole, so their size and nesting are limited
(`qtool.limits`: json-bytes, json-depth). A leaf module: any part of qtool may import it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np

from qtool import limits
from qtool.errors import QtoolError


def file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def is_regular(path: Path) -> bool:
    """True for a regular file (symlinks followed); never blocks, never raises."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def regular_file(path: str | Path, what: str, *, param: str | None = None) -> Path:
    """`path` if it is a regular file, else one line saying what it is instead."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise QtoolError(f"{what} {path} does not exist: check the path", param=param) from None
    except (OSError, ValueError) as exc:
        raise QtoolError(f"cannot read {what} {path}: {exc}", param=param) from exc
    if not stat.S_ISREG(mode):
        raise QtoolError(f"{what} {path} is {file_kind(mode)}; give a plain file", param=param)
    return path


def read_json(
    path: str | Path, what: str, *, param: str | None = None, data: bytes | None = None
) -> object:
    """Parse a JSON input (read from `path`, or `data` already read from it) within the
    json-bytes and json-depth limits; every failure is one QtoolError line."""
    path = Path(path)
    if data is None:
        regular_file(path, what, param=param)
        limits.check("json_bytes", path.stat().st_size, f"{what} {path}", param=param)
        data = path.read_bytes()
    else:
        limits.check("json_bytes", len(data), f"{what} {path}", param=param)
    try:
        value = json.loads(data)
    except RecursionError:
        raise limits.LimitExceeded(
            f"{what} {path} nests deeper than Python's parser allows, over the json-depth "
            f"limit of {limits.current().json_depth}",
            limit="json_depth",
            param=param,
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise QtoolError(f"{what} {path} is not JSON ({exc})", param=param) from exc
    limits.check("json_depth", json_depth(data), f"the nesting of {what} {path}", param=param)
    return value


def json_depth(data: bytes | str) -> int:
    """Nesting depth of well-formed JSON text (`[1, {"a": 2}]` is 2), from its brackets
    outside strings: numpy over the bracket and quote positions, so a manifest of 100 000
    CRC values costs about a millisecond (a walk of the parsed objects costs ten)."""
    raw = np.frombuffer(data.encode() if isinstance(data, str) else data, dtype=np.uint8)
    quotes = np.flatnonzero(raw == 0x22)
    after_backslash = np.flatnonzero((quotes > 0) & (raw[np.maximum(quotes - 1, 0)] == 0x5C))
    if after_backslash.size:  # a quote after an odd run of backslashes is inside a string
        keep = np.ones(quotes.size, dtype=bool)
        for i in after_backslash.tolist():
            keep[i] = _backslashes_before(raw, int(quotes[i])) % 2 == 0
        quotes = quotes[keep]
    opens = np.flatnonzero((raw == 0x5B) | (raw == 0x7B))
    closes = np.flatnonzero((raw == 0x5D) | (raw == 0x7D))
    where = np.concatenate([opens, closes])
    step = np.concatenate([np.ones(opens.size, np.int64), -np.ones(closes.size, np.int64)])
    order = np.argsort(where, kind="stable")
    where, step = where[order], step[order]
    outside = np.searchsorted(quotes, where) % 2 == 0  # an even count of quotes before it
    return int(np.cumsum(step[outside]).max(initial=0))


def _backslashes_before(raw: np.ndarray, pos: int) -> int:
    count = 0
    while pos - count - 1 >= 0 and raw[pos - count - 1] == 0x5C:
        count += 1
    return count
