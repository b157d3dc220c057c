"""Energy of inference: RAPL counters where the machine has them, a labelled estimate elsewhere.

`rapl` reads Linux powercap (`/sys/class/powercap/intel-rapl:*`; AMD CPUs use the same
interface). Only package domains are used by default, and DRAM domains, where present, are
reported separately: psys contains package which contains core/uncore, so summing them would
count the same joules twice. Counters wrap at `max_energy_range_uj`; a window is short enough
(seconds) that it wraps at most once. RAPL measures the whole package (every process on it), so
energy is taken over windows of >= 1 s of back-to-back inferences, never per inference, and the
idle power measured over a short window while this process sleeps is subtracted; both the gross
and the idle figures are reported.

`estimate` is no measurement: process CPU time (all threads) over windows of back-to-back calls
x watts per physical core (a typical server CPU's TDP / its physical cores). Taking it over
windows, not per call, keeps CPU-clock reads out of the latency timing and counts CPU that
spinning worker threads burn between calls. It is labelled `estimated` with its formula
wherever it is shown, and under it the energy ratio of two models equals their CPU-time ratio.

The powercap root can be moved with QTOOL_POWERCAP_ROOT so tests can use a fake sysfs tree.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qtool.errors import QtoolError
from qtool.runtimes.timing import Contender

POWERCAP_ROOT_ENV = "QTOOL_POWERCAP_ROOT"
DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")
ZONE_PREFIXES = ("intel-rapl:", "amd-rapl:")  # intel-rapl-mmio:* duplicates package: skipped
ENERGY_METHODS = ("auto", "rapl", "estimate", "off")

# Intel Xeon Platinum 8280: 205 W TDP, 28 physical cores -> 7.32 W per busy core.
DEFAULT_TDP_W = 205.0
DEFAULT_PHYSICAL_CORES = 28
DEFAULT_CPU_WATTS_PER_CORE = round(DEFAULT_TDP_W / DEFAULT_PHYSICAL_CORES, 2)
WATTS_PER_CORE_SOURCE = (
    f"default {DEFAULT_CPU_WATTS_PER_CORE} W = {DEFAULT_TDP_W:.0f} W TDP / "
    f"{DEFAULT_PHYSICAL_CORES} physical cores of a typical server CPU (Xeon Platinum 8280 class)"
)
MIN_RAPL_WINDOW_S = 1.0
_HINT = "; use the estimate energy method"


class RaplError(QtoolError):
    """RAPL counters are missing or unreadable (bad environment for the rapl method: exit 2).
    Always about the energy method asked for, so it names that parameter."""

    def __init__(self, message: str) -> None:
        super().__init__(message, param="energy")


class RaplPermissionError(RaplError):
    """The counters exist but this user may not read them."""


def powercap_root(root: str | Path | None = None) -> Path:
    """The powercap root: the argument, else $QTOOL_POWERCAP_ROOT, else /sys/class/powercap."""
    if root is not None:
        return Path(root)
    env = os.environ.get(POWERCAP_ROOT_ENV)
    return Path(env) if env else DEFAULT_POWERCAP_ROOT


def permission_fix(root: Path) -> str:
    return (
        "since Linux 5.10 the RAPL counters are readable by root only: run as root, or "
        f"`sudo chmod o+r {root}/intel-rapl:*/energy_uj` (undone at reboot), "
        "or use the estimate energy method"
    )


def read_counter(path: Path, root: Path | None = None) -> int:
    """One integer from a sysfs file; an unreadable file becomes a RaplError saying the fix.

    Whether it is a permission problem is decided from the errno of the OSError, so the same
    message appears whatever made the open fail that way.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise RaplPermissionError(
                f"cannot read RAPL counter {path}: permission denied; "
                f"{permission_fix(root or path.parent.parent)}"
            ) from exc
        reason = exc.strerror or type(exc).__name__
        raise RaplError(f"cannot read RAPL counter {path}: {reason}{_HINT}") from exc
    try:
        return int(text.strip())
    except ValueError as exc:
        raise RaplError(
            f"RAPL counter {path} does not hold an integer ({text.strip()[:40]!r}){_HINT}"
        ) from exc


