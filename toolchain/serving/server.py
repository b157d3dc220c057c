"""Running the server: verify before listening, serve under uvicorn, stop gracefully.

`prepare` verifies the bundle (its signature first, given a trust list) and builds the
session before any socket exists, so a tampered or untrusted bundle never reports ready: the
call raises and nothing listens. `serve` binds the socket itself (a port in use is one clear
line; port 0 picks a free one, logged), runs uvicorn in this process, and on SIGINT/SIGTERM
stops accepting connections, lets requests in flight finish (up to `graceful_seconds`),
stops the re-verification thread and returns normally. `RunningServer` runs the same server
on a background thread (for tests, benchmarks and Python callers).

One process holds one verified copy, one guard and one set of metrics. `workers` is the
number of inference threads in that process, each calling the one shared ONNX Runtime
session (`run` is thread-safe and releases the GIL); `threads` is ONNX Runtime's intra-op
thread count per run, by default the CPUs divided by the workers.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import logging.config
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from qtool.deploy.archive import is_archive
from qtool.deploy.verified import load_verified
from qtool.errors import MissingExtra, QtoolError
from qtool.serving.app import Limits, ServerState, build_app
from qtool.serving.guard import Guard
from qtool.serving.model import build_served

log = logging.getLogger("qtool.serve")
MIN_REVERIFY_SECONDS = 0.05


def _uvicorn():
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingExtra("uvicorn", "serve", "qtool serve") from exc
    return uvicorn


@dataclass
class ServeOptions:
    bundle: Path
    host: str = "127.0.0.1"
    port: int = 8000
    trust: dict | None = None
    providers: list[str] | None = None
    workers: int = 1
    threads: int | None = None
    reverify: float | None = 60.0  # seconds; None = only at start
    repair: bool = True
    limits: Limits = field(default_factory=Limits)
    access_log: bool = False
    graceful_seconds: int = 30


def default_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(workers, 1))


def _check(options: ServeOptions) -> Path:
    bundle = Path(options.bundle)
    if not bundle.exists():
        raise QtoolError(f"bundle {bundle} does not exist: check the path", param="bundle")
    if is_archive(bundle) or not bundle.is_dir():
        raise QtoolError(
            f"serve runs a bundle folder, which it re-verifies and repairs in place; extract "
            f"{bundle} first (tar xzf / unzip) and serve the folder",
            param="bundle",
        )
    if options.workers < 1:
        raise QtoolError("give at least 1 worker", param="workers")
    if options.reverify is not None and options.reverify < MIN_REVERIFY_SECONDS:
        raise QtoolError(
            f"the re-verify period must be at least {MIN_REVERIFY_SECONDS} s", param="reverify"
        )
    return bundle


def prepare(options: ServeOptions) -> ServerState:
    """Verify the bundle and load its model; raises (exit 1 or 2) rather than serve a bundle
    that does not verify."""
    bundle = _check(options)
    threads = options.threads or default_threads(options.workers)
    verified = load_verified(bundle, options.trust)
    build = functools.partial(build_served, providers=options.providers, threads=threads)
    guard = Guard(
        bundle,
        build(verified),
        build,
        trust=options.trust,
        period=options.reverify,
        repair=options.repair,
        log=log,
    )
    return ServerState(guard, options.limits, options.workers, threads)


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket, or one line saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
        # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets, and
        # without it every keep-alive response waits ~40 ms for a delayed ACK (Nagle)
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise QtoolError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another port",
            param="port",
        ) from exc
    return sock


def _config(state: ServerState, options: ServeOptions, log_config: dict | None):
    return _uvicorn().Config(
        build_app(state),
        lifespan="on",
        access_log=options.access_log,
        log_config=log_config,
        timeout_graceful_shutdown=options.graceful_seconds,
        server_header=False,
    )


def _server_class():
    uvicorn = _uvicorn()

    class Server(uvicorn.Server):
        """uvicorn's server, but SIGINT/SIGTERM end `run` normally (no re-raised signal), so
        a graceful stop is exit 0."""

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return Server


def describe(state: ServerState, sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    model, guard = state.guard.current, state.guard
    every = f"every {guard.period:g} s" if guard.period else "at start only"
    signer = model.verified.signature.summary if model.verified.signature else ""
    return (
        f"ready: {model.name} on http://{host}:{port} (bundle {guard.folder}, {signer}; "
        f"re-verified {every}; {state.workers} worker(s) x {state.threads} ORT thread(s))"
    )


def serve(options: ServeOptions, log_config: dict | None = None) -> None:
    """Verify, bind, serve until SIGINT/SIGTERM, then stop gracefully. `log_config` (a
    logging dictConfig) is applied once the bundle verified and the port is bound."""
    state = prepare(options)
    sock = bind(options.host, options.port)
    if log_config is not None:
        logging.config.dictConfig(log_config)
    server = _server_class()(_config(state, options, log_config))
    original_startup = server.startup

    async def startup(sockets=None):
        await original_startup(sockets)
        if server.started:
            log.info(describe(state, sock))

    server.startup = startup
    server.run(sockets=[sock])


class RunningServer:
    """The server on a background thread: `with RunningServer(options) as s: s.url ...`."""

    def __init__(self, options: ServeOptions):
        self.state = prepare(options)
        self.sock = bind(options.host, options.port)
        self.server = _server_class()(_config(self.state, options, None))
        host, port = self.sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)

    def __exit__(self, *exc) -> None:
        self.stop()
