"""Map independent units over a Dask cluster: inputs sent once, results as tasks complete.

`UnitRunner.share(value)` scatters the inputs every unit needs (model bytes, data sets) to
every worker once (`broadcast=True`, so a worker that dies takes no only copy with it); the
tasks then carry only their units (a few numbers each) and return their small results. On a
worker, `worker_state(token, build)` builds what the units share (prepared models, sessions,
caches) once per worker process and thread, keyed by the inputs' token.

Faults of the cluster: a worker that dies mid-task has its tasks re-run on the others by the
scheduler (each unit is seeded by itself, so a re-run gives the same result); every task's
result is taken once, so no unit is lost or counted twice. A task that kills workers
`distributed.scheduler.allowed-failures` times (3 by default) fails the run. Ctrl-C (or any
error) cancels every outstanding task before it propagates.
"""

from __future__ import annotations

import hashlib
import itertools
import pickle
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from qtool.cluster.client import Opened, open_cluster
from qtool.cluster.spec import DEFAULT_TIMEOUT, ClusterSpec
from qtool.errors import QtoolError, WorkFailed

U = TypeVar("U")
T = TypeVar("T")

TASKS_PER_WORKER = 16  # chunks per worker: enough to balance load, few enough to be cheap
MAX_STATES = 4  # per-worker states kept (jobs x threads); older ones are dropped first

_counter = itertools.count()


def token_of(value: Any) -> str:
    """A content token for shared inputs (sha256 of their pickle)."""
    return hashlib.sha256(pickle.dumps(value, protocol=5)).hexdigest()[:24]


def chunked(units: Sequence[U], workers: int, per_worker: int = TASKS_PER_WORKER) -> list[list[U]]:
    """Consecutive chunks, about `per_worker` per worker (never empty)."""
    size = max(1, -(-len(units) // max(1, workers * per_worker)))
    return [list(units[i : i + size]) for i in range(0, len(units), size)]


class UnitRunner:
    """An open cluster that runs units; use as a context manager (closing stops a LocalCluster
    and forgets the workers' state; a remote cluster is left as it was)."""

    def __init__(self, spec: ClusterSpec, timeout: float = DEFAULT_TIMEOUT):
        self.spec = spec
        self.timeout = timeout
        self._opened: Opened | None = None
        self._shared: dict[str, Any] = {}  # token -> scattered future
        self.shared_bytes = 0  # pickled size of the inputs shared so far (sent once per worker)

    def __enter__(self) -> UnitRunner:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def client(self):
        if self._opened is None:
            self.open()
        assert self._opened is not None
        return self._opened.client

    def open(self) -> None:
        if self._opened is None:
            self._opened = open_cluster(self.spec, self.timeout)

    @property
    def workers(self) -> int:
        """Threads across the cluster's workers (units that can run at once)."""
        return max(1, sum(self.client.nthreads().values()))

    def share(self, value: Any, token: str | None = None) -> tuple[str, Any]:
        """Send `value` to every worker once; (token, future) to pass to the tasks."""
        token = token or token_of(value)
        if token not in self._shared:
            self.shared_bytes += len(pickle.dumps(value, protocol=5))
            self._shared[token] = self.client.scatter(value, broadcast=True, hash=False)
        return token, self._shared[token]

    def map(
        self,
        fn: Callable[[Any, list[U]], list[T]],
        shared: Any,
        units: Sequence[U],
        *,
        name: str,
        per_worker: int = TASKS_PER_WORKER,
    ) -> Iterator[T]:
        """`fn(shared, chunk)` for chunks of `units`, yielding each unit's result as its
        task completes (in completion order)."""
        from distributed import as_completed

        client = self.client
        chunks = chunked(units, self.workers, per_worker)
        batch = next(_counter)
        futures = [
            client.submit(fn, shared, chunk, key=f"qtool-{name}-{batch}-{i}", pure=False)
            for i, chunk in enumerate(chunks)
        ]
        try:
            for future, results in as_completed(futures, with_results=True, loop=client.loop):
                future.release()
                yield from results
        except BaseException as exc:
            client.cancel(futures, force=True)
            if type(exc).__name__ == "KilledWorker":
                raise WorkFailed(
                    f"a {name} task kept killing Dask workers ({exc}); the run was stopped"
                ) from None
            raise
        finally:
            del futures

    def close(self) -> None:
        opened, self._opened = self._opened, None
        if opened is None:
            return
        tokens = list(self._shared)
        self._shared.clear()
        try:
            if opened.cluster is None and tokens:
                opened.client.run(forget_states, tokens, on_error="ignore")
        except Exception:  # the remote workers may be gone; their state goes with them
            pass
        finally:
            opened.close()


# --- on the workers -----------------------------------------------------------------------

_STATES: OrderedDict[tuple[str, int], Any] = OrderedDict()
_LOCK = threading.Lock()


def worker_state(token: str, build: Callable[[], T]) -> T:
    """The state of job `token` in this process and thread, built on first use. Per thread,
    because units mutate it (a trial flips the model's bytes and puts them back)."""
    key = (token, threading.get_ident())
    with _LOCK:
        if key in _STATES:
            _STATES.move_to_end(key)
            return _STATES[key]
    state = build()
    with _LOCK:
        _STATES[key] = state
        while len(_STATES) > MAX_STATES:
            _STATES.popitem(last=False)
    return state


def forget_states(tokens: list[str]) -> int:
    """Drop the states of these jobs in this process (run on every worker at close)."""
    with _LOCK:
        keys = [k for k in _STATES if k[0] in tokens]
        for k in keys:
            del _STATES[k]
    return len(keys)


def traffic(client) -> dict[str, int]:
    """Dask's own byte counters, summed over the cluster: task messages client -> scheduler
    -> workers, completion messages back, and results and replicas served by workers. (The
    scattered inputs go through the scheduler's scatter call, outside these counters; Dask's
    size estimate of them is not their size: see `UnitRunner.shared_bytes`.)"""

    def scheduler_side(dask_scheduler=None) -> dict[str, int]:
        sent = sum(c.byte_count for c in dask_scheduler.stream_comms.values())
        return {"scheduler_to_workers": int(sent)}

    def worker_side(dask_worker=None) -> dict[str, int]:
        stream = dask_worker.batched_stream
        return {
            "workers_to_scheduler": int(stream.byte_count if stream is not None else 0),
            "served_by_workers": int(dask_worker.transfer_outgoing_bytes_total),
        }

    out = {"client_to_scheduler": int(client.scheduler_comm.byte_count)}
    out.update(client.run_on_scheduler(scheduler_side))
    for counts in client.run(worker_side).values():
        for k, v in counts.items():
            out[k] = out.get(k, 0) + v
    return out


def check_units(units: Sequence[Any], what: str) -> None:
    if not units:
        raise QtoolError(f"no {what} to run")
