"""`qtool attack` from the shell: tables, JSON, plot, examples that eval and predict read back,
and one-line refusals (exit 2) for bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from qtool.attacks import methods
from qtool.cli import main

pytest.importorskip("torch")

QUICK = ["--samples-per-class", "10", "--seeds", "2", "--max-samples", "60"]
QUICK += ["--surrogate-steps", "60", "--method", "etf", "--eps", "64/255"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_attack_writes_report_plot_and_examples_that_eval_and_predict_read(zoo_models, tmp_path):
    pytest.importorskip("matplotlib")
    model = zoo_models["cnn"]
    report, plot, adv = tmp_path / "a.json", tmp_path / "a.png", tmp_path / "adv.npz"
    result = run(
        "attack",
        model,
        "--data",
        "digits",
        *QUICK,
        "--json",
        report,
        "--plot",
        plot,
        "--save-examples",
        adv,
    )
    assert result.exit_code == 0, result.output
    assert "vs noise" in result.output and " pp" in result.output
    payload = json.loads(report.read_text())
    etf = next(r for r in payload["results"] if r["method"] == "etf-i")  # etf: alias
    assert etf["success_rate"] > etf["noise_success_rate"] and etf["beats_floor"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the saved examples reproduce the reported accuracy under attack in qtool eval
    evaluated = tmp_path / "e.json"
    assert run("eval", model, "--data", f"npz:{adv}", "--json", evaluated).exit_code == 0
    accuracy = json.loads(evaluated.read_text())["accuracy"]
    assert accuracy == pytest.approx(payload["examples"]["accuracy_under_attack"], abs=1e-12)

    bundle = tmp_path / "bundle"
    assert run("package", model, "--out", bundle).exit_code == 0
    predicted = run("predict", bundle, adv, "--json", tmp_path / "p.json")
    assert predicted.exit_code == 0, predicted.output
    assert len(json.loads((tmp_path / "p.json").read_text())["predictions"]) == 60

    again = run("attack", model, "--data", "digits", *QUICK, "--json", report)
    assert again.exit_code == 2 and "--force" in again.output  # reports follow the output rule


@pytest.mark.parametrize(
    "args,message",
    [
        (["--eps", "8/0"], "--eps"),
        (["--eps", "big"], "give budgets like 8/255"),
        (["--eps", "1.5"], "--eps: an L-inf budget of 1.5"),
        (["--method", "fgsm"], "--method: unknown attack method 'fgsm'"),
        (["--samples-per-class", "1,x"], "--samples-per-class"),
        (["--seeds", "500"], "--seeds: 500 is outside the allowed range"),
        (["--data", "breast-cancer"], "is a table"),
    ],
)
def test_refusals_are_one_line_exit_2(zoo_models, args, message):
    result = run("attack", zoo_models["cnn"], "--data", "digits", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_labels_and_missing_extra(zoo_models, tmp_path, monkeypatch):
    import numpy as np

    unlabelled = tmp_path / "u.npz"
    np.savez(
        unlabelled,
        train_images=np.zeros((20, 8, 8), np.uint8),
        train_labels=np.arange(20) % 10,
        test_images=np.zeros((5, 8, 8), np.uint8),
    )
    result = run("attack", zoo_models["cnn"], "--data", f"npz:{unlabelled}")
    assert (
        result.exit_code == 2
        and "--data: data set" in result.output
        and "no labels" in result.output
    )

    monkeypatch.setitem(
        methods.EXTRAS, "art", ("art_is_not_here", "adversarial-robustness-toolbox", "attack")
    )
    result = run("attack", zoo_models["cnn"], "--data", "digits", "--method", "square")
    assert result.exit_code == 2
    assert "pip install 'qtool[attack]'" in result.output and "Traceback" not in result.output
