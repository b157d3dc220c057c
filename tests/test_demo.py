"""`qtool demo` machinery: stages over records, cached checkpoints, summary table and JSON.

The full demo (three models) runs in CI as the README's main command; here one fast model.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from qtool.cli import main
from qtool.demo.pipeline import (
    COLUMNS,
    STAGES,
    Column,
    DemoContext,
    cache_dir,
    run_demo,
    summary_table,
)

pytest.importorskip("torch")

MLP_ONLY = [("mlp", "mlp", "breast-cancer")]


def test_demo_trains_then_reuses_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QTOOL_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    ctx = run_demo(tmp_path / "out", models=MLP_ONLY)
    rec = ctx.records["mlp"]
    assert rec.results["trained"].endswith(" s")
    assert rec.results["fp32_accuracy"] >= 0.95  # the default recipe's target
    assert rec.paths["fp32"].is_file() and rec.paths["checkpoint"].is_file()
    cached = list((tmp_path / "cache" / "checkpoints").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("mlp-breast-cancer-seed0-ep40-v0.1.0")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["models"]["mlp"]["results"]["params"] == rec.results["params"]
    assert set(summary["stage_seconds"]) == {name for name, _ in STAGES} | {"total"}
    # every later stage left its facts: INT8 model, FP32-vs-INT8 timing, flip curves, search
    assert rec.paths["int8"].is_file() and rec.results["int8_accuracy"] >= 0.94
    quantized = json.loads((tmp_path / "out" / "mlp.quantize.json").read_text())
    in_float = set(quantized["placement"].get("excluded", []))  # for speed
    in_float |= set(quantized["settings"]["fp32_nodes"])  # for the accuracy budget
    assert rec.results["float_nodes"] == len(in_float)
    assert rec.results["latency_ratio_b32"] > 0 and rec.results["energy_method"]
    assert set(rec.results["random_flip_accuracy"]) == {"fp32", "int8"}
    assert 0 < rec.results["targeted_flips"] <= 20
    assert rec.results["targeted_accuracy"] < rec.results["int8_accuracy"]

    again = run_demo(tmp_path / "out", models=MLP_ONLY, force=True, stages=STAGES[:3])
    assert again.records["mlp"].results["trained"] == "cached"
    assert again.records["mlp"].results["fp32_accuracy"] == rec.results["fp32_accuracy"]


def test_a_later_stage_adds_a_column(tmp_path, monkeypatch):
    monkeypatch.setenv("QTOOL_CACHE_DIR", str(tmp_path / "cache"))

    def stage_double(ctx: DemoContext) -> None:
        for rec in ctx.records.values():
            rec.results["double_params"] = 2 * rec.results["params"]

    monkeypatch.setattr(
        "qtool.demo.pipeline.COLUMNS", [*COLUMNS, Column("2x params", "double_params")]
    )
    ctx = run_demo(tmp_path / "out", models=MLP_ONLY, stages=[*STAGES[:3], ("x", stage_double)])
    columns, rows = summary_table(ctx)
    assert columns[:2] == ["model", "data"] and columns[-1] == "2x params"
    assert rows[0][-1] == str(2 * ctx.records["mlp"].results["params"])


def test_demo_rewrites_its_own_folder_but_refuses_others_without_force(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = CliRunner().invoke(main, ["demo", "--out", str(out)])
    assert result.exit_code == 2 and "--force" in result.output
    assert "Traceback" not in result.output
    assert (out / "keep.txt").read_text() == "mine"
    # a folder holding a previous demo's summary.json is the demo's own: rerunning needs no flag
    (out / "summary.json").write_text("{}")
    ctx_out = tmp_path / "demo"
    from qtool.demo.pipeline import prepare_out_dir

    assert prepare_out_dir(ctx_out, force=False) == ctx_out
