"""The HTTP face of `qtool serve`: a Starlette app speaking the Open Inference Protocol v2.

Routes (KServe/Triton "v2" REST, plus one convenience endpoint and metrics):
  GET  /v2/health/live              {"live": true}
  GET  /v2/health/ready             {"ready": true} 200, or 503 while unverified
  GET  /v2                          server metadata
  GET  /v2/models/{name}            model metadata (inputs, outputs; -1 for variable dims)
  GET  /v2/models/{name}/ready      {"name", "ready"} 200 / 503
  POST /v2/models/{name}/infer      JSON tensors in and out
  POST /v2/models/{name}/classify   body = one image or DICOM file -> probabilities, names
  GET  /metrics                     Prometheus text format

Every request is answered: a bad one with a 4xx and `{"error": "one line"}`, an unexpected
failure with a 500 (logged with its traceback); none ends the server. Bodies are read up to
the limit and no further (413). Inference runs on `workers` threads; answers computed while
the guard detected a mismatch are withheld (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qtool import __version__
from qtool.serving.guard import Guard
from qtool.serving.metrics import CONTENT_TYPE, Metrics
from qtool.serving.model import Concurrency, ServedModel
from qtool.serving.protocol import RequestError, parse_infer_request

log = logging.getLogger("qtool.serve")


@dataclass(frozen=True)
class Limits:
    """What one request may cost; each has a `qtool serve` flag."""

    max_body_bytes: int = 16 * 2**20
    max_batch: int = 64
    max_pixels: int = 2**24  # decoded pixel values of one upload (frames x H x W x C)


@dataclass
class ServerState:
    guard: Guard
    limits: Limits = field(default_factory=Limits)
    workers: int = 1
    threads: int | None = None
    metrics: Metrics = field(default_factory=Metrics)
    running: Concurrency = field(default_factory=Concurrency)
    executor: ThreadPoolExecutor | None = None

    def __post_init__(self) -> None:
        if self.executor is None:
            self.executor = ThreadPoolExecutor(self.workers, thread_name_prefix="qtool-infer")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, f"malformed Content-Length {declared!r}")
        if int(declared) > limit:
            raise RequestError(413, f"the body is {int(declared):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def gauges(state: ServerState) -> list[tuple[str, str, str, float, dict | None]]:
    g, model = state.guard, state.guard.current
    sig = model.verified.signature
    return [
        ("qtool_model_verified", "gauge", "1 while the served bytes verify; 0 = answering 503.",
         float(g.ready), None),
        ("qtool_model_info", "gauge", "The served bundle.", 1.0,
         {"model": model.name, "manifest_sha256": g.manifest_sha256,
          "signature": sig.status if sig else "unknown"}),
        ("qtool_verifications_total", "counter", "Re-verification passes by result.",
         g.checks["ok"], {"result": "ok"}),
        ("qtool_verifications_total", "counter", "", g.checks["mismatch"], {"result": "mismatch"}),
        ("qtool_verification_period_seconds", "gauge", "Re-verification period (0 = off).",
         g.period or 0.0, None),
        ("qtool_verification_last_timestamp_seconds", "gauge", "End of the last pass (unix).",
         g.last_check_at, None),
        ("qtool_verification_last_duration_seconds", "gauge", "Duration of the last pass.",
         g.last_check_seconds, None),
        ("qtool_mismatch_last_timestamp_seconds", "gauge", "Last detection (unix, 0 = never).",
         g.last_mismatch_at, None),
        ("qtool_repaired_last_timestamp_seconds", "gauge", "Last ECC repair (unix, 0 = never).",
         g.last_repaired_at, None),
        ("qtool_restored_last_timestamp_seconds", "gauge", "Last reload (unix, 0 = never).",
         g.last_restored_at, None),
        ("qtool_repairs_total", "counter", "Repairs from the ECC parity.", g.repairs, None),
        ("qtool_reloads_total", "counter", "Reloads of a verified copy.", g.reloads, None),
        ("qtool_inference_workers", "gauge", "Inference threads.", state.workers,
         None),
        ("qtool_inference_inflight", "gauge", "Inference runs in flight.", state.running.now,
         None),
        ("qtool_inference_inflight_peak", "gauge", "Most inference runs in flight at once.",
         state.running.peak, None),
    ]  # fmt: skip


class Handlers:
    """The route handlers over one `ServerState`; each answers, never raises."""

    def __init__(self, state: ServerState):
        self.state = state
        self.guard = state.guard
        self.limits = state.limits

    async def answer(self, label: str, request: Request, handler) -> Response:
        """Run one handler: RequestError -> its status and {"error"}; anything else -> 500
        (logged); every outcome counted and timed under `label`."""
        start = time.perf_counter()
        try:
            response = await handler(request)
        except RequestError as exc:
            response = JSONResponse({"error": str(exc)}, status_code=exc.status)
        except Exception as exc:  # never let one request take the server down
            log.exception("internal error on %s %s", request.method, request.url.path)
            error = f"internal error: {type(exc).__name__}: {exc}"
            response = JSONResponse({"error": error}, status_code=500)
        self.state.metrics.observe(label, response.status_code, time.perf_counter() - start)
        return response

    def served(self, request: Request) -> ServedModel:
        model = self.guard.current
        if request.path_params["name"] != model.name:
            raise RequestError(
                404,
                f"unknown model {request.path_params['name']!r}; this server runs {model.name!r}",
            )
        return model

    def require_ready(self) -> None:
        if not self.guard.ready:
            raise RequestError(503, "the model failed re-verification; waiting for a verified copy")

    async def run_checked(self, job) -> Response:
        """Run `job` on an inference thread; withhold its answer if a detection came between."""
        epoch = self.guard.epoch
        result = await asyncio.get_running_loop().run_in_executor(self.state.executor, job)
        if self.guard.epoch != epoch or not self.guard.ready:
            raise RequestError(503, "the model failed re-verification during this request")
        return JSONResponse(result)

    def readiness(self, payload: dict) -> Response:
        return JSONResponse(payload, status_code=200 if self.guard.ready else 503)

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        return self.readiness({"ready": self.guard.ready})

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse({"name": "qtool", "version": __version__, "extensions": ["classify"]})

    async def model_metadata(self, request: Request) -> Response:
        return JSONResponse(self.served(request).metadata())

    async def model_ready(self, request: Request) -> Response:
        return self.readiness({"name": self.served(request).name, "ready": self.guard.ready})

    async def infer(self, request: Request) -> Response:
        model, limits = self.served(request), self.limits
        body = await read_body(request, limits.max_body_bytes)
        self.require_ready()

        def job() -> dict:
            parsed = parse_infer_request(body, model.inputs, model.outputs, limits.max_batch)
            return model.infer(parsed, self.state.running)

        return await self.run_checked(job)

    async def classify(self, request: Request) -> Response:
        model, limits = self.served(request), self.limits
        body = await read_body(request, limits.max_body_bytes)
        self.require_ready()
        if not body:
            raise RequestError(400, "the body is empty: send the image or DICOM file as the body")
        return await self.run_checked(
            lambda: model.classify(body, limits.max_pixels, limits.max_batch, self.state.running)
        )

    async def metrics(self, request: Request) -> Response:
        return Response(self.state.metrics.render(gauges(self.state)), media_type=CONTENT_TYPE)

    async def http_error(self, request: Request, exc: HTTPException) -> Response:
        """Unknown paths (404) and methods (405) get the protocol's error object too."""
        self.state.metrics.observe("other", exc.status_code, 0.0)
        message = f"{exc.detail}: {request.method} {request.url.path}"
        return JSONResponse({"error": message}, status_code=exc.status_code)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette):
        self.guard.start()
        yield
        self.guard.stop()
        self.state.executor.shutdown(wait=True)
        log.info("stopped: re-verification and inference threads ended")


def build_app(state: ServerState) -> Starlette:
    """The app over `state` (its guard holds the verified model)."""
    h = Handlers(state)

    def route(path: str, name: str, methods: tuple[str, ...] = ("GET",)) -> Route:
        handler = getattr(h, name)

        async def endpoint(request: Request) -> Response:
            return await h.answer(name, request, handler)

        return Route(path, endpoint, methods=list(methods), name=name)

    model = "/v2/models/{name}"
    routes = [
        route("/v2/health/live", "live"),
        route("/v2/health/ready", "ready"),
        route("/v2", "server_metadata"),
        route(model, "model_metadata"),
        route(f"{model}/ready", "model_ready"),
        route(f"{model}/infer", "infer", ("POST",)),
        route(f"{model}/classify", "classify", ("POST",)),
        route("/metrics", "metrics"),
    ]
    return Starlette(
        routes=routes, exception_handlers={HTTPException: h.http_error}, lifespan=h.lifespan
    )
