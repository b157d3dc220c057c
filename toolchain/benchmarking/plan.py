"""What a bench measures and how: one typed plan, checked before any session is built.

The plan holds typed values only (lists of ints, names, numbers); parsing "1,32" is the
command's job. A bad value is a QtoolError naming the plan field as `param`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from qtool import limits
from qtool.errors import QtoolError
from qtool.runtimes.energy import ENERGY_METHODS, MIN_RAPL_WINDOW_S
from qtool.runtimes.providers import DEFAULT_PRECISION, PRECISIONS
from qtool.runtimes.session import OPT_LEVELS

DEFAULT_SECONDS = 3.0  # per configuration, when neither runs nor seconds is given
DEFAULT_WARMUP = 10
DEFAULT_THREAD_CHECK_S = 0.3  # back-to-back calls per configuration to see the threads used
INTER_OP_THREADS = 1  # make_session's default: one op at a time, threads inside each op
SPINNING_NOTE = {
    False: "thread spinning off (session.intra_op/inter_op.allow_spinning=0): idle ORT threads "
    "sleep instead of burning CPU outside the timed calls",
    True: "thread spinning on: idle ORT threads spin after each call; energy windows run calls "
    "back to back and take all of the process's CPU time (and RAPL energy), so the spinning "
    "is counted",
}


@dataclass(frozen=True)
class BenchPlan:
    """Every setting of one bench: the configurations (threads x batch, each measuring every
    model on every provider interleaved), how long each is measured, how energy is taken,
    the precision asked of every provider, and what the report keeps.

    `runs` is the number of measured rounds per configuration (each model runs once per
    round); `seconds` measures rounds for that long instead (DEFAULT_SECONDS when neither is
    given). Energy (unless "off") is taken after each configuration's latency rounds, over
    `energy_rounds` windows per model of >= `energy_window_s` seconds of back-to-back calls.
    `analytic_energy` adds, per model, the analytic figure (operation counts x a 45 nm table,
    qtool.runtimes.analytic_energy), reported as its own kind beside the measured one.
    """

    batches: list[int] = field(default_factory=lambda: [1])
    threads: list[int] = field(default_factory=lambda: [1])
    providers: list[str] = field(default_factory=lambda: ["cpu"])
    precision: str = DEFAULT_PRECISION  # fp32: reduced precision forbidden; auto: provider's
    runs: int | None = None
    seconds: float | None = None
    warmup: int = DEFAULT_WARMUP
    energy: str = "auto"  # one of ENERGY_METHODS: measured (rapl) or estimated (CPU time)
    analytic_energy: bool = False  # also the analytic figure per model (never mixed with them)
    cpu_watts_per_core: float | None = None
    energy_window_s: float = MIN_RAPL_WINDOW_S
    energy_rounds: int = 2
    idle_seconds: float = 1.0
    allow_short_rapl_windows: bool = False  # tests on a fake powercap tree only
    powercap_root: str | Path | None = None
    opt_level: str = "all"
    spinning: bool = False
    bootstrap_resamples: int = 2000
    seed: int = 0
    raw_samples: bool = False  # keep every latency sample in the report (large)
    thread_check_s: float = DEFAULT_THREAD_CHECK_S
    max_accuracy_drop: float | None = None  # pp below the CPU provider, with data

    def measured_seconds(self) -> float | None:
        """Seconds per configuration: as given, or the default when runs is not given."""
        return DEFAULT_SECONDS if self.runs is None and self.seconds is None else self.seconds

    def check(self) -> None:
        """Refuse values that cannot be measured, naming the field."""
        _positive_ints(self.batches, "batches")
        _positive_ints(self.threads, "threads")
        limits.check("batch", max(self.batches), "the batch", param="batches")
        limits.check("threads", max(self.threads), "the thread count", param="threads")
        if not self.providers:
            raise QtoolError("give at least one execution provider", param="providers")
        if self.runs is not None and self.seconds is not None:
            raise QtoolError("give a number of runs or of seconds, not both", param="runs")
        if self.runs is not None and self.runs < 2:
            raise QtoolError(f"runs must be at least 2 (got {self.runs})", param="runs")
        if self.seconds is not None and not self.seconds > 0:
            raise QtoolError(f"seconds must be > 0 (got {self.seconds})", param="seconds")
        if self.warmup < 0:
            raise QtoolError(f"warm-up rounds must be >= 0 (got {self.warmup})", param="warmup")
        if self.energy not in ENERGY_METHODS:
            raise QtoolError(
                f"unknown energy method {self.energy!r}: use {', '.join(ENERGY_METHODS)}",
                param="energy",
            )
        if not self.energy_window_s > 0:
            raise QtoolError("energy windows need a positive length", param="energy_window")
        if self.energy_rounds < 1:
            raise QtoolError("energy needs at least one window per model", param="energy_rounds")
        if self.precision not in PRECISIONS:
            raise QtoolError(
                f"unknown precision {self.precision!r}: use {', '.join(PRECISIONS)}",
                param="precision",
            )
        if self.thread_check_s < 0:
            raise QtoolError("the thread check needs >= 0 seconds", param="thread_check_s")
        if self.max_accuracy_drop is not None and not self.max_accuracy_drop >= 0:
            raise QtoolError(
                "the accuracy budget is in percentage points and must be >= 0",
                param="max_accuracy_drop",
            )
        if self.opt_level not in OPT_LEVELS:
            raise QtoolError(
                f"unknown graph optimisation level {self.opt_level!r}: use {', '.join(OPT_LEVELS)}",
                param="opt_level",
            )

    def settings(self, providers: list[str], data: str | None) -> dict:
        """The settings a report records: the plan as run (resolved providers, seconds)."""
        out = asdict(self)
        for private in ("allow_short_rapl_windows", "powercap_root", "idle_seconds"):
            out.pop(private)
        out.update(
            providers=providers,
            seconds=self.measured_seconds(),
            data=data,
            inter_op_threads=INTER_OP_THREADS,
        )
        return out


def _positive_ints(values: list[int], param: str) -> None:
    if not values:
        raise QtoolError("needs at least one value", param=param)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise QtoolError(f"values must be integers >= 1 (got {values!r})", param=param)
