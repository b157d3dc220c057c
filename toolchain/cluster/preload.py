"""Run by each local worker process at start (Dask's `preload`): ignore SIGINT there, and
keep the worker's own log off the terminal.

Ctrl-C at a terminal reaches the whole process group, workers included; the client process
handles it (cancels the tasks, stops the cluster), so the workers need not print their own
KeyboardInterrupt tracebacks while being stopped. A local worker shares the terminal's
stderr, and when the client stops the scheduler under a heartbeat in flight the worker logs
"Failed to communicate with scheduler" at ERROR with a traceback (seen in CI after a Ctrl-C):
no news to the user, and anything a task raises reaches the client as its exception anyway,
so the worker's `distributed` log is silenced.
"""

from __future__ import annotations

import logging
import signal
import threading


def dask_setup(worker) -> None:
    logging.getLogger("distributed").setLevel(logging.CRITICAL + 1)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
