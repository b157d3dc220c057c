"""`qtool serve` as a user runs it: a subprocess that verifies before it listens, prints the
address it bound, answers over HTTP, and stops gracefully on SIGTERM (exit 0). Tampered,
unsigned or untrusted bundles are refused with one line and exit 1, bad options with exit 2."""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest
from click.testing import CliRunner
from served_bundles import digits_bundle, flip_weight_bit

from qtool.cli import main

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("cryptography")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    for name in ("release", "other"):
        assert run("keygen", "--out", tmp / name).exit_code == 0
    return tmp, digits_bundle(tmp / "b", sign_key=tmp / "release")


def test_refusals_before_listening(signed, tmp_path):
    tmp, bundle = signed
    untrusted = run("serve", bundle, "--trust", tmp / "other.pub", "--port", "0")
    assert untrusted.exit_code == 1 and "(untrusted key)" in untrusted.output
    unsigned = digits_bundle(tmp_path / "u")
    result = run("serve", unsigned, "--trust", tmp / "release.pub", "--port", "0")
    assert result.exit_code == 1 and "(unsigned)" in result.output
    flip_weight_bit(unsigned)
    tampered = run("serve", unsigned, "--port", "0")
    assert tampered.exit_code == 1 and "failed verification (tensor w changed)" in tampered.output
    for output in (untrusted.output, result.output, tampered.output):
        assert output.strip().count("\n") == 0
    (tmp_path / "b.tar.gz").write_bytes(b"")
    archive = run("serve", tmp_path / "b.tar.gz")
    assert archive.exit_code == 2 and "extract" in archive.output
    bad = run("serve", bundle, "--reverify", "soon")
    assert bad.exit_code == 2 and "--reverify" in bad.output


def test_port_in_use_is_one_line(signed):
    _, bundle = signed
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run("serve", bundle, "--port", taken.getsockname()[1])
    assert result.exit_code == 2 and "--port: cannot listen on 127.0.0.1:" in result.output


def test_serve_subprocess_answers_and_stops_gracefully(signed):
    tmp, bundle = signed
    args = [sys.executable, "-m", "qtool", "serve", str(bundle), "--port", "0"]
    args += ["--trust", f"{tmp / 'other.pub'},{tmp / 'release.pub'}", "--workers", "2"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True).start()
    try:
        ready = ""
        while "ready:" not in ready:
            ready = lines.get(timeout=60)
        assert "signed by trusted key" in ready and "2 worker(s)" in ready
        url = re.search(r"http://127\.0\.0\.1:\d+", ready).group(0)
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/v2/health/ready").json() == {"ready": True}
            assert client.get("/v2/models/lin").json()["name"] == "lin"
            assert "qtool_inference_workers 2" in client.get("/metrics").text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert any("stopped: re-verification and inference threads ended" in x for x in rest)


def test_durations():
    import click

    from qtool.commands.serve import parse_duration

    assert parse_duration("60s") == 60 and parse_duration("500ms") == 0.5
    assert parse_duration("5m") == 300 and parse_duration("2") == 2
    assert parse_duration("off") is None
    with pytest.raises(click.BadParameter):
        parse_duration("soon")


def test_bound_socket_is_tcp_so_responses_are_not_delayed():
    """asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP; a socket made
    with proto 0 made every keep-alive response wait ~40 ms for a delayed ACK."""
    from qtool.serving.server import bind

    with bind("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP
