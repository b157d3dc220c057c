"""Energy meters: the RAPL reader on a fake powercap tree, the labelled CPU-time estimate."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
from builders import conv_model, save
from click.testing import CliRunner

from qtool.benchmarking import BenchPlan, run_bench
from qtool.cli import main
from qtool.commands.bench_views import render_bench
from qtool.runtimes.energy import (
    POWERCAP_ROOT_ENV,
    RaplError,
    RaplPermissionError,
    RaplReader,
    choose_energy,
    discover_domains,
    estimate_formula,
    wrap_delta,
)

FAST = ["--runs", "5", "--warmup", "1", "--energy-window", "0.05", "--energy-rounds", "1"]


def write(path: Path, text: str) -> None:
    """Atomic like sysfs: a reader never sees a half-written value."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def make_zone(root: Path, zone: str, name: str, energy: int, max_range: int) -> Path:
    d = root / zone
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d


def fake_tree(root: Path) -> Path:
    """Two sockets, a core and dram sub-zone, a psys zone and an MMIO duplicate."""
    make_zone(root, "intel-rapl:0", "package-0", 1_000, 262_143_328_850)
    make_zone(root, "intel-rapl:0:0", "core", 500, 262_143_328_850)
    make_zone(root, "intel-rapl:0:2", "dram", 2_000, 65_712_999_613)
    make_zone(root, "intel-rapl:1", "package-1", 3_000, 262_143_328_850)
    make_zone(root, "intel-rapl:2", "psys", 9_000, 262_143_328_850)
    make_zone(root, "intel-rapl-mmio:0", "package-0", 7_000, 262_143_328_850)
    (root / "unrelated").mkdir()
    return root


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    result.text = " ".join(result.output.split())  # rich wraps lines at 80 columns
    return result


def test_wrap_delta():
    assert wrap_delta(100, 350, 1_000) == 250
    assert wrap_delta(900, 150, 1_000) == 250  # wrapped once at max range
    assert wrap_delta(5, 5, 1_000) == 0


def test_discovery_uses_package_and_dram_never_psys_or_core(tmp_path):
    domains, skipped = discover_domains(fake_tree(tmp_path))
    assert [(d.zone, d.kind) for d in domains] == [
        ("intel-rapl:0", "package"),
        ("intel-rapl:0:2", "dram"),
        ("intel-rapl:1", "package"),
    ]
    assert any("psys" in s for s in skipped) and any("core" in s for s in skipped)


def test_reader_sums_sockets_keeps_dram_apart_and_wraps(tmp_path, monkeypatch):
    root = fake_tree(tmp_path)
    monkeypatch.setenv(POWERCAP_ROOT_ENV, str(root))
    reader = RaplReader()  # root from the environment variable
    assert reader.root == root
    before = reader.sample()
    write(root / "intel-rapl:0" / "energy_uj", "2001000")  # +2 J
    write(root / "intel-rapl:1" / "energy_uj", "1000")  # wrapped: +max - 2000 µJ
    write(root / "intel-rapl:0:2" / "energy_uj", "502000")  # +0.5 J
    write(root / "intel-rapl:2" / "energy_uj", "999999999")  # psys: must not count
    after = reader.sample()
    joules = reader.joules(before, after)
    assert joules["package"] == pytest.approx(2.0 + (262_143_328_850 - 2_000) / 1e6)
    assert joules["dram"] == pytest.approx(0.5)
    assert "psys" in reader.describe() and "not summed" in reader.describe()


def test_no_package_domain_or_no_tree_is_a_clear_error(tmp_path):
    make_zone(tmp_path / "t", "intel-rapl:0", "psys", 0, 100)
    with pytest.raises(RaplError, match="no RAPL package domain"):
        RaplReader(tmp_path / "t")
    with pytest.raises(RaplError, match="no powercap interface"):
        RaplReader(tmp_path / "absent")
    plan = choose_energy("auto", None, tmp_path / "absent")
    assert plan.method == "estimate" and "RAPL not usable" in plan.reason


