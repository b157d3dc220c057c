"""Open a cluster: start an in-process LocalCluster, or connect to an existing scheduler.

`local:N` starts N worker processes (one thread each, no dashboard, listening on 127.0.0.1
only) and stops them on close. An address is only connected to: nothing is started on, or
stopped at, the user's cluster. A scheduler that cannot be reached, or that has no worker,
within `timeout` seconds is bad input (exit 2) with one line saying so.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from qtool.cluster.spec import DEFAULT_TIMEOUT, ClusterSpec
from qtool.errors import MissingExtra, QtoolError
from qtool.report import info

# A worker whose versions of these differ from the client's could score differently, so the
# results would depend on where a unit ran: such a cluster is refused before any work.
SAME_VERSIONS = ("qtool", "onnxruntime", "numpy", "onnx")
LOCAL_START_TIMEOUT = 120.0  # starting local worker processes on a loaded machine


@dataclass
class Opened:
    client: Any  # distributed.Client
    cluster: Any | None  # the LocalCluster we started, None for an address
    log_level: int = logging.NOTSET  # the `distributed` logger's level before we opened

    def close(self) -> None:
        """Close the client, then stop the local cluster (never a remote one). Our own
        cluster's teardown is silent: after a Ctrl-C its scheduler may log comms closed under
        it at CRITICAL, with a traceback, which is no news to the user."""
        if self.cluster is not None:
            logging.getLogger("distributed").setLevel(logging.CRITICAL + 1)
        try:
            if self.client is not None:
                self.client.close()
        finally:
            try:
                if self.cluster is not None:
                    self.cluster.close()
            finally:
                logging.getLogger("distributed").setLevel(self.log_level)


def require_distributed():
    try:
        import distributed
    except ModuleNotFoundError as exc:
        raise MissingExtra("distributed", "dask", "--cluster") from exc
    return distributed


def open_cluster(spec: ClusterSpec, timeout: float = DEFAULT_TIMEOUT) -> Opened:
    """A connected client (and the LocalCluster behind it, for local:N)."""
    if timeout <= 0:
        raise QtoolError(f"{timeout} s: give a positive timeout", param="cluster_timeout")
    distributed = require_distributed()
    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(logging.ERROR)  # the scheduler's and nannies' chatter is not qtool's output
    try:
        return _open(distributed, spec, timeout, level)
    except BaseException:
        logger.setLevel(level)
        raise


# Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536 (against fragmentation of
# long-lived workers); any value of it also turns off glibc's dynamic mmap threshold, so every
# ONNX Runtime session's large buffers are mmap'ed and faulted in afresh: +30 % CPU per trial
# on the ResNet-18 of benchmarks/distributed.py. Our local workers start without it.
WORKER_ENVIRON_UNSET = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


@contextmanager
def _sigint_deferred() -> Iterator[Callable[[], bool]]:
    """SIGINT blocked while local workers start, so a Ctrl-C cannot leave a half-started
    cluster behind; yields a function saying whether one arrived (consumed on exit). Threads
    and worker processes started meanwhile inherit the block, so the workers (and those the
    nannies restart later) never see the terminal's Ctrl-C: the client stops them."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "pthread_sigmask"
    ):
        yield lambda: False
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    arrived = False
    try:
        yield lambda: arrived
    finally:
        if signal.SIGINT in signal.sigpending():
            signal.sigwait({signal.SIGINT})  # take it while still blocked
            arrived = True
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _no_gc_diagnosis() -> None:
    """The in-process scheduler of a local cluster hooks a diagnosis into every garbage
    collection; a Ctrl-C that lands inside that hook is printed as "Exception ignored" and
    lost, and the campaign runs on (seen in CI). It only logs long GC pauses: turned off."""
    from distributed.gc import disable_gc_diagnosis

    disable_gc_diagnosis(force=True)


def _local_cluster(distributed, spec: ClusterSpec):
    return distributed.LocalCluster(
        n_workers=spec.local_workers,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
        # the scheduler's HTTP endpoints (health, metrics) stay on a free loopback port
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        silence_logs=logging.ERROR,
        preload=["qtool.cluster.preload"],
    )


def _open(distributed, spec: ClusterSpec, timeout: float, level: int) -> Opened:
    import dask

    if spec.address is None:
        with _sigint_deferred() as interrupted, dask.config.set({WORKER_ENVIRON_UNSET: None}):
            cluster = _local_cluster(distributed, spec)
            opened = Opened(None, cluster, level)
            try:
                opened.client = distributed.Client(
                    cluster, set_as_default=False, timeout=LOCAL_START_TIMEOUT
                )
            except BaseException:
                opened.close()
                raise
        if interrupted():  # Ctrl-C while the workers started: stop them, then interrupt
            opened.close()
            raise KeyboardInterrupt
        _no_gc_diagnosis()
        return opened
    try:
        client = distributed.Client(spec.address, timeout=timeout, set_as_default=False)
    except OSError as exc:  # refused, unreachable, timed out (TimeoutError is an OSError)
        why = _first_line(exc)
        why = "" if why.startswith("Timed out") else f" ({why})"
        raise QtoolError(
            f"cannot reach the Dask scheduler at {spec.address} within {timeout:g} s{why}; "
            "start it (dask scheduler) or check the address",
            param="cluster",
        ) from None
    opened = Opened(client, None, level)
    try:
        _check_workers(client, spec, timeout)
    except BaseException:
        opened.close()
        raise
    return opened


def _check_workers(client, spec: ClusterSpec, timeout: float) -> None:
    """At least one worker, each with the client's versions of the packages that score."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError):
        raise QtoolError(
            f"the Dask scheduler at {spec.address} has no workers after {timeout:g} s; start "
            "some (dask worker ADDRESS --nthreads 1) with qtool installed",
            param="cluster",
        ) from None
    here = {name: _version(name) for name in SAME_VERSIONS}
    versions = client.get_versions(packages=list(SAME_VERSIONS))
    for address, record in (versions.get("workers") or {}).items():
        packages = record.get("packages", {}) if isinstance(record, dict) else {}
        for name, mine in here.items():
            theirs = packages.get(name)
            if theirs != mine:
                raise QtoolError(
                    f"Dask worker {address} has {name} {theirs or 'not installed'}, this client "
                    f"{mine}; install the same versions on every worker (pip install "
                    "'qtool[dask]' from the same source) so results do not depend on where "
                    "units run",
                    param="cluster",
                )
    trimmed = [a for a, v in client.run(_trim_threshold).items() if v is not None]
    if trimmed:
        info(
            f"{len(trimmed)} Dask worker(s) run with MALLOC_TRIM_THRESHOLD_ set (Dask's nanny "
            "default), which costs ONNX Runtime about 30 % CPU per trial; set "
            "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_ to null in their Dask "
            "config (e.g. ~/.config/dask/qtool.yaml) and restart them"
        )


def _trim_threshold() -> str | None:
    """On a worker: its MALLOC_TRIM_THRESHOLD_, if set."""
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
