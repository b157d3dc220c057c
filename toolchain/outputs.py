"""Every file qtool writes goes through here: checked first, then written atomically.

Rules kept in one place: an output never equals an input or another output of the same
call; an existing output is replaced only with `force`, and never a file by a folder or the
reverse; a file appears whole under its final name or not at all (temp file beside it, then
`os.replace`). Temp files carry a recognisable name (`.NAME.qtool-tmp-XXXX`) in the output's
own folder, so a killed run leaves nothing under a final name and its leftovers are easy to
find.

A leaf module: every part of qtool (models/ and exporters/ included) may import it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO

import numpy as np

from qtool.errors import QtoolError

TEMP_MARK = ".qtool-tmp-"


def temp_prefix(out: Path) -> str:
    """Prefix of the temp files and staging folders of `out` (hidden, recognisable)."""
    return f".{out.name[:120]}{TEMP_MARK}"


# --- checks before any work ------------------------------------------------------------------


def check_output_path(
    out: str | Path,
    force: bool = False,
    inputs: Iterable[str | Path | None] = (),
    *,
    kind: str = "file",
    param: str | None = None,
) -> Path:
    """Refuse to overwrite an input, an existing output without `force`, or a file with a
    folder (and the reverse). `kind` is "file" or "dir" (what will be written)."""
    out = Path(out)
    for src in inputs:
        if src is None:
            continue
        src = Path(src)
        if _same_or_inside(out, src):
            what = "is the input" if _same(out, src) else "holds the input"
            raise QtoolError(
                f"output {out} {what} {src}; inputs are never overwritten: "
                "choose another output path",
                param=param,
            )
    if out.exists() or out.is_symlink():
        if not force:
            raise QtoolError(
                f"output {out} already exists: choose another path or pass --force", param=param
            )
        if kind == "file" and out.is_dir():
            raise QtoolError(f"output {out} is a folder; give a file path", param=param)
        if kind == "dir" and not out.is_dir():
            raise QtoolError(
                f"output {out} is a file; a bundle folder cannot replace it", param=param
            )
    parent = out.parent
    if not parent.exists():
        raise QtoolError(f"output folder {parent} does not exist: create it first", param=param)
    if not parent.is_dir():
        raise QtoolError(f"output folder {parent} is not a folder", param=param)
    return out


def check_distinct(outputs: dict[str, str | Path | None]) -> None:
    """Two outputs of one call must not be the same file (e.g. --out and --manifest)."""
    seen: dict[Path, str] = {}
    for name, path in outputs.items():
        if path is None:
            continue
        key = Path(os.path.abspath(path))
        if Path(path).exists():
            key = Path(path).resolve()
        if key in seen:
            raise QtoolError(
                f"{seen[key]} and {name} name the same file {path}; give each its own path",
                param=name,
            )
        seen[key] = name


def _same(out: Path, src: Path) -> bool:
    try:
        return out.exists() and src.exists() and out.samefile(src)
    except OSError:
        return False


def _same_or_inside(out: Path, src: Path) -> bool:
    """True when writing `out` would replace `src` or a folder holding it."""
    if not src.exists():
        return False
    if out.exists():
        try:
            if out.samefile(src):
                return True
        except OSError:
            pass
    try:
        resolved_out = out.resolve()
        return resolved_out == src.resolve() or resolved_out in src.resolve().parents
    except OSError:
        return False


# --- writing ---------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(out: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `out`; on success rename it over `out`, else delete it."""
    out = Path(out)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(out), dir=out.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, out)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def open_atomic(out: str | Path) -> Iterator[IO[bytes]]:
    """`with open_atomic(path) as fh:` streams into a temp file renamed over `path`."""
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        yield fh


def atomic_write(out: str | Path, data: bytes | bytearray | str | Callable[[Path], None]) -> Path:
    """Write bytes, text or whatever `data(path)` writes to a path, atomically."""
    with atomic_path(out) as tmp:
        if callable(data):
            data(tmp)
        elif isinstance(data, str):
            tmp.write_text(data)
        else:
            tmp.write_bytes(data)
    return Path(out)


def write_json(out: str | Path, payload: object) -> Path:
    return atomic_write(out, json.dumps(to_jsonable(payload), indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def staging_dir(out: str | Path) -> Iterator[Path]:
    """A fresh folder beside `out` to build a multi-file output in; removed on any exit."""
    out = Path(out)
    staging = Path(tempfile.mkdtemp(prefix=temp_prefix(out), dir=out.parent))
    try:
        yield staging
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def replace_dir(staging: Path, out: Path) -> None:
    """Move a finished staging folder to `out`, replacing an existing folder there."""
    if not out.exists():
        os.replace(staging, out)
        return
    trash = Path(tempfile.mkdtemp(prefix=temp_prefix(out), dir=out.parent))
    try:
        os.replace(out, trash / "old")
        os.replace(staging, out)
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def to_jsonable(value):
    """numpy scalars/arrays and dataclasses to plain JSON types; NaN/Inf become strings."""
    if hasattr(value, "__dataclass_fields__"):
        return to_jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    return value
