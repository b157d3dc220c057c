"""qtool.readable: inputs must be plain files; JSON inputs are bounded in size and depth."""

from __future__ import annotations

import json
import os

import pytest

from qtool import limits
from qtool.errors import QtoolError
from qtool.readable import is_regular, json_depth, read_json, regular_file


def test_regular_file_refuses_what_is_not_one(tmp_path):
    plain = tmp_path / "m.onnx"
    plain.write_bytes(b"x")
    assert regular_file(plain, "model") == plain and is_regular(plain)
    with pytest.raises(QtoolError, match="does not exist"):
        regular_file(tmp_path / "none", "model")
    with pytest.raises(QtoolError, match="is a folder"):
        regular_file(tmp_path, "model")
    with pytest.raises(QtoolError, match="character device") as caught:
        regular_file("/dev/zero", "model", param="model")
    assert caught.value.param == "model" and not is_regular("/dev/zero")
    os.mkfifo(tmp_path / "x.png")
    with pytest.raises(QtoolError, match="FIFO"):  # refused without opening (would block)
        regular_file(tmp_path / "x.png", "image")
    os.symlink(plain, tmp_path / "link.onnx")
    assert regular_file(tmp_path / "link.onnx", "model")  # a link to a plain file is fine


def test_read_json_bounds_size_and_depth(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"a": [1, {"b": 2}]}))
    assert read_json(path, "report") == {"a": [1, {"b": 2}]}
    with limits.using(json_bytes=5), pytest.raises(limits.LimitExceeded, match="json-bytes"):
        read_json(path, "report")
    with limits.using(json_depth=2), pytest.raises(limits.LimitExceeded, match="json-depth"):
        read_json(path, "report")
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(limits.LimitExceeded, match="json-depth"):
        read_json(path, "report")
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(QtoolError, match="not JSON"):
        read_json(path, "report")


@pytest.mark.parametrize(
    ("text", "depth"),
    [("1", 0), ("[]", 1), ('[1, {"a": [2]}]', 3), ('{"a": "[[[{{"}', 1), ('["\\\\", ["\\"["]]', 2),
     ('["a\\\\\\"[["]', 1), ("[" * 70 + "]" * 70, 70)],
)  # fmt: skip
def test_json_depth_ignores_brackets_in_strings(text, depth):
    assert json.loads(text) is not None or text == "null"
    assert json_depth(text) == depth
