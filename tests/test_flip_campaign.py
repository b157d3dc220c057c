"""Fault campaigns: in-memory trials, determinism across worker counts, reports."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from flip_models import digits_cnn, quantized

from qtool.cli import main
from qtool.faults.campaign import CampaignPlan, run_campaign
from qtool.modelfile.load import sha256_file
from qtool.outputs import to_jsonable


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("campaign")
    cnn = digits_cnn(d / "cnn.onnx", channels=4)
    return [cnn, quantized(cnn, d / "cnn.int8.onnx", "qdq")]


def test_campaign_same_results_with_one_or_two_workers(pair):
    shas = [sha256_file(p) for p in pair]
    plan = CampaignPlan(budgets=(1, 8), trials=3, seed=11)
    one = run_campaign(pair, "digits", plan, show_progress=False)
    two = run_campaign(pair, "digits", replace(plan, workers=2), show_progress=False)
    assert [to_jsonable(r) for r in one.trial_results] == [
        to_jsonable(r) for r in two.trial_results
    ]
    assert [to_jsonable(s) for s in one.stats] == [to_jsonable(s) for s in two.stats]
    assert [sha256_file(p) for p in pair] == shas


def test_campaign_statistics(pair):
    plan = CampaignPlan(budgets=(64, 0), trials=6, seed=2)
    result = run_campaign(pair, "digits", plan, show_progress=False)
    assert result.budgets == [0, 64] and len(result.trial_results) == 2 * 2 * 6
    for s in result.stats:
        accs = [
            r.accuracy
            for r in result.trial_results
            if result.models[r.model].path == s.model and r.bits == s.bits
        ]
        assert s.trials == 6 and s.mean == pytest.approx(np.mean(accs))
        assert s.std == pytest.approx(np.std(accs, ddof=1))
        assert s.min <= s.ci95_low <= s.mean <= s.ci95_high <= s.max
        assert s.min <= s.median <= s.max
        if s.bits == 0:  # no flips: the clean model, every time
            clean = next(m for m in result.models if m.path == s.model).clean_accuracy
            assert s.min == s.max == clean and s.sdc_rate == 0
    int8_64 = next(s for s in result.stats if s.model.endswith("int8.onnx") and s.bits == 64)
    assert int8_64.mean < int8_64.max or int8_64.sdc_rate > 0  # 64 int8 flips do harm
    assert 0.09 < result.chance < 0.12  # digits: most common class share
    json.dumps(to_jsonable(result))


def test_campaign_cli_outputs(pair, tmp_path):
    args = [
        "flip", *map(str, pair), "--bits", "1,4", "--trials", "2", "--data", "digits",
        "--json", str(tmp_path / "c.json"), "--csv", str(tmp_path / "c.csv"),
        "--plot", str(tmp_path / "c.png"),
    ]  # fmt: skip
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "c.json").read_text())
    assert len(report["stats"]) == 4 and report["ci_method"].startswith("percentile bootstrap")
    assert (tmp_path / "c.csv").read_text().splitlines()[0].startswith("model,bits,trials,mean")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert "collapsed" in r.output


def test_campaign_refuses_out_and_budget_too_large(pair, tmp_path):
    r = CliRunner().invoke(
        main, ["flip", str(pair[1]), "--bits", "1,2", "--data", "digits", "--out", "x.onnx"]
    )
    assert r.exit_code == 2 and "in memory" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(
        main, ["flip", str(pair[1]), "--bits", "1,10000000", "--trials", "1", "--data", "digits"]
    )
    assert r.exit_code == 2 and "eligible bits" in r.output


def test_cli_says_how_faulted_models_were_evaluated(pair, tmp_path):
    base = ["flip", str(pair[1]), "--bits", "1", "--trials", "2", "--data", "digits"]
    lines = {}
    for extra in ([], ["--cache-mb", "0"], ["--full-eval"]):
        report = tmp_path / f"r{len(lines)}.json"
        result = CliRunner().invoke(main, [*base, *extra, "--json", str(report)])
        assert result.exit_code == 0, result.output
        lines[tuple(extra)] = result.stderr
        evaluation = json.loads(report.read_text())["models"][0]["evaluation"]
        assert evaluation["mode"] == ("incremental" if not extra else "full")
    assert "cnn.int8.onnx: incremental, " in lines[()] and "activation cache" in lines[()]
    assert "exceed its limit of 0 MB" in lines[("--cache-mb", "0")]
    assert "whole-model evaluation asked for" in lines[("--full-eval",)]
