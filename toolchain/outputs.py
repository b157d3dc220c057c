"""Every file qtool writes goes through here: checked first, then written atomically.

Rules kept in one place: an output never equals an input or another output of the same
call; an existing output is replaced only with `force`, and never a file by a folder or the
reverse; its folder must exist and take a new file (checked before any work, by creating
and removing a temp file there); a file appears whole under its final name or not at all
(temp file beside it, then `os.replace`).

Temp files and staging folders carry a recognisable name in the output's own folder:
`.NAME.qtool-tmp-HOST-PID-XXXX` (HOST: 6 hex digits of this host's name). They are removed
on any exit that runs `finally` blocks (the CLI turns SIGTERM/SIGHUP into an exception for
that); after a SIGKILL or a power cut, the next write of the same output removes the
leftovers of processes of this host that no longer run (`sweep_stale`).

Several outputs that belong together (a flipped model and its manifest) are staged whole,
then renamed in a fixed order under an exclusive lock on their folders (`commit_together`),
so two processes writing the same pair cannot interleave their renames.

A leaf module: every part of qtool (models/ and exporters/ included) may import it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO

import numpy as np

from qtool.errors import QtoolError, option

TEMP_MARK = ".qtool-tmp-"
NAME_MAX = 255  # bytes of one file name on Linux/macOS file systems
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def temp_prefix(out: Path) -> str:
    """Prefix of the temp files and staging folders of `out` (hidden, recognisable, with
    this host and process, so leftovers of dead processes can be told apart)."""
    return f"{stale_prefix(out)}{HOST_TAG}-{os.getpid()}-"


def stale_prefix(out: Path) -> str:
    """What every temp name of `out` starts with, whichever process made it."""
    return f".{out.name[:120]}{TEMP_MARK}"


def sweep_stale(folder: Path, prefix: str) -> list[Path]:
    """Remove temp files/folders named `prefix`HOST-PID-... in `folder` whose process (on
    this host) no longer runs: the leftovers of a killed run. Returns what was removed."""
    removed = []
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(prefix)]
    except OSError:
        return removed
    for entry in entries:
        host, _, rest = entry.name[len(prefix) :].partition("-")
        pid_text = rest.partition("-")[0]
        if host != HOST_TAG or not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            continue
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _unwritable(exc: OSError, folder: Path, what: str) -> QtoolError:
    reason = exc.strerror or type(exc).__name__
    if exc.errno == errno.ENAMETOOLONG:
        return QtoolError(f"cannot write {what}: the name is too long ({reason})")
    return QtoolError(f"cannot write {what} in {folder}: {reason}; choose a writable folder")


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
    if any(len(os.fsencode(part)) > NAME_MAX for part in out.parts):
        raise QtoolError(
            f"output path {str(out)[:40]}... has a name over {NAME_MAX} bytes; give shorter names",
            param=param,
        )
    try:
        return _check_output_path(out, force, inputs, kind, param)
    except OSError as exc:  # a path too long, a folder we may not search, an I/O error
        error = _unwritable(exc, out.parent, f"output {out}")
        error.param = param
        raise error from exc


def _check_output_path(
    out: Path, force: bool, inputs: Iterable[str | Path | None], kind: str, param: str | None
) -> Path:
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
                f"output {out} already exists: choose another path or pass {option('force')}",
                param=param,
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
    _probe_writable(out, param)
    return out


def _probe_writable(out: Path, param: str | None) -> None:
    """Create and remove a temp file beside `out`: a read-only, immutable or full folder is
    refused before any work, not after it."""
    try:
        with temp_entry(out, "file"):
            pass
    except QtoolError as exc:
        exc.param = param
        raise


def check_distinct(outputs: dict[str, str | Path | None]) -> None:
    """Two outputs of one call must not be the same file (e.g. --out and --manifest)."""
    seen: dict[Path, str] = {}
    for name, path in outputs.items():
        if path is None:
            continue
        key = Path(os.path.realpath(path))  # symlinks followed; never raises
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
def temp_entry(out: Path, kind: str = "file") -> Iterator[Path]:
    """A new, empty temp file (mode 0600) or folder (0700) beside `out`, named with
    `temp_prefix(out)`, removed on any exit. It is owned (and so removed) from before it is
    created, so a signal at any instant leaves nothing; a killed run's is swept later."""
    sweep_stale(out.parent, stale_prefix(out))
    path, owned = None, False
    try:
        for _ in range(100):
            path, owned = out.parent / f"{temp_prefix(out)}{secrets.token_hex(4)}", True
            try:
                if kind == "dir":
                    os.mkdir(path, 0o700)
                else:
                    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                break
            except FileExistsError:
                owned = False
            except OSError as exc:
                raise _unwritable(exc, out.parent, f"output {out}") from exc
        else:
            raise QtoolError(f"cannot make a temp name beside {out}")
        yield path
    finally:
        if owned:
            _remove(path)


