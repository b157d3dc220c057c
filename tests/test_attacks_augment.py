"""Views for ETF: fixed attack views (one and three channels) and seeded random views."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import torch  # noqa: E402

from qtool.attacks import augment  # noqa: E402


def test_attack_views_count_order_and_range():
    x = torch.rand(3, 1, 8, 8)
    v = augment.attack_views(x)
    assert v.shape == (3 * 4, 1, 8, 8) and augment.view_count(1) == 4
    assert torch.equal(v[0], x[0]) and torch.equal(v[4], x[1])  # image-major, the image first
    assert torch.allclose(v[1], (1.5 * x[0]).clamp(0, 1))
    assert v.min() >= 0 and v.max() <= 1
    rgb = augment.attack_views(torch.rand(2, 3, 16, 16))
    assert rgb.shape == (10, 3, 16, 16)
    assert torch.equal(rgb[4, 0], rgb[4, 1])  # the greyscale view


def test_attack_views_pass_gradients():
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    augment.attack_views(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_random_views_are_seeded_bounded_and_vary():
    x = torch.rand(16, 1, 8, 8)
    a = augment.random_views(x, torch.Generator().manual_seed(0))
    b = augment.random_views(x, torch.Generator().manual_seed(0))
    c = augment.random_views(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a, x)
