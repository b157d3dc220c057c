"""The local workers' preload: Ctrl-C ignored and the worker's own `distributed` log kept off
the terminal it shares with qtool (a heartbeat failing while the client stops the scheduler
logged an ERROR with a traceback after a Ctrl-C in CI)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import logging, signal
from qtool.cluster.preload import dask_setup
dask_setup(None)
assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
logging.basicConfig()
logging.getLogger("distributed.worker").error("Failed to communicate with scheduler")
print("done")
"""


def test_worker_ignores_ctrl_c_and_logs_nothing():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done" and done.stderr == ""
