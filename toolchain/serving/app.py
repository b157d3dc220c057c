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
import functools
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
        ("qtool_restored_last_timestamp_seconds", "gauge", "Last reload (unix, 0 = never).",
         g.last_restored_at, None),
        ("qtool_repairs_total", "counter", "Repairs from the ECC parity.", g.repairs, None),
        ("qtool_reloads_total", "counter", "Reloads of a verified copy.", g.reloads, None),
        ("qtool_inference_workers", "gauge", "Inference threads (--workers).", state.workers,
         None),
        ("qtool_inference_inflight", "gauge", "Inference runs in flight.", state.running.now,
         None),
        ("qtool_inference_inflight_peak", "gauge", "Most inference runs in flight at once.",
         state.running.peak, None),
    ]  # fmt: skip


def build_app(state: ServerState) -> Starlette:
    """The app over `state` (its guard holds the verified model)."""
    guard, limits = state.guard, state.limits

    def endpoint(label: str):
        def wrap(handler):
            @functools.wraps(handler)
            async def run(request: Request) -> Response:
                start = time.perf_counter()
                try:
                    response = await handler(request)
                except RequestError as exc:
                    response = JSONResponse({"error": str(exc)}, status_code=exc.status)
                except Exception as exc:  # never let one request take the server down
                    log.exception("internal error on %s %s", request.method, request.url.path)
                    error = f"internal error: {type(exc).__name__}: {exc}"
                    response = JSONResponse({"error": error}, status_code=500)
                state.metrics.observe(label, response.status_code, time.perf_counter() - start)
                return response

            return run

        return wrap

    def served(request: Request) -> ServedModel:
        model = guard.current
        if request.path_params["name"] != model.name:
            raise RequestError(
                404,
                f"unknown model {request.path_params['name']!r}; this server runs {model.name!r}",
            )
        return model

    def require_ready() -> None:
        if not guard.ready:
            raise RequestError(503, "the model failed re-verification; waiting for a verified copy")

    async def run_checked(job) -> Response:
        """Run `job` on an inference thread; withhold its answer if a detection came between."""
        epoch = guard.epoch
        result = await asyncio.get_running_loop().run_in_executor(state.executor, job)
        if guard.epoch != epoch or not guard.ready:
            raise RequestError(503, "the model failed re-verification during this request")
        return JSONResponse(result)

    @endpoint("live")
    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    @endpoint("ready")
    async def ready(request: Request) -> Response:
        return JSONResponse({"ready": guard.ready}, status_code=200 if guard.ready else 503)

    @endpoint("server_metadata")
    async def server_metadata(request: Request) -> Response:
        return JSONResponse({"name": "qtool", "version": __version__, "extensions": ["classify"]})

    @endpoint("model_metadata")
    async def model_metadata(request: Request) -> Response:
        return JSONResponse(served(request).metadata())

    @endpoint("model_ready")
    async def model_ready(request: Request) -> Response:
        name = served(request).name
        return JSONResponse(
            {"name": name, "ready": guard.ready}, status_code=200 if guard.ready else 503
        )

    @endpoint("infer")
    async def infer(request: Request) -> Response:
        model = served(request)
        body = await read_body(request, limits.max_body_bytes)
        require_ready()

        def job() -> dict:
            parsed = parse_infer_request(body, model.inputs, model.outputs, limits.max_batch)
            return model.infer(parsed, state.running)

        return await run_checked(job)

    @endpoint("classify")
    async def classify(request: Request) -> Response:
        model = served(request)
        body = await read_body(request, limits.max_body_bytes)
        require_ready()
        if not body:
            raise RequestError(400, "the body is empty: send the image or DICOM file as the body")
        return await run_checked(
            lambda: model.classify(body, limits.max_pixels, limits.max_batch, state.running)
        )

    @endpoint("metrics")
    async def metrics(request: Request) -> Response:
        return Response(state.metrics.render(gauges(state)), media_type=CONTENT_TYPE)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        """Unknown paths (404) and methods (405) get the protocol's error object too."""
        state.metrics.observe("other", exc.status_code, 0.0)
        message = f"{exc.detail}: {request.method} {request.url.path}"
        return JSONResponse({"error": message}, status_code=exc.status_code)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        guard.start()
        yield
        guard.stop()
        state.executor.shutdown(wait=True)
        log.info("stopped: re-verification and inference threads ended")

    model = "/v2/models/{name}"
    routes = [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        Route(model, model_metadata),
        Route(f"{model}/ready", model_ready),
        Route(f"{model}/infer", infer, methods=["POST"]),
        Route(f"{model}/classify", classify, methods=["POST"]),
        Route("/metrics", metrics),
    ]
    return Starlette(
        routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan
    )