def wrap_delta(before: int, after: int, max_range: int) -> int:
    """Counter increase between two reads, allowing for one wrap-around at max_range."""
    delta = after - before
    if delta < 0:
        delta += max_range
    return delta


@dataclass
class RaplDomain:
    zone: str  # sysfs directory name, e.g. intel-rapl:0 or intel-rapl:0:2
    name: str  # contents of `name`: package-0, dram, ...
    kind: str  # "package" or "dram"
    energy_path: Path
    max_range_uj: int


def domain_kind(name: str) -> str | None:
    """package-N -> package, dram -> dram; psys, core, uncore -> None (they overlap package)."""
    if name.startswith("package"):
        return "package"
    if name == "dram":
        return "dram"
    return None


def discover_domains(root: str | Path | None = None) -> tuple[list[RaplDomain], list[str]]:
    """Package and DRAM domains under the powercap root, and the names of the skipped ones."""
    base = powercap_root(root)
    if not base.is_dir():
        raise RaplError(
            f"no powercap interface at {base} (no RAPL on this machine or in this VM){_HINT}"
        )
    domains: list[RaplDomain] = []
    skipped: list[str] = []
    seen: set[Path] = set()
    zones = sorted(p for p in base.iterdir() if p.name.startswith(ZONE_PREFIXES))
    for zone in zones:
        real = zone.resolve()
        if real in seen:
            continue
        seen.add(real)
        name_file = zone / "name"
        try:
            name = name_file.read_text().strip()
        except OSError:
            skipped.append(f"{zone.name} (unreadable name)")
            continue
        kind = domain_kind(name)
        if kind is None:
            skipped.append(f"{zone.name} ({name})")
            continue
        max_range = read_counter(zone / "max_energy_range_uj", base)
        domains.append(RaplDomain(zone.name, name, kind, zone / "energy_uj", max_range))
    if not any(d.kind == "package" for d in domains):
        found = ", ".join(skipped) or "none"
        raise RaplError(f"no RAPL package domain under {base} (zones found: {found}){_HINT}")
    return domains, skipped


@dataclass
class RaplSample:
    """Raw counter values (µJ) of every domain and the monotonic time they were read at."""

    values_uj: list[int]
    time_ns: int


