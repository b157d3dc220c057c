"""deploy.model_card: every figure on the card is the one in the manifest or a bundled report
(the reports here have the layout eval, bench and flip write; test_package checks the card
with reports made by those commands)."""

from __future__ import annotations

import json

import pytest
from builders import digits_linear_weights, linear_image_model, save

from qtool.deploy.bundle import package
from qtool.deploy.model_card import render_model_card
from qtool.modelfile.metadata import set_metadata

EVAL = {
    "accuracy": 0.9123,
    "confusion": [[1, 0], [0, 1]],
    "samples": 114,
    "data": "breast-cancer",
    "split": "test",
    "sensitivity": 0.95,
    "specificity": 0.875,
    "positive_class": "malignant",
}
BENCH = {
    "energy": "estimate",
    "groups": [
        {
            "batch": 8,
            "threads": 2,
            "configs": [
                {
                    "name": "m.onnx",
                    "latency": {"p50_ms": 0.5, "throughput_items_per_s": 16000},
                    "energy": {"mj_per_item": 0.125, "method": "estimated"},
                },
                {
                    "name": "m.int8.onnx",
                    "latency": {"p50_ms": 0.25, "throughput_items_per_s": 32000},
                },
            ],
        }
    ],
}
FLIPS = {
    "trials": 5,
    "budgets": [1, 10],
    "data": "digits",
    "targets": "weights",
    "models": [{"path": "/x/m.onnx", "clean_accuracy": 0.9}],
    "stats": [
        {"model": "/x/m.onnx", "bits": 1, "mean": 0.85},
        {"model": "/x/m.onnx", "bits": 10, "mean": 0.5},
    ],
}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("card")
    w, b = digits_linear_weights()
    proto = linear_image_model(w, b)
    set_metadata(
        proto,
        {
            "qtool.model": "lin",
            "qtool.dataset": "digits",
            "qtool.class_names": [str(i) for i in range(10)],
            "qtool.normalization": {"mean": [0.25], "std": [0.5]},
        },
    )
    return save(proto, tmp / "lin.onnx")


def card_of(model, tmp_path, reports=(), **kwargs) -> tuple[str, dict]:
    paths = []
    for name, payload in reports:
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(payload))
    package(model, tmp_path / "b", report_paths=paths, **kwargs)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    card = (tmp_path / "b" / "MODEL_CARD.md").read_text()
    assert card == render_model_card(manifest, kwargs.get("intended_use"))
    return card, manifest


def test_card_carries_the_manifest_and_report_figures(model, tmp_path):
    reports = [("eval.json", EVAL), ("bench.json", BENCH), ("flips.json", FLIPS)]
    card, manifest = card_of(model, tmp_path, reports, ecc=True, intended_use="Triage only.")
    assert card.startswith("# Model card: lin\n")
    assert f"bundled {manifest['created']} by qtool {manifest['versions']['qtool']}" in card
    assert "\nTriage only.\n" in card
    assert "- Data set: digits" in card and "- Classes: 0, 1, 2, 3" in card
    assert "- Input: x float ['N', 1, 8, 8]" in card and "std [0.5]" in card
    assert "- Quantisation: none (FP32)" in card
    assert (
        "- 91.23 % on 114 samples of breast-cancer (test), from `reports/eval.json`; "
        "sensitivity 95.00 %, specificity 87.50 % (positive: malignant)"
    ) in card
    assert "| m.onnx | cpu | 8 | 2 | 0.5 ms | 16,000 | 0.125 mJ (estimated) |" in card
    assert "| m.int8.onnx | cpu | 8 | 2 | 0.25 ms | 32,000 | not measured |" in card
    assert "- Execution provider: not recorded (qtool predict runs the CPU provider)" in card
    assert "Energy is ESTIMATED" in card
    assert "Mean test accuracy over 5 trials per budget (digits, targets=weights)" in card
    assert "| m.onnx | 90.00 % | 85.00 % | 50.00 % |" in card
    ecc = manifest["ecc"]
    assert (
        f"Reed-Solomon parity (`model.ecc`, {ecc['nsym']} parity bytes per "
        f"{ecc['chunk_bytes']}-byte chunk, "
        f"{100 * ecc['overhead']:.1f} % overhead) repairs up to 8 corrupted bytes per chunk"
    ) in card


def test_card_says_what_is_missing(model, tmp_path):
    card, _ = card_of(model, tmp_path)
    assert "No evaluation report bundled" in card
    assert "No benchmark report bundled" in card and "No bit-flip report bundled" in card
    assert "Decision support under clinical oversight only" in card
    assert "Reed-Solomon" not in card and "## Integrity" in card


ATTACK = {
    "settings": {},
    "units": [],
    "summaries": [
        {"model": "/x/m.int8.onnx", "method": "etf", "k": "1", "eps": 0.25,
         "success": {"value": 0.71, "low": 0.6, "high": 0.8},
         "noise": {"value": 0.39, "low": 0.3, "high": 0.5}, "beats_floor": True},
        {"model": "/x/m.int8.onnx", "method": "noise", "k": "1", "eps": 0.25,
         "success": {"value": 0.39}, "noise": {"value": 0.39}, "beats_floor": None},
    ],
}  # fmt: skip


def test_card_reads_eval_screening_figures_and_attack_reports(model, tmp_path):
    screening = {**EVAL, "roc_auc": 0.9812, "operating_point": {
        "target_sensitivity": 0.95, "threshold": 0.2734, "sensitivity": 0.96,
        "specificity": 0.81}}  # fmt: skip
    card, _ = card_of(model, tmp_path, [("e.json", screening), ("a.json", ATTACK)])
    assert "; ROC AUC 0.9812; at sensitivity >= 95.00 %: threshold p >= 0.2734" in card
    assert "specificity 81.00 %" in card
    assert "## Robustness to adversarial examples" in card
    assert "- m.int8.onnx, etf (K=1, eps 0.25): success 71.00 % vs noise 39.00 %, beats" in card
    assert card.count("m.int8.onnx, ") == 1  # the noise floor is not an attack row
