"""Long jobs stop cleanly: signals become KeyboardInterrupt, critical steps finish first,
deadlines expire. Real signals sent to this process."""

from __future__ import annotations

import os
import signal
import time

import pytest

from qtool.errors import Terminated
from qtool.stopping import Deadline, OutOfTime, deferred, signal_name, stop_on_signals


def test_deadline_without_limit_never_expires():
    d = Deadline()
    d.check()
    assert not d.expired


def test_deadline_expires_and_says_its_budget():
    d = Deadline(0.01)
    time.sleep(0.02)
    assert d.expired
    with pytest.raises(OutOfTime, match="time budget of 0.01 s reached"):
        d.check()


def test_sigterm_is_a_keyboard_interrupt_named_sigterm():
    with pytest.raises(KeyboardInterrupt) as info, stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler raises before this ends
    assert isinstance(info.value, Terminated) and signal_name(info.value) == "SIGTERM"


def test_a_signal_inside_a_deferred_step_is_raised_after_it():
    done = []
    with pytest.raises(KeyboardInterrupt) as info, stop_on_signals():
        with deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            done.append("step finished")
    assert done == ["step finished"] and signal_name(info.value) == "SIGINT"


def test_handlers_are_restored_afterwards():
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
