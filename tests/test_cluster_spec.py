"""Cluster specs parse without Dask; an unreachable scheduler is one line and exit 2 in time."""

from __future__ import annotations

import socket
import time

import pytest
from click.testing import CliRunner
from flip_models import digits_mlp

from qtool.cli import main
from qtool.cluster import ClusterSpec, parse_cluster
from qtool.cluster.units import chunked
from qtool.errors import QtoolError


def test_specs_parse_and_bad_ones_name_the_option():
    assert parse_cluster("local:3") == ClusterSpec(local_workers=3)
    assert parse_cluster(" tcp://10.1.2.3:8786 ").text == "tcp://10.1.2.3:8786"
    assert parse_cluster("tcp://[::1]:8786").address == "tcp://[::1]:8786"
    assert parse_cluster("local:2").text == "local:2"
    for bad in ["local:0", "local:x", "local:999", "10.1.2.3:8786", "tcp://host", "tcp://h:0"]:
        with pytest.raises(QtoolError) as caught:
            parse_cluster(bad)
        assert caught.value.param == "cluster"


def test_chunks_cover_every_unit_once_in_order():
    units = list(range(103))
    for workers in (1, 2, 7):
        chunks = chunked(units, workers)
        assert [u for c in chunks for u in c] == units and all(chunks)
        assert len(chunks) <= workers * 16


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on exit: nothing listens there


def test_unreachable_scheduler_is_one_line_and_exit_2_within_the_timeout(tmp_path):
    pytest.importorskip("distributed")
    model = digits_mlp(tmp_path / "mlp.onnx", hidden=8)
    address = f"tcp://127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    result = CliRunner().invoke(
        main,
        [
            "flip", str(model), "--bits", "1,2", "--trials", "2", "--data", "digits",
            "--cluster", address, "--cluster-timeout", "2", "--json", str(tmp_path / "r.json"),
        ],
    )  # fmt: skip
    elapsed = time.monotonic() - start
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--cluster" in lines[0] and address in lines[0]
    assert "within 2 s" in lines[0] and "Traceback" not in result.output
    assert elapsed < 2 + 8  # the timeout, plus loading the model and data
    assert not (tmp_path / "r.json").exists()


def test_a_scheduler_without_workers_is_one_line_and_exit_2(tmp_path):
    pytest.importorskip("distributed")
    from dask_cluster import scheduler_and_workers

    model = digits_mlp(tmp_path / "mlp.onnx", hidden=8)
    with scheduler_and_workers(tmp_path, workers=0) as address:
        result = CliRunner().invoke(
            main,
            ["flip", str(model), "--bits", "1,2", "--trials", "2", "--data", "digits",
             "--cluster", address, "--cluster-timeout", "1"],
        )  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "has no workers after 1 s" in lines[0]
