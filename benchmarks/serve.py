"""`qtool serve` under load and under faults, measured in one run on this machine.

- load: POST /v2/models/cnn/infer (one 8x8 digit per request, JSON tensors) from 1, 8 and 32
  concurrent clients (asyncio + httpx, one connection each), each level bounded by a request
  count and by time; requests/s and p50/p99 latency, against the ceiling of a bare ONNX
  Runtime loop on the same INT8 model, same thread count, in this process (1 caller, and as
  many callers as the server has workers).
- faults: while 8 clients keep sending, bits are flipped in the bundle's model file on disk
  (in place, seeded random weight bytes, a few times at random phases of the re-verify
  period). Per fault: when it was written, detected, repaired from the ECC parity and the
  verified copy reloaded; the 503 window; requests failed outside it (must be 0); wrong
  answers (every answer is compared with the clean model's).

The model is the demo's INT8 CNN (digits): the cached demo checkpoint, exported and quantised
by the CLI into --workdir, packaged with ECC and signed; the server runs as a subprocess
(`python -m qtool serve --trust`). Client and server share this machine's cores, so figures
are noisy on a busy box; the ratios come from one run.

Run: python benchmarks/serve.py [--workdir DIR] [--seconds 5] [--requests 3000]
       [--clients 1,8,32] [--workers 2] [--reverify 1] [--faults 3] [--bits 4] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from qtool.data.datasets import load_dataset
from qtool.deploy.bundle import package
from qtool.deploy.signing import generate_keypair
from qtool.machine import cpu_info
from qtool.modelfile.rewrite import to_flippable
from qtool.runtimes import make_session

CACHE = Path(os.environ.get("QTOOL_CACHE_DIR", Path.home() / ".cache" / "qtool"))


# --- the model and its bundle -----------------------------------------------------------------


def qtool(*args: str) -> None:
    print("$ qtool " + " ".join(args), file=sys.stderr)
    done = subprocess.run(
        [sys.executable, "-m", "qtool", "--quiet", *args], stdout=subprocess.DEVNULL
    )
    if done.returncode != 0:
        sys.exit(f"qtool {args[0]} failed (exit {done.returncode})")


def int8_cnn(workdir: Path) -> Path:
    """The demo's INT8 CNN with weights stored as raw bytes (so a flip is one bit on disk)."""
    out = workdir / "cnn.int8.raw.onnx"
    if out.exists():
        return out
    cached = sorted((CACHE / "checkpoints").glob("cnn-digits-seed0-*.pt"))
    weights = cached[-1] if cached else workdir / "cnn.pt"
    if not weights.exists():
        qtool("train", "cnn", "--data", "digits", "--out", str(weights), "--seed", "0")
    qtool("export", "cnn", "--weights", str(weights), "--out", str(workdir / "cnn.onnx"), "--force")
    qtool(
        "quantize",
        str(workdir / "cnn.onnx"),
        "--calib",
        "digits",
        "--out",
        str(workdir / "cnn.int8.onnx"),
        "--force",
    )
    out.write_bytes(to_flippable((workdir / "cnn.int8.onnx").read_bytes())[0])
    return out


def signed_bundle(model: Path, folder: Path) -> tuple[Path, Path]:
    keys = generate_keypair(folder / "release.key")
    bundle = package(model, folder / "bundle", ecc=True, sign_key=keys.private).out
    return bundle, keys.public


# --- the server -------------------------------------------------------------------------------


class Server:
    """`python -m qtool serve` as a subprocess; its stderr is kept with arrival times."""

    def __init__(self, bundle: Path, pub: Path, workers: int, threads: int, reverify: float):
        args = [sys.executable, "-m", "qtool", "serve", str(bundle), "--trust", str(pub)]
        args += ["--port", "0", "--workers", str(workers), "--threads", str(threads)]
        args += ["--reverify", f"{reverify}s"]
        self.proc = subprocess.Popen(
            args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        line = ""
        while "ready:" not in line:
            line = self.lines.get(timeout=120)
        self.url = re.search(r"http://[\d.]+:\d+", line).group(0)

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.log.append(line.rstrip())
            self.lines.put(line)

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout=60)


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(match.group(1)) if match else float("nan")


# --- clients ----------------------------------------------------------------------------------


def request_bodies(n: int, seed: int, name: str) -> tuple[list[bytes], np.ndarray]:
    test = load_dataset("digits:test").take(n, seed=seed)
    bodies = [
        json.dumps(
            {
                "inputs": [
                    {
                        "name": name,
                        "shape": [1, 1, 8, 8],
                        "datatype": "FP32",
                        "data": x.ravel().tolist(),
                    }
                ]
            }
        ).encode()
        for x in test.x
    ]
    return bodies, test.x


class Connection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams. httpx's AsyncClient costs
    ~1.5 ms of client CPU per request here and capped the measured rate near 500 req/s, so the
    load generator would have measured itself; this one sends a request and reads the
    status line, headers and Content-Length body, nothing else."""

    def __init__(self, url: str):
        self.host, port = url.split("//")[1].split(":")
        self.port = int(port)
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        try:
            lines = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
            fields = dict(line.lower().split(b": ", 1) for line in lines[1:] if b": " in line)
            payload = await self.reader.readexactly(int(fields[b"content-length"]))
        except (asyncio.IncompleteReadError, ConnectionError):
            self.close()
            raise
        if fields.get(b"connection") == b"close":
            self.close()
        return int(lines[0].split()[1]), payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def drive(url, model, bodies, clients, max_requests, seconds, stop=None) -> list[tuple]:
    """`clients` concurrent connections looping over `bodies` until `max_requests` are sent in
    all, `seconds` pass, or `stop` is set. Each result: (start, end, status or error name,
    argmax or None, body index)."""
    results: list[tuple] = []
    sent = 0
    deadline = time.monotonic() + seconds
    path = f"/v2/models/{model}/infer"

    async def loop(k: int) -> None:
        nonlocal sent
        conn, i = Connection(url), k
        while sent < max_requests and time.monotonic() < deadline:
            if stop is not None and stop.is_set():
                break
            sent += 1
            start, index = time.time(), i % len(bodies)
            try:
                status, payload = await conn.post(path, bodies[index])
                label = None
                if status == 200:
                    label = int(np.argmax(json.loads(payload)["outputs"][0]["data"]))
                results.append((start, time.time(), status, label, index))
            except (OSError, asyncio.IncompleteReadError, KeyError, ValueError) as exc:
                results.append((start, time.time(), type(exc).__name__, None, index))
            i += clients
        conn.close()

    await asyncio.gather(*(loop(k) for k in range(clients)))
    return results


def latency_row(results: list[tuple]) -> tuple[float, float, float, int]:
    ok = [r for r in results if r[2] == 200]
    if not ok:
        return 0.0, float("nan"), float("nan"), len(results)
    span = max(r[1] for r in ok) - min(r[0] for r in ok)
    lat = np.array([r[1] - r[0] for r in ok]) * 1e3
    return (
        len(ok) / span,
        float(np.percentile(lat, 50)),
        float(np.percentile(lat, 99)),
        len(results) - len(ok),
    )


def bare_ort(model: Path, x: np.ndarray, threads: int, callers: int, seconds: float):
    """Batch-1 session.run in a loop (`callers` threads on one session): the ceiling."""
    session = make_session(model, threads=threads, spinning=False)
    name = session.get_inputs()[0].name
    for i in range(20):
        session.run(None, {name: x[i % len(x)][None]})

    def loop(k: int) -> list[float]:
        lat, i, end = [], k, time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            session.run(None, {name: x[i % len(x)][None]})
            lat.append(time.perf_counter() - t0)
            i += callers
        return lat

    with ThreadPoolExecutor(callers) as pool:
        lats = list(pool.map(loop, range(callers)))
    every = np.concatenate([np.array(v) for v in lats]) * 1e3
    return len(every) / seconds, float(np.percentile(every, 50)), float(np.percentile(every, 99))


# --- measurements -----------------------------------------------------------------------------


def measure_load(server: Server, model: Path, args, expected: np.ndarray, bodies, x) -> None:
    print(
        f"\nload: POST /v2/models/cnn/infer, batch 1, {args.workers} server worker(s) x "
        f"{args.threads} ORT thread(s); each level <= {args.requests} requests or {args.seconds} s"
    )
    rows = []
    for callers in sorted({1, args.workers}):
        rps, p50, p99 = bare_ort(model, x, args.threads, callers, args.seconds)
        rows.append((f"bare ORT loop, {callers} caller(s)", "", rps, p50, p99, "", ""))
    ceiling = rows[0][2]
    for clients in args.clients:
        results = asyncio.run(
            drive(server.url, "cnn", bodies, clients, args.requests, args.seconds)
        )
        rps, p50, p99, failed = latency_row(results)
        wrong = sum(1 for r in results if r[2] == 200 and r[3] != expected[r[4]])
        rows.append(
            (
                f"qtool serve, {clients} client(s)",
                len(results),
                rps,
                p50,
                p99,
                f"{rps / ceiling:.2f}",
                f"{failed} failed, {wrong} wrong",
            )
        )
    print(f"{'':34} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'/ bare 1':>8}")
    for name, n, rps, p50, p99, ratio, note in rows:
        print(f"{name:34} {n!s:>8} {rps:8.0f} {p50:8.3f} {p99:8.3f} {ratio:>8}  {note}")


def flip_bits(bundle: Path, rng: random.Random, bits: int) -> list[tuple[str, int, int]]:
    """XOR one random bit in each of `bits` random weight bytes of the model file, in place."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    weights = [r for r in manifest["initializers"] if r["role"] == "weight" and r["length"]]
    total = sum(r["length"] for r in weights)
    flips = []
    with open(bundle / manifest["model"]["file"], "r+b") as fh:
        for pos in rng.sample(range(total), bits):
            for r in weights:
                if pos < r["length"]:
                    break
                pos -= r["length"]
            offset, bit = r["offset"] + pos, rng.randrange(8)
            fh.seek(offset)
            byte = fh.read(1)[0]
            fh.seek(offset)
            fh.write(bytes([byte ^ (1 << bit)]))
            flips.append((r["name"], pos, bit))
    return flips