def _remove(path: Path) -> None:
    """Remove a temp file or folder, finishing even if a signal interrupts the removal."""
    pending = None
    for _ in range(10):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            break
        except KeyboardInterrupt as exc:  # the signal is re-raised once the temp is gone
            pending = exc
    if pending is not None:
        raise pending


def _replace(tmp: Path, out: Path) -> None:
    try:
        os.replace(tmp, out)
    except OSError as exc:
        raise _unwritable(exc, out.parent, f"output {out}") from exc


@contextlib.contextmanager
def staged_file(out: str | Path) -> Iterator[Path]:
    """A temp path beside `out`, removed on exit unless it was renamed (`commit_together`)."""
    with temp_entry(Path(out), "file") as tmp_path:
        yield tmp_path


@contextlib.contextmanager
def atomic_path(out: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `out`; on success rename it over `out`, else delete it."""
    out = Path(out)
    with staged_file(out) as tmp_path:
        yield tmp_path
        _replace(tmp_path, out)


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
            return Path(out)
        try:
            if isinstance(data, str):
                tmp.write_text(data)
            else:
                tmp.write_bytes(data)
        except OSError as exc:  # a full disk or a quota: one line, and the temp file goes
            raise _unwritable(exc, tmp.parent, f"output {out}") from exc
    return Path(out)


def write_json(out: str | Path, payload: object) -> Path:
    return atomic_write(out, json.dumps(to_jsonable(payload), indent=2, sort_keys=False) + "\n")


def commit_together(pairs: list[tuple[Path, Path]]) -> None:
    """Rename staged files (temp, final) in the given order, as one unit.

    The renames run under an exclusive lock (flock) on each final file's folder, taken in a
    fixed order, so two processes committing the same outputs cannot interleave: the pair
    on disk always comes from one process. A reader that takes no lock can see, for the
    instant between two renames, the new first file beside the old second one. After the
    renames each final name is checked to be the file this process staged.
    """
    folders = sorted({os.path.realpath(final.parent) for _, final in pairs})
    with contextlib.ExitStack() as stack:
        for folder in folders:
            fd = os.open(folder, os.O_RDONLY)
            stack.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        inodes = [(final, os.stat(tmp).st_ino) for tmp, final in pairs]
        for tmp, final in pairs:
            _replace(tmp, final)
        for final, inode in inodes:
            if os.stat(final).st_ino != inode:
                raise QtoolError(f"{final} was replaced by another process while it was written")


@contextlib.contextmanager
def staging_dir(out: str | Path) -> Iterator[Path]:
    """A fresh folder beside `out` to build a multi-file output in; removed on any exit."""
    with temp_entry(Path(out), "dir") as staging:
        yield staging


def replace_dir(staging: Path, out: Path) -> None:
    """Move a finished staging folder to `out`, replacing an existing folder there."""
    if not out.exists():
        _replace(staging, out)
        return
    with temp_entry(out, "dir") as trash:
        os.replace(out, trash / "old")
        _replace(staging, out)


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
