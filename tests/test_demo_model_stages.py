"""demo.model_stages: a cached checkpoint an interrupted demo left unfinished is continued,
not taken as a trained model."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from qtool.demo.context import DemoContext, ModelRecord, checkpoint_cache_path  # noqa: E402
from qtool.demo.model_stages import stage_train  # noqa: E402
from qtool.from_torch.train import train_zoo_model  # noqa: E402
from qtool.models import get_spec  # noqa: E402
from qtool.models.checkpoint import load_checkpoint  # noqa: E402


def test_a_partial_cached_checkpoint_is_resumed_to_the_full_run(tmp_path):
    spec = get_spec("mlp")
    cached = checkpoint_cache_path(tmp_path / "cache", spec, "breast-cancer", 0, spec.epochs)
    cached.parent.mkdir(parents=True)
    stopped = train_zoo_model("mlp", "breast-cancer", cached, time_budget=0, show_progress=False)
    assert stopped.partial and "resume" in load_checkpoint(cached)
    full = tmp_path / "full.pt"  # the uninterrupted run the demo would have trained
    train_zoo_model("mlp", "breast-cancer", full, show_progress=False)
    ctx = DemoContext(out_dir=tmp_path, cache_dir=tmp_path / "cache")
    ctx.records["mlp"] = ModelRecord("mlp", "mlp", "breast-cancer")
    stage_train(ctx)
    done = load_checkpoint(cached)
    assert "resume" not in done and done["config"]["epochs_done"] == spec.epochs
    assert ctx.records["mlp"].results["trained"] != "cached"
    expected = load_checkpoint(full)["state_dict"]
    assert all(torch.equal(done["state_dict"][k], expected[k]) for k in expected)
