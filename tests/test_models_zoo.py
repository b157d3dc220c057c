"""The zoo's sizes: small is the demo's network unchanged, medium and large scale, resnet18."""

from __future__ import annotations

import pytest

from qtool.errors import QtoolError
from qtool.models import get_spec

torch = pytest.importorskip("torch")

from qtool.models.checkpoint import state_dict_sha256  # noqa: E402

# sha256 prefixes of the seed-0 initial weights before sizes existed (commit 69381ac): the
# small networks must keep them, or the demo's checkpoints change
BEFORE_SIZES = {
    ("cnn", (1, 1, 8, 8)): "cd98df0c68661f30",
    ("sasa", (1, 1, 8, 8)): "aa0936491c296307",
    ("cnn", (1, 3, 28, 28)): "29c597224b8007e1",
    ("sasa", (1, 1, 32, 32)): "aa0936491c296307",
    ("mlp", (1, 30)): "c33c7261173afb61",
}


def build(name: str, shape, classes: int = 10, **arch):
    torch.manual_seed(0)
    spec = get_spec(name)
    return spec.build(shape, classes, spec.architecture(**arch))


def params(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("name", "shape"), list(BEFORE_SIZES))
def test_small_is_the_network_from_before_sizes_bit_for_bit(name, shape):
    assert state_dict_sha256(build(name, shape).state_dict())[:16] == BEFORE_SIZES[name, shape]
    assert get_spec(name).architecture() == get_spec(name).architecture("small")


def test_medium_and_large_have_the_advertised_parameter_counts():
    shape = (1, 1, 64, 64)
    cnn_m, sasa_m = (
        params(build("cnn", shape, 2, size="medium")),
        params(build("sasa", shape, 2, size="medium")),
    )
    assert 1e6 <= cnn_m <= 5e6 and 1e6 <= sasa_m <= 5e6
    assert 0.2 <= sasa_m / cnn_m <= 0.4  # the paper's 60-80 % fewer parameters
    assert params(build("cnn", shape, 2, size="large")) >= 10e6
    # width and depth override the preset
    assert params(build("cnn", shape, 2, size="medium", width=32)) < cnn_m / 3


def test_resnet18_large_is_torchvisions_resnet18():
    model = build("resnet18", (1, 3, 224, 224), 1000)
    assert params(model) == 11_689_512  # torchvision.models.resnet18()
    names = set(model.state_dict())
    assert {"conv1.weight", "layer4.1.bn2.running_var", "fc.bias"} <= names
    assert "layer2.0.downsample.0.weight" in names
    assert tuple(model.conv1.weight.shape) == (64, 3, 7, 7)


@pytest.mark.parametrize(
    ("name", "shape", "stage1"),
    [
        ("cnn", (2, 1, 28, 28), 28),
        ("sasa", (2, 1, 64, 64), 32),
        ("cnn", (2, 3, 128, 128), 32),
        ("resnet18", (2, 1, 64, 64), 32),
    ],
)
def test_images_are_not_pooled_away_in_the_stem(name, shape, stage1):
    model = build(name, shape, 3, size="medium", width=16).eval()
    seen = {}
    first = model.stage1 if hasattr(model, "stage1") else model.layer1
    first.register_forward_hook(lambda m, i, o: seen.update(shape=tuple(o.shape)))
    with torch.no_grad():
        out = model(torch.randn(*shape))
    assert out.shape == (2, 3)
    assert seen["shape"][-1] == stage1


def test_odd_sizes_halve_alike_in_attention_and_shortcut():
    model = build("sasa", (1, 1, 28, 28), 2, size="medium", width=8).eval()  # 28 14 7 4
    with torch.no_grad():
        assert model(torch.randn(1, 1, 28, 28)).shape == (1, 2)


@pytest.mark.parametrize(
    ("name", "arch", "param", "fragment"),
    [
        ("cnn", {"size": "huge"}, "size", "sizes small, medium, large"),
        ("mlp", {"size": "medium"}, "size", "mlp comes in sizes small"),
        ("cnn", {"width": 0}, "width", "use 1 to 512"),
        ("sasa", {"width": 20}, "width", "multiple of 8"),
        ("cnn", {"depth": 9}, "depth", "use 1 to 8"),
    ],
)
def test_bad_architecture_names_the_argument(name, arch, param, fragment):
    with pytest.raises(QtoolError, match=fragment) as info:
        get_spec(name).architecture(**arch)
    assert info.value.param == param
