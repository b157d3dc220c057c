"""The surrogate: trained on the attacker's samples only, deterministic, shallow features."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import torch  # noqa: E402
from attack_helpers import FAST_SURROGATE, surrogate  # noqa: E402

from qtool.attacks.knowledge import attacker_samples  # noqa: E402
from qtool.attacks.settings import SurrogateSpec  # noqa: E402
from qtool.attacks.surrogate import train_surrogate  # noqa: E402
from qtool.data.datasets import load_dataset  # noqa: E402
from qtool.errors import QtoolError  # noqa: E402


def test_same_seed_same_weights_and_features_stop_at_the_layer():
    s = surrogate(10, 0)
    train = load_dataset("digits", "train")
    again = train_surrogate(FAST_SURROGATE, attacker_samples(train, 10, 0), 0)
    for a, b in zip(s.model.state_dict().values(), again.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert s.feature_layer == "stage1" and s.train_accuracy > 0.8
    x = torch.from_numpy(load_dataset("digits", "test").x[:4])
    f = s.features(x)
    assert f.shape == (4, 32, 8, 8)  # stage1 output, not the logits
    assert torch.all(f >= 0)  # after the block's ReLU: ETF's cosines are >= 0


def test_user_factory_and_feature_layer(tmp_path):
    net = tmp_path / "tiny.py"
    net.write_text(
        "import torch.nn as nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),"
        " nn.Linear(256, 10))\n"
    )
    train = load_dataset("digits", "train")
    knowledge = attacker_samples(train, 2, 0)
    s = train_surrogate(SurrogateSpec(f"{net}:build", "1", steps=5), knowledge, 0)
    assert s.feature_layer == "1"
    with pytest.raises(QtoolError, match="no module 'nope'") as err:
        train_surrogate(SurrogateSpec(f"{net}:build", "nope", steps=1), knowledge, 0)
    assert err.value.param == "feature_layer"
    with pytest.raises(QtoolError, match="unknown zoo model") as err:
        train_surrogate(SurrogateSpec("resnet9000", steps=1), knowledge, 0)
    assert err.value.param == "surrogate"


def test_tables_are_refused():
    from qtool.attacks.knowledge import Knowledge

    table = Knowledge(np.zeros((4, 30), np.float32), np.arange(4) % 2, 2, 2)
    with pytest.raises(QtoolError, match="image data"):
        train_surrogate(FAST_SURROGATE, table, 0)
