"""`qtool flip` options of this issue: --trials auto with --margin/--confidence, --cluster and
--workers, each refused in one line naming the option when misused."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from flip_models import digits_mlp

from qtool.cli import main


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    return digits_mlp(tmp_path_factory.mktemp("flip_opts") / "mlp.onnx", hidden=8)


def _flip(*args):
    return CliRunner().invoke(main, ["flip", *map(str, args)])


@pytest.mark.parametrize(
    "extra, flag, words",
    [
        (["--trials", "auto"], "--margin", "margin"),
        (["--trials", "5", "--margin", "2"], None, "--trials auto"),
        (["--trials", "many"], "--trials", "or auto"),
        (["--trials", "auto", "--margin", "2", "--confidence", "100"], "--confidence", "range"),
        (["--trials", "3", "--cluster", "local:0"], "--cluster", "local:N"),
        (["--trials", "3", "--cluster", "local:1", "--workers", "2"], None, "not both"),
        (["--trials", "3", "--cluster", "h:1"], "--cluster", "tcp://HOST:8786"),
    ],
)
def test_misused_options_are_one_line_exit_2(mlp, extra, flag, words):
    result = _flip(mlp, "--bits", "1,2", "--data", "digits", *extra)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.output
    if flag:
        assert flag in lines[0]


def test_trials_auto_prints_the_sizing_and_reports_it(mlp, tmp_path):
    out = tmp_path / "auto.json"
    result = _flip(
        mlp, "--bits", "0,2", "--data", "digits", "--trials", "auto", "--margin", "20",
        "--confidence", "90", "--json", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "stopped by" in result.output and "leveugle" in result.output
    report = json.loads(out.read_text())
    assert report["trials"] == "auto" and report["sizing"]["confidence"] == 0.9
    assert report["sizing"]["margin"] == pytest.approx(0.2)
    assert report["cluster"] is None and report["workers"] == 1
    assert {"campaign_seconds", "trials_per_s"} <= set(report)
