"""How long jobs stop and keep their work: Ctrl-C, SIGTERM and time budgets.

A long job (the bit search, a campaign, ...) runs its loop inside `stop_on_signals()`: SIGINT
raises KeyboardInterrupt as usual and SIGTERM / SIGHUP raise `qtool.errors.Terminated` (a
KeyboardInterrupt, as the CLI's own handler does), so one `except KeyboardInterrupt` stops
the loop, and the job returns what it has, marked partial. Steps that must not be cut in
half (a flip applied and logged, a checkpoint written) run inside `deferred()`: a signal
arriving there is raised when the step is done.
A `Deadline` (`--time-budget`) is checked between steps and raises `OutOfTime`.

The CLI exits 130 after Ctrl-C (128 + the signal number after SIGTERM / SIGHUP), once the
partial outputs are written (the command re-raises the KeyboardInterrupt); a time budget
that runs out is a normal end (exit 0).
Signal handlers can only be set in the main thread; elsewhere the block runs unchanged.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from qtool.errors import Terminated

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class OutOfTime(Exception):
    """The time budget ran out (between two steps of a long job)."""


def signal_name(exc: BaseException) -> str:
    """SIGINT, SIGTERM or SIGHUP, for the partial-output reason."""
    if isinstance(exc, Terminated):
        return signal.Signals(exc.signum).name
    return "SIGINT"


@dataclass
class Deadline:
    """`seconds` from creation (None: no limit)."""

    seconds: float | None = None
    start: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def expired(self) -> bool:
        return self.seconds is not None and self.elapsed >= self.seconds

    def check(self) -> None:
        if self.expired:
            raise OutOfTime(f"time budget of {self.seconds:g} s reached")


class _State(threading.local):
    depth = 0
    pending: int | None = None


_state = _State()


def _raise_for(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt()
    raise Terminated(signum)


def _handler(signum: int, frame) -> None:
    if _state.depth:  # inside deferred(): raise once the step is done
        _state.pending = signum
        return
    _raise_for(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt, SIGTERM / SIGHUP Terminated in this block (main
    thread), unless inside `deferred()`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """A step no signal may cut in half; one that arrived meanwhile is raised after it."""
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        if not _state.depth and _state.pending is not None:
            signum, _state.pending = _state.pending, None
            _raise_for(signum)
