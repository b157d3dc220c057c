"""A real Dask cluster for the tests: `dask scheduler` and `dask worker` processes on
127.0.0.1 (free ports, no dashboard), started by the test and always stopped by it (in their
own process groups; an idle scheduler also ends itself after an hour, and its workers 60 s
later, should the test process be killed outright)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# workers as qtool advises (README): their nannies do not set MALLOC_TRIM_THRESHOLD_
DASK_CONFIG = """distributed:
  nanny:
    pre-spawn-environ:
      MALLOC_TRIM_THRESHOLD_: null
"""


def _start(args: list[str], log: Path) -> subprocess.Popen:
    config = log.parent / "dask-config"
    config.mkdir(exist_ok=True)
    (config / "qtool.yaml").write_text(DASK_CONFIG)
    with open(log, "ab") as fh:  # its own process group: stopping it stops its children
        return subprocess.Popen(
            [sys.executable, "-m", "dask", *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "DASK_CONFIG": str(config)},
        )


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


@contextmanager
def scheduler_and_workers(folder: Path, workers: int = 2):
    """Yields the scheduler address once `workers` single-thread workers have joined."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [
        _start(
            ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
             "--dashboard-address", "127.0.0.1:0", "--idle-timeout", "3600"],
            folder / "scheduler.log",
        )
    ]  # fmt: skip
    try:
        for i in range(workers):
            procs.append(
                _start(
                    ["worker", address, "--nthreads", "1", "--nworkers", "1", "--host",
                     "127.0.0.1", "--no-dashboard", "--death-timeout", "60", "--name", f"w{i}"],
                    folder / f"worker{i}.log",
                )
            )  # fmt: skip
        from distributed import Client

        with Client(address, timeout=60, set_as_default=False) as client:
            if workers:
                client.wait_for_workers(workers, timeout=120)
        yield address
    finally:
        _stop(procs)
