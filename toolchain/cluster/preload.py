"""Run by each local worker process at start (Dask's `preload`): ignore SIGINT there.

Ctrl-C at a terminal reaches the whole process group, workers included; the client process
handles it (cancels the tasks, stops the cluster), so the workers need not print their own
KeyboardInterrupt tracebacks while being stopped.
"""

from __future__ import annotations

import signal
import threading


def dask_setup(worker) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
