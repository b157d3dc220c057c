"""Long flip jobs keep their work: a bit search or campaign stopped by Ctrl-C (a real SIGINT
to a real `qtool` process) or by --time-budget leaves valid outputs marked partial, the
search's manifest replays with --apply, and an interruption exits 130."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from flip_models import digits_mlp

from qtool.cli import main
from qtool.faults.search import progressive_search, write_search
from qtool.modelfile.load import sha256_file


@pytest.fixture(scope="module")
def mlp(tmp_path_factory) -> Path:
    return digits_mlp(tmp_path_factory.mktemp("partial") / "mlp.onnx", hidden=16)


def _qtool(*args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "qtool", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _interrupt_once(proc: subprocess.Popen, written: Path, timeout: float = 120) -> str:
    """SIGINT as soon as `written` exists (the job is under way); returns stderr."""
    end = time.monotonic() + timeout
    while not written.exists() and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.02)
    assert proc.poll() is None, "the job ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=timeout)
    return err


def test_interrupted_search_keeps_its_flips_and_apply_accepts_them(mlp, tmp_path):
    out, manifest, report = tmp_path / "hit.onnx", tmp_path / "flips.json", tmp_path / "r.json"
    proc = _qtool(
        "flip", str(mlp), "--search", "progressive", "--bits", "1000", "--data", "digits",
        "--attack-samples", "64", "--out", str(out),
        "--manifest", str(manifest), "--json", str(report),
    )  # fmt: skip
    err = _interrupt_once(proc, manifest)
    assert proc.returncode == 130, err
    saved = json.loads(manifest.read_text())
    assert saved["partial"] and saved["partial_reason"].startswith("interrupted (SIGINT)")
    flips = len(saved["flips"])
    assert 1 <= flips < 1000 and len(saved["search"]["steps"]) == flips
    assert saved["flipped_sha256"] == sha256_file(out)
    assert json.loads(report.read_text())["search"]["partial"]
    replayed = tmp_path / "replayed.onnx"
    r = CliRunner().invoke(
        main, ["flip", str(mlp), "--apply", str(manifest), "--out", str(replayed)]
    )
    assert r.exit_code == 0, r.output
    assert replayed.read_bytes() == out.read_bytes()


def test_search_time_budget_ends_partial_with_exit_0(mlp, tmp_path):
    out, manifest = tmp_path / "hit.onnx", tmp_path / "flips.json"
    r = CliRunner().invoke(
        main,
        ["flip", str(mlp), "--search", "progressive", "--bits", "1000", "--data", "digits",
         "--attack-samples", "32", "--time-budget", "3",
         "--out", str(out), "--manifest", str(manifest)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    saved = json.loads(manifest.read_text())
    assert saved["partial"] and "time budget of 3 s reached" in saved["partial_reason"]
    assert saved["flipped_sha256"] == sha256_file(out)
    assert len(saved["flips"]) == len(saved["search"]["steps"]) < 1000
    assert "marked partial" in r.stderr
    assert "bit search: " in r.stderr  # progress lines without a terminal


def test_checkpoint_gets_every_flip_and_a_final_result(mlp, tmp_path):
    seen = []

    def checkpoint(result) -> None:
        seen.append((len(result.steps), result.partial))
        write_search(result, tmp_path / "o.onnx", tmp_path / "m.json", force=True)

    result = progressive_search(mlp, "digits", 3, None, 32, method="oracle", checkpoint=checkpoint)
    assert seen == [(1, True), (2, True), (3, True), (3, False)]
    assert not result.partial and not json.loads((tmp_path / "m.json").read_text())["partial"]


def test_interrupted_campaign_writes_its_trials_and_exits_130(mlp, tmp_path):
    report, csv = tmp_path / "campaign.json", tmp_path / "campaign.csv"
    proc = _qtool(
        "flip", str(mlp), "--bits", "1,2", "--trials", "100000", "--data", "digits",
        "--json", str(report), "--csv", str(csv),
    )  # fmt: skip
    # no file appears before the end: wait for the first progress line instead
    end = time.monotonic() + 120
    line = ""
    while "flip trials" not in line and time.monotonic() < end:
        line = proc.stderr.readline()
    time.sleep(1)  # some more trials
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    saved = json.loads(report.read_text())
    assert saved["partial"] and saved["stopped"].startswith("interrupted (SIGINT)")
    done = len(saved["trial_results"])
    assert 0 < done < 200000
    assert {s["bits"] for s in saved["stats"]} == {1, 2}  # trial-major: both budgets
    assert sum(s["trials"] for s in saved["stats"]) == done
    assert csv.read_text().count("\n") == 3


def test_campaign_time_budget_ends_partial(mlp, tmp_path):
    report = tmp_path / "campaign.json"
    r = CliRunner().invoke(
        main,
        ["flip", str(mlp), "--bits", "1,4", "--trials", "100000", "--data", "digits",
         "--time-budget", "1", "--json", str(report)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    saved = json.loads(report.read_text())
    assert saved["partial"] and "time budget of 1 s reached" in saved["stopped"]
    counts = [s["trials"] for s in saved["stats"]]
    assert len(counts) == 2 and max(counts) - min(counts) <= 1
    assert "marked partial" in r.stderr


def test_time_budget_is_refused_where_nothing_is_long(mlp, tmp_path):
    r = CliRunner().invoke(
        main,
        ["flip", str(mlp), "--bits", "1", "--out", str(tmp_path / "o.onnx"), "--time-budget", "5"],
    )
    assert r.exit_code == 2 and "--time-budget" in r.output and "one injection" in r.output