def test_unreadable_counter_that_is_not_a_permission_problem(tmp_path):
    root = fake_tree(tmp_path)
    (root / "intel-rapl:1" / "energy_uj").unlink()
    (root / "intel-rapl:1" / "energy_uj").mkdir()
    with pytest.raises(RaplError, match="Is a directory") as info:
        RaplReader(root).sample()
    assert not isinstance(info.value, RaplPermissionError)
    assert "use the estimate energy method" in str(info.value) and info.value.param == "energy"


def _as_nobody(fn) -> str:
    """Run fn() in a forked child that dropped root to uid 65534; returns what it returned."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_fd)
            os.setgid(65534)
            os.setuid(65534)
            text = fn()
        except BaseException as exc:  # noqa: BLE001 - report anything to the parent
            text = f"child failed: {type(exc).__name__}: {exc}"
        os.write(write_fd, text.encode())
        os._exit(0)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


@pytest.fixture
def denied_tree(tmp_path):
    """A fake tree whose energy_uj files this user (or uid 65534 when we are root) may not
    read. Lives in a world-traversable folder so an unprivileged child can reach it."""
    base = Path(tempfile.mkdtemp(prefix="qtool-rapl-"))
    try:
        base.chmod(0o755)
        root = fake_tree(base / "powercap")
        for zone in root.iterdir():
            zone.chmod(0o755)
            for f in zone.iterdir():
                f.chmod(0o000 if f.name == "energy_uj" else 0o644)
        root.chmod(0o755)
        save(conv_model(0), base / "m.onnx").chmod(0o644)
        yield root, base / "m.onnx"
    finally:
        shutil.rmtree(base)


def test_permission_denied_says_the_fix(denied_tree):
    root, _ = denied_tree

    def attempt() -> str:
        try:
            RaplReader(root).sample()
        except RaplPermissionError as exc:
            return f"permission: {exc}"
        except RaplError as exc:
            return f"other: {exc}"
        return "read fine"

    text = _as_nobody(attempt) if os.geteuid() == 0 else attempt()
    assert text.startswith("permission: "), text
    assert "permission denied" in text and "run as root" in text
    assert f"sudo chmod o+r {root}/intel-rapl:*/energy_uj" in text
    assert "use the estimate energy method" in text


def test_cli_rapl_permission_denied_exit_2_and_auto_falls_back(denied_tree):
    root, model = denied_tree

    def invoke(method: str) -> str:
        env = {POWERCAP_ROOT_ENV: str(root)}
        args = ["bench", str(model), "--energy", method, *FAST]
        result = CliRunner().invoke(main, args, env=env)
        out = " ".join(result.output.split())
        return json.dumps({"code": result.exit_code, "out": out})

    for method, code, needle in (
        ("rapl", 2, "permission denied"),
        ("auto", 0, "RAPL not usable (cannot read RAPL counter"),
    ):
        raw = _as_nobody(lambda m=method: invoke(m)) if os.geteuid() == 0 else invoke(method)
        assert not raw.startswith("child failed"), raw
        result = json.loads(raw)
        assert result["code"] == code, result["out"]
        assert needle in result["out"] and "Traceback" not in result["out"]
        if method == "auto":
            assert "ESTIMATED" in result["out"]


def test_cli_rapl_without_powercap_is_exit_2(tmp_path):
    model = save(conv_model(0), tmp_path / "m.onnx")
    result = CliRunner().invoke(
        main,
        ["bench", str(model), "--energy", "rapl", *FAST],
        env={POWERCAP_ROOT_ENV: str(tmp_path / "none")},
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "error: --energy: no powercap interface" in text
    assert "Traceback" not in result.output


class FakeMeter(threading.Thread):
    """Advances the fake package counter at a constant power, wrapping at max range, like the
    hardware does, while the bench runs."""

    def __init__(self, root: Path, watts: float, max_range: int) -> None:
        super().__init__(daemon=True)
        self.path = root / "intel-rapl:0" / "energy_uj"
        self.watts, self.max_range = watts, max_range
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        while not self.stop.is_set():
            uj = int((time.perf_counter() - start) * self.watts * 1e6) % self.max_range
            write(self.path, f"{uj}\n")
            time.sleep(0.002)


def test_bench_with_rapl_on_a_fake_tree(tmp_path):
    root = tmp_path / "powercap"
    max_range = 3_000_000  # 3 J: wraps every 0.3 s at 10 W, within most windows
    make_zone(root, "intel-rapl:0", "package-0", 0, max_range)
    model = save(conv_model(0), tmp_path / "m.onnx")
    meter = FakeMeter(root, 10.0, max_range)
    meter.start()
    try:
        plan = BenchPlan(
            runs=5,
            warmup=1,
            energy="rapl",
            powercap_root=root,
            energy_window_s=0.2,
            energy_rounds=2,
            idle_seconds=0.2,
            allow_short_rapl_windows=True,
        )
        result = run_bench([model, model], plan)
    finally:
        meter.stop.set()
        meter.join()
    assert result.energy["method"] == "rapl" and result.energy["label"] == "measured (RAPL)"
    assert result.energy["idle_w"]["package"] == pytest.approx(10.0, rel=0.2)
    for config in result.groups[0].configs:
        e = config.energy
        assert e.method == "rapl" and e.windows == 2 and e.rapl["dram_net_mj_per_call"] is None
        gross_w = e.rapl["package_gross_mj_per_call"] * e.calls / 1e3 / e.seconds
        assert gross_w == pytest.approx(10.0, rel=0.2)  # wrap-arounds handled
        # constant power: busy minus idle is about zero per call
        assert abs(e.mj_per_call) < 0.3 * e.rapl["package_gross_mj_per_call"]
    text = " ".join(str(r) for r in render_bench(result))
    assert "idle power" in text and "RAPL" in text


def test_rapl_windows_shorter_than_a_second_are_refused(tmp_path):
    root = fake_tree(tmp_path / "p")
    model = save(conv_model(0), tmp_path / "m.onnx")
    with pytest.raises(RaplError.__mro__[1], match=">= 1 s"):
        run_bench(
            [model], BenchPlan(runs=3, energy="rapl", powercap_root=root, energy_window_s=0.1)
        )


def test_estimate_is_labelled_with_its_formula(tmp_path):
    model = save(conv_model(0), tmp_path / "m.onnx")
    out = tmp_path / "b.json"
    result = run(
        "bench",
        model,
        model,
        "--energy",
        "estimate",
        "--cpu-watts-per-core",
        "10",
        *FAST,
        "--json",
        out,
    )
    assert result.exit_code == 0, result.output
    assert "ESTIMATED" in result.text and "not a measurement" in result.text
    assert "CPU-time ratio" in result.text and "10 W per core" in result.text
    payload = json.loads(out.read_text())
    assert payload["energy"]["label"] == "estimated"
    assert payload["energy"]["watts_per_core"] == 10.0
    assert payload["energy"]["formula"] == estimate_formula(10.0)
    for config in payload["groups"][0]["configs"]:
        assert config["energy"]["method"] == "estimated"
        assert config["energy"]["mj_per_call"] == pytest.approx(
            config["energy"]["cpu_ms_per_call"] * 10
        )
    bad = run("bench", model, "--energy", "estimate", "--cpu-watts-per-core", "0", *FAST)
    assert bad.exit_code == 2 and "--cpu-watts-per-core: watts per core must be > 0" in bad.output


def test_energy_off_shows_no_energy(tmp_path):
    model = save(conv_model(0), tmp_path / "m.onnx")
    result = run("bench", model, "--energy", "off", *FAST)
    assert result.exit_code == 0, result.output
    assert "energy/item" not in result.text and "not measured" in result.text