def model_path(bundle: Path) -> Path:
    return bundle / json.loads((bundle / "manifest.json").read_text())["model"]["file"]


async def inject(url: str, bundle: Path, args, rng: random.Random) -> tuple[list[tuple], str]:
    """Flip bits `args.faults` times at random phases of the period; after each, wait until
    the server reloaded a verified copy. Returns (written, detected, repaired, restored,
    flips) per fault, and the last /metrics text."""
    timeline = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for _ in range(args.faults):
            await asyncio.sleep(args.reverify * rng.uniform(0.5, 1.5))
            flips = flip_bits(bundle, rng, args.bits)
            written, restored = time.time(), 0.0
            while restored < written and time.time() < written + 5 * args.reverify + 30:
                await asyncio.sleep(0.02)
                text = (await client.get("/metrics")).text
                restored = metric(text, "qtool_restored_last_timestamp_seconds")
            detected = metric(text, "qtool_mismatch_last_timestamp_seconds")
            repaired = metric(text, "qtool_repaired_last_timestamp_seconds")
            timeline.append((written, detected, repaired, restored, flips))
        await asyncio.sleep(1.0)
        return timeline, (await client.get("/metrics")).text


async def fault_run(server: Server, bundle: Path, args, bodies, expected) -> None:
    original = model_path(bundle).read_bytes()
    stop = asyncio.Event()
    load = asyncio.create_task(drive(server.url, "cnn", bodies, 8, 10**9, 3600, stop))
    start = time.time()
    timeline, text = await inject(server.url, bundle, args, random.Random(args.seed))
    stop.set()
    results = await load
    print(
        f"\nfaults: {args.bits} bit(s) flipped in the model file on disk, {args.faults} times, "
        f"under load from 8 clients; re-verify every {args.reverify} s (seed {args.seed}); "
        f"one pass takes {1e3 * metric(text, 'qtool_verification_last_duration_seconds'):.1f} ms "
        f"for a {model_path(bundle).stat().st_size / 1e3:.0f} kB model"
    )
    print(
        f"{'fault':>5} {'written s':>9} {'detected +s':>11} {'repaired +s':>11} "
        f"{'restored +s':>11} {'503s':>5} {'503 window ms':>13}  flipped (tensor[byte] bit)"
    )
    windows = [(detected, restored) for _, detected, _, restored, _ in timeline]

    def in_window(r: tuple, window: tuple[float, float]) -> bool:
        return r[1] >= window[0] - 0.05 and r[0] <= window[1] + 0.05

    for k, (written, detected, repaired, restored, flips) in enumerate(timeline, 1):
        n503 = sum(1 for r in results if r[2] == 503 and in_window(r, windows[k - 1]))
        print(
            f"{k:5} {written - start:9.3f} {detected - written:11.3f} {repaired - written:11.3f} "
            f"{restored - written:11.3f} {n503:5} {1e3 * (restored - detected):13.1f}  "
            + ", ".join(f"{name}[{byte}] bit {bit}" for name, byte, bit in flips)
        )
    failed = [
        r
        for r in results
        if r[2] != 200 and not (r[2] == 503 and any(in_window(r, w) for w in windows))
    ]
    wrong = [r for r in results if r[2] == 200 and r[3] != expected[r[4]]]
    after = [r for r in wrong if any(r[0] > d for d, _ in windows)]
    delays = [detected - written for written, detected, *_ in timeline]
    print(
        f"requests {len(results)}: {sum(r[2] == 200 for r in results)} answered, "
        f"{sum(r[2] == 503 for r in results)} 503 inside the windows, {len(failed)} failed "
        f"outside them; {len(wrong)} wrong answers ({len(after)} after a detection); "
        f"detection delay max {max(delays):.3f} s vs period {args.reverify} s; disk restored "
        f"byte-identical: {model_path(bundle).read_bytes() == original}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reverify", type=float, default=1.0)
    parser.add_argument("--faults", type=int, default=3)
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    cpu = cpu_info()
    flags = [
        f
        for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8")
        if f in cpu["flags"]
    ]
    name = cpu.get("model", cpu["processor"])
    print(f"CPU: {name}, {os.cpu_count()} logical CPUs, {' '.join(flags)}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="qtool-serve-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    model = int8_cnn(workdir)
    session = make_session(model)
    name = session.get_inputs()[0].name
    bodies, x = request_bodies(256, args.seed, name)
    expected = session.run(None, {name: x})[0].argmax(axis=1)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        bundle, pub = signed_bundle(model, Path(tmp))
        server = Server(bundle, pub, args.workers, args.threads, args.reverify)
        try:
            measure_load(server, model, args, expected, bodies, x)
            asyncio.run(fault_run(server, bundle, args, bodies, expected))
        finally:
            code = server.stop()
        print(f"server stopped on SIGTERM with exit code {code}")
        print("server log (qtool lines):")
        for line in server.log:
            if "qtool.serve" in line:
                print("  " + line[:220])


if __name__ == "__main__":
    main()