class RaplReader:
    """Reads package (and dram) energy counters; joules between two samples, wrap-aware."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = powercap_root(root)
        self.domains, self.skipped = discover_domains(self.root)

    def sample(self) -> RaplSample:
        values = [read_counter(d.energy_path, self.root) for d in self.domains]
        return RaplSample(values, time.perf_counter_ns())

    def joules(self, before: RaplSample, after: RaplSample) -> dict[str, float]:
        """Energy per kind (package, dram) between two samples, summed over sockets."""
        out: dict[str, float] = {}
        for d, b, a in zip(self.domains, before.values_uj, after.values_uj, strict=True):
            out[d.kind] = out.get(d.kind, 0.0) + wrap_delta(b, a, d.max_range_uj) / 1e6
        return out

    def describe(self) -> str:
        used = ", ".join(f"{d.zone} ({d.name})" for d in self.domains)
        skipped = f"; not summed (they overlap package): {', '.join(self.skipped)}"
        return f"RAPL at {self.root}: {used}" + (skipped if self.skipped else "")


@dataclass
class IdlePower:
    """Average power per kind (W) while this process slept; subtracted from busy windows."""

    watts: dict[str, float]
    seconds: float


def measure_idle(reader: RaplReader, seconds: float = 1.0) -> IdlePower:
    before = reader.sample()
    time.sleep(seconds)
    after = reader.sample()
    elapsed = (after.time_ns - before.time_ns) / 1e9
    joules = reader.joules(before, after)
    return IdlePower({k: v / elapsed for k, v in joules.items()}, elapsed)


@dataclass
class EnergyWindow:
    """One window of back-to-back calls of one contender: its CPU time and, with RAPL, joules."""

    contender: int
    calls: int
    seconds: float
    cpu_s: float
    joules: dict[str, float] | None = None


def measure_window(
    contender: Contender,
    min_seconds: float,
    reader: RaplReader | None = None,
    index: int = 0,
) -> EnergyWindow:
    """Run one contender back to back for at least min_seconds; process CPU time (all threads,
    so spinning workers count too) and, given a reader, RAPL energy over exactly that span."""
    perf = time.perf_counter_ns
    fn, args = contender.call, contender.args
    cpu0 = time.process_time_ns()
    before = reader.sample() if reader is not None else None
    start = perf()
    end = start + int(min_seconds * 1e9)
    calls = 0
    while True:
        fn(*args)
        calls += 1
        if perf() >= end:
            break
    stop = perf()
    after = reader.sample() if reader is not None else None
    cpu1 = time.process_time_ns()
    if reader is not None:
        seconds = (after.time_ns - before.time_ns) / 1e9
        joules = reader.joules(before, after)
    else:
        seconds, joules = (stop - start) / 1e9, None
    return EnergyWindow(index, calls, seconds, (cpu1 - cpu0) / 1e9, joules)


def energy_windows(
    contenders: Sequence[Contender],
    min_seconds: float,
    rounds: int,
    seed: int,
    reader: RaplReader | None = None,
) -> tuple[list[EnergyWindow], list[list[int]]]:
    """`rounds` windows per contender, interleaved in a seeded order per round (returned)."""
    rng = np.random.default_rng([seed, 1])
    windows: list[EnergyWindow] = []
    orders: list[list[int]] = []
    for _ in range(rounds):
        order = rng.permutation(len(contenders)).tolist()
        for i in order:
            windows.append(measure_window(contenders[i], min_seconds, reader, i))
        orders.append(order)
    return windows, orders


def estimate_formula(watts_per_core: float) -> str:
    return (
        "estimated: energy per call = process CPU time (all threads, spinning included) over "
        f"windows of back-to-back calls / calls x {watts_per_core:g} W per core; not a "
        "measurement; the energy ratio between models equals their CPU-time ratio"
    )


def rapl_formula(idle: IdlePower | None) -> str:
    idle_text = (
        "minus idle power x window time"
        if idle is None
        else f"minus idle power ({_fmt_watts(idle.watts)}, measured {idle.seconds:.1f} s) x time"
    )
    return (
        "measured: RAPL package energy over windows of >= 1 s of back-to-back calls, "
        f"{idle_text}, / calls; whole-package counter (other processes on the CPU count too)"
    )


def _fmt_watts(watts: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f} W" for k, v in watts.items())


@dataclass
class EnergyPlan:
    """Which energy method a bench uses and why (auto records the reason for its choice)."""

    requested: str
    method: str  # "rapl", "estimate" or "off"
    reason: str
    watts_per_core: float = DEFAULT_CPU_WATTS_PER_CORE
    watts_per_core_source: str = WATTS_PER_CORE_SOURCE
    reader: RaplReader | None = field(default=None, repr=False)


def choose_energy(
    requested: str,
    watts_per_core: float | None = None,
    root: str | Path | None = None,
) -> EnergyPlan:
    """Resolve auto|rapl|estimate|off; rapl that cannot be read is bad input (exit 2)."""
    if requested not in ENERGY_METHODS:
        raise QtoolError(
            f"unknown energy method {requested!r}: use {', '.join(ENERGY_METHODS)}", param="energy"
        )
    if watts_per_core is not None and not watts_per_core > 0:
        raise QtoolError(
            f"watts per core must be > 0, got {watts_per_core}", param="cpu_watts_per_core"
        )
    wpc = DEFAULT_CPU_WATTS_PER_CORE if watts_per_core is None else float(watts_per_core)
    source = WATTS_PER_CORE_SOURCE if watts_per_core is None else f"{wpc:g} W per core as given"
    if requested == "off":
        return EnergyPlan(requested, "off", "energy not measured (method off)", wpc, source)
    if requested == "estimate":
        return EnergyPlan(requested, "estimate", "estimate asked for", wpc, source)
    try:
        reader = RaplReader(root)
        reader.sample()  # the first read tells whether we may read them at all
    except RaplError as exc:
        if requested == "rapl":
            raise
        return EnergyPlan(
            requested,
            "estimate",
            f"auto: RAPL not usable ({str(exc).removesuffix(_HINT)})",
            wpc,
            source,
        )
    return EnergyPlan(requested, "rapl", reader.describe(), wpc, source, reader)
