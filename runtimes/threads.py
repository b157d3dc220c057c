"""How many threads a session really works on, measured rather than assumed.

A provider may keep thread pools of its own (OpenVINO has its own threading settings), so a
thread count asked of a session is checked by what the process does: over a window of
back-to-back calls, the CPU time each OS thread of this process accumulated (Linux
/proc/self/task/*/schedstat, nanoseconds; or .../stat, clock ticks) and the process CPU time
against wall time. A thread counts as busy when it ran for at least BUSY_SHARE of the window.

Pinned to N means: at most N threads other than the calling thread did work, and the process
kept at most N (+ CPU_SLACK) cores busy on average. The caller is set apart because it always
runs the Python and onnxruntime overhead of each call: the CPU provider computes on it (N=1:
the caller alone; N=2: the caller and one pool thread), a provider with its own pool computes
on its threads while the caller waits. More worker threads than N is what an unpinned pool
shows (e.g. OpenVINO on every core). The busy-thread count holds on a shared machine; the
CPU/wall average can only be lowered by other processes, so it catches over-use on an idle one.

Threads of the process that work without any call (a test runner's helper, a leftover pool
of another library) are not the session's: an idle window as long as the measured one,
taken just before it, finds them, and they are left out of both counts (`background`).
A window that is not pinned is measured once more over twice the time before it is reported:
a thread of the same process that happened to work during a short window (a garbage
collection, a progress bar, a test runner's helper) rarely does so twice, while a pool that
really uses more threads does every time.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BUSY_SHARE = 0.05  # of the window's wall time: a thread below it is not working for the calls
CPU_SLACK = 0.15  # process CPU per wall second may exceed the pinned count by this much
TASKS = Path("/proc/self/task")


@dataclass
class ThreadUse:
    """What a window of back-to-back calls cost in CPU time, per thread and in total."""

    calls: int
    wall_s: float
    cpu_s: float  # process CPU time over the window (every thread)
    busy_threads: int | None  # threads that ran >= BUSY_SHARE of the window (None: unknown)
    thread_cpu_s: list[float] = field(default_factory=list)  # per busy thread, largest first
    source: str = ""
    caller_cpu_s: float | None = None  # the calling thread's share of cpu_s
    background: int = 0  # threads busy without any call, left out of the counts

    @property
    def workers(self) -> int | None:
        """Busy threads other than the caller."""
        if self.busy_threads is None:
            return None
        caller_busy = (
            self.caller_cpu_s is not None and self.caller_cpu_s >= BUSY_SHARE * self.wall_s
        )
        return self.busy_threads - int(caller_busy)

    @property
    def cpu_per_wall(self) -> float:
        """Average number of cores the process kept busy during the window."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


def _thread_times() -> tuple[dict[str, float], str] | None:
    """CPU seconds per OS thread of this process, with where they came from (None off
    Linux)."""
    try:
        tids = [p.name for p in TASKS.iterdir()]
    except OSError:
        return None
    times: dict[str, float] = {}
    source = "/proc/self/task/*/schedstat"
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for tid in tids:
        try:
            times[tid] = int((TASKS / tid / "schedstat").read_text().split()[0]) / 1e9
            continue
        except (OSError, ValueError, IndexError):
            pass
        try:
            stat = (TASKS / tid / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            times[tid] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
            source = "/proc/self/task/*/stat (clock ticks)"
        except (OSError, ValueError, IndexError):
            continue  # the thread ended between listing and reading
    return times, source


def background_threads(seconds: float) -> set[str]:
    """Threads of this process that ran >= BUSY_SHARE of an idle window of `seconds`."""
    before = _thread_times()
    t0 = time.perf_counter()
    time.sleep(seconds)
    wall = time.perf_counter() - t0
    after = _thread_times()
    if before is None or after is None:
        return set()
    return {tid for tid, t in after[0].items() if t - before[0].get(tid, 0.0) >= BUSY_SHARE * wall}


def measure_thread_use(
    call: Callable[[], object],
    seconds: float = 0.3,
    min_calls: int = 3,
    background: set[str] | None = None,
) -> ThreadUse:
    """Run `call` back to back for about `seconds` (at least `min_calls` times) and account
    the CPU time of every thread of this process over that window, leaving out the
    `background` threads (see `background_threads`)."""
    caller = str(threading.get_native_id())
    background = (background or set()) - {caller}
    before = _thread_times()
    cpu0, t0 = time.process_time(), time.perf_counter()
    calls = 0
    while calls < min_calls or time.perf_counter() - t0 < seconds:
        call()
        calls += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    after = _thread_times()
    if before is None or after is None:
        return ThreadUse(calls, wall, cpu, None, [], "process CPU time only")
    spent = {tid: t - before[0].get(tid, 0.0) for tid, t in after[0].items()}
    cpu -= sum(spent.pop(tid, 0.0) for tid in background)
    busy = sorted((s for s in spent.values() if s >= BUSY_SHARE * wall), reverse=True)
    use = ThreadUse(calls, wall, max(cpu, 0.0), len(busy), busy, after[1], spent.get(caller))
    use.background = len(background)
    return use


def pinning_check(use: ThreadUse, threads: int) -> dict:
    """Whether the calls stayed within `threads` threads (see the module docstring). `pinned`
    is None when per-thread times could not be read."""
    cpu_ok = use.cpu_per_wall <= threads + CPU_SLACK
    workers = use.workers
    pinned = None if workers is None else (workers <= threads and cpu_ok)
    return {
        "threads": threads,
        "busy_threads": use.busy_threads,
        "busy_besides_caller": workers,
        "cpu_per_wall": round(use.cpu_per_wall, 3),
        "cpu_ms_per_call": round(1e3 * use.cpu_s / max(1, use.calls), 4),
        "wall_ms_per_call": round(1e3 * use.wall_s / max(1, use.calls), 4),
        "calls": use.calls,
        "background_threads_left_out": use.background,
        "pinned": pinned,
        "method": (
            f"CPU time per OS thread ({use.source}) over {use.wall_s:.2f} s of back-to-back "
            f"calls; busy = ran >= {BUSY_SHARE:.0%} of the window; pinned = busy threads "
            f"besides the caller <= {threads} and process CPU/wall <= {threads + CPU_SLACK:g}"
        ),
    }


def check_pinning(
    call: Callable[[], object], threads: int, seconds: float, background: bool = True
) -> dict:
    """pinning_check over a window of back-to-back calls (with `background`, threads busy in
    an idle window first are left out: not with spinning pools, whose own threads spin
    between calls), confirmed over a second window twice as long when the first says not
    pinned (see the module docstring)."""

    def idle(window: float) -> set[str]:
        return background_threads(window) if background else set()

    check = pinning_check(measure_thread_use(call, seconds, background=idle(seconds)), threads)
    if check["pinned"] is not False:
        return check
    long = 2 * seconds
    confirmed = pinning_check(measure_thread_use(call, long, background=idle(long)), threads)
    confirmed["windows"] = 2
    confirmed["first_window"] = {
        k: check[k] for k in ("busy_threads", "busy_besides_caller", "cpu_per_wall")
    }
    return confirmed
