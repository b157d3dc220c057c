"""qtool.limits: named defaults, raising them for one call (Python and CLI), the message
that names the limit and how to raise it."""

from __future__ import annotations

import numpy as np
import pytest
from fuzzing import cli, refused

from qtool import limits
from qtool.errors import QtoolError


def test_every_limit_has_a_default_a_unit_and_a_doc():
    rows = limits.describe()
    assert [name for name, _, _ in rows] == limits.Limits.names()
    assert all(default and doc for _, default, doc in rows)
    assert dict((n, d) for n, d, _ in rows)["bundle-bytes"] == "4 GiB"


def test_using_raises_a_limit_for_the_code_inside_only():
    default = limits.current().pixels
    with limits.using(pixels=10) as inner:
        assert inner.pixels == limits.current().pixels == 10
        with pytest.raises(limits.LimitExceeded, match="over the pixels limit of 10") as caught:
            limits.check("pixels", 11, "x.png")
        assert caught.value.limit == "pixels" and caught.value.exit_code == 2
    assert limits.current().pixels == default
    with pytest.raises(QtoolError, match="unknown limit 'nope'"):
        with limits.using(nope=1):
            pass


def test_parse_assignments_takes_suffixes_and_dashes():
    parsed = limits.parse_assignments(["bundle-bytes=8G", "pixels=2e8 classes=10,trials=1k"])
    assert parsed == {"bundle_bytes": 8 * 2**30, "pixels": 200_000_000, "classes": 10,
                      "trials": 1024}  # fmt: skip
    for bad in ("pixels", "pixels=-1", "pixels=abc", "nope=3", "pixels=0"):
        with pytest.raises(QtoolError):
            limits.parse_assignments([bad])


def test_human_sizes():
    assert limits.human(3 * 2**30, "bytes") == "3 GiB"
    assert limits.human(1536 * 2**20, "bytes") == "1.5 GiB"
    assert limits.human(100, "bytes") == "100 bytes"
    assert limits.human(12345, "classes") == "12,345 classes"


def test_cli_limit_option_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "d.npz"
    np.savez(path, test_images=np.zeros((4, 8, 8), np.uint8), test_labels=np.arange(4))
    from builders import digits_linear_weights, linear_image_model, save

    model = save(linear_image_model(*digits_linear_weights()), tmp_path / "m.onnx")
    line = refused(cli("--limit", "data-bytes=100", "eval", model, "--data", f"npz:{path}"))
    assert "data-bytes limit of 100 bytes" in line and "qtool --limit data-bytes=N eval" in line
    assert cli("--limit", "data-bytes=1M", "eval", model, "--data", f"npz:{path}").exit_code == 0
    monkeypatch.setenv("QTOOL_LIMITS", "data-bytes=100")
    refused(cli("eval", model, "--data", f"npz:{path}"), match="data-bytes limit")
    refused(cli("--limit", "pixels=lots", "inspect", model), match="--limit")


def test_the_readme_table_lists_every_limit_with_its_default():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = text.split("<!-- limits -->", 1)[1].split("\n\n", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert rows == [f"| `{n}` | {d} | {doc} |" for n, d, doc in limits.describe()]
