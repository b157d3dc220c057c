"""Re-verification while serving: the bytes the server holds and the bundle on disk.

Every `period` seconds (and on demand, `check`) the guard compares
  - memory: the sha256 of every model byte the server holds with the verified manifest;
  - disk: the bundle folder, with `verify` (its signature too, given a trust list), and its
    manifest.json with the one verified at start, byte for byte.
On any mismatch inference stops at once (the server answers 503), the changed tensors are
logged (with element and bit when the bundle has ECC parity), and the guard recovers in the
same pass when it can: it repairs the disk copy from the parity (when allowed; the repaired
files must match the signed manifest's sha256), then reloads: reads and verifies the bundle
again and builds a new session from those bytes. Until a reload succeeds it stays at 503 and
retries each period (e.g. after an operator restored the files).

What it cannot see: the copy ONNX Runtime made of the weights when it built the session
(folded and pre-packed). It checks the bytes that session was built from, and the disk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qtool.deploy.verified import VerifiedModel, load_verified
from qtool.deploy.verify import TensorChange, VerifyResult, changed_tensors, verify
from qtool.errors import QtoolError, WorkFailed
from qtool.serving.model import ServedModel

MAX_EVENTS = 100
MAX_LISTED = 8  # changed tensors named per log line


@dataclass(frozen=True)
class GuardEvent:
    at: float  # time.time()
    kind: str  # "mismatch", "repaired", "restored", "unrecovered"
    detail: str


def describe_tensors(changes: list[TensorChange]) -> str:
    """'w (blocks 0; element 123 bit 20), b (...)' for a log line."""
    parts = []
    for t in changes[:MAX_LISTED]:
        bits = ", ".join(f"element {b.element} bit {b.bit}" for b in t.bits[:4])
        blocks = ",".join(str(b) for b in t.blocks[:6])
        parts.append(f"{t.name} (4 KiB blocks {blocks or '-'}{'; ' + bits if bits else ''})")
    more = f" and {len(changes) - MAX_LISTED} more" if len(changes) > MAX_LISTED else ""
    return ", ".join(parts) + more


def describe_result(result: VerifyResult) -> str:
    found = []
    if result.tensors:
        found.append(f"changed tensors {describe_tensors(result.tensors)}")
    named = {t.file for t in result.tensors}
    found += [f"{f} changed" for f in result.changed_files if f not in named]
    found += [f"{f} missing" for f in result.missing_files]
    found += [f"{f} not in the manifest" for f in result.unlisted_files]
    return "; ".join(found) or "differs from its manifest"


class Guard:
    """Holds the served model, says whether it may answer, and keeps it verified."""

    def __init__(
        self,
        folder: Path,
        served: ServedModel,
        build: Callable[[VerifiedModel], ServedModel],
        *,
        trust: dict | None = None,
        period: float | None = 60.0,
        repair: bool = True,
        log: logging.Logger | None = None,
    ):
        self.folder = Path(folder)
        self.current = served
        self.build = build
        self.trust = trust
        self.period = period
        self.repair = repair
        self.log = log or logging.getLogger("qtool.serve")
        self.manifest_sha256 = served.verified.manifest_sha256
        self.ready = True
        self.epoch = 0  # +1 at every detection: answers computed across one are withheld
        self.events: deque[GuardEvent] = deque(maxlen=MAX_EVENTS)
        self.checks = {"ok": 0, "mismatch": 0}
        self.repairs = 0
        self.reloads = 0
        self.last_check_at = time.time()
        self.last_check_seconds = 0.0
        self.last_mismatch_at = 0.0
        self.last_repaired_at = 0.0
        self.last_restored_at = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- schedule ------------------------------------------------------------------------

    def start(self) -> None:
        if self.period and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="qtool-reverify", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.check()
            except Exception:  # a failed check must never end re-verification
                self.log.exception("re-verification pass failed; retrying next period")

    # --- one pass ------------------------------------------------------------------------

    def check(self) -> bool:
        """Verify memory and disk once, recover if needed; return whether it may answer."""
        with self._lock:
            start = time.perf_counter()
            problems, disk = self._inspect()
            self.last_check_at = time.time()
            self.last_check_seconds = time.perf_counter() - start
            if not problems:
                self.checks["ok"] += 1
                if not self.ready:
                    self._reload()
                return self.ready
            self.checks["mismatch"] += 1
            if self.ready:
                self.ready = False
                self.epoch += 1
                self.last_mismatch_at = time.time()
                self._event("mismatch", "; ".join(problems) + "; answering 503 until restored")
            disk_ok = disk is not None and (disk.intact or self._repair())
            if not (disk_ok and self._reload()):
                self._event("unrecovered", "still unverified; restore the bundle's files")
            return self.ready

    def _inspect(self) -> tuple[list[str], VerifyResult | None]:
        problems = []
        held = self.current.verified
        changed = held.changed_files()
        if changed:
            tensors = changed_tensors(held.manifest, {f: held.files[f] for f in changed})
            problems.append(
                f"memory: the held bytes of {', '.join(changed)} changed "
                f"({describe_tensors(tensors) or 'outside the tensors'})"
            )
        try:
            result = verify(self.folder, trust=self.trust)
        except (QtoolError, WorkFailed) as exc:  # signature refused, manifest gone or broken
            return [*problems, f"disk: {exc}"], None
        if result.manifest_sha256 != self.manifest_sha256:
            return [*problems, "disk: manifest.json is not the one verified at start"], None
        if not result.intact:
            problems.append(f"disk: {describe_result(result)}")
        return problems, result

    def _repair(self) -> bool:
        if not self.repair or not self.current.verified.manifest.get("ecc"):
            return False
        try:
            result = verify(self.folder, do_repair=True, trust=self.trust)
        except (QtoolError, WorkFailed) as exc:
            self.log.warning("repair from the ECC parity failed: %s", exc)
            return False
        if not result.intact:
            self.log.warning("repair from the ECC parity failed: %s", describe_result(result))
            return False
        self.repairs += 1
        self.last_repaired_at = time.time()
        self._event("repaired", f"restored {', '.join(result.repaired_files)} from the ECC parity")
        return True

    def _reload(self) -> bool:
        try:
            verified = load_verified(self.folder, self.trust)
            if verified.manifest_sha256 != self.manifest_sha256:
                raise WorkFailed("the bundle on disk is no longer the one verified at start")
            served = self.build(verified)
        except (QtoolError, WorkFailed) as exc:
            self.log.warning("reload refused: %s", exc)
            return False
        self.current = served
        self.reloads += 1
        self.ready = True
        self.last_restored_at = time.time()
        self._event("restored", "reloaded a verified copy; answering again")
        return True

    def _event(self, kind: str, detail: str) -> None:
        self.events.append(GuardEvent(time.time(), kind, detail))
        level = logging.INFO if kind in ("repaired", "restored") else logging.ERROR
        self.log.log(level, "%s: %s", kind, detail)
