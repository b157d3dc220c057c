"""`qtool serve`: a verified bundle behind the Open Inference Protocol, re-verified while
it serves."""

from __future__ import annotations

import re
from pathlib import Path

import click

from qtool.commands.options import split_list, trust_list, trust_option

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """'60s', '500ms', '5m', '1h' or '30' (seconds) -> seconds; 'off' -> None."""
    if text.strip().lower() == "off":
        return None
    match = DURATION.match(text)
    if not match:
        raise click.BadParameter(
            f"{text!r}: give a duration like 60s, 500ms or 5m, or off", param_hint="--reverify"
        )
    return float(match.group(1)) * UNIT_SECONDS[match.group(2) or "s"]


def log_config(level: str) -> dict:
    """One format for qtool's and uvicorn's lines on stderr, with timestamps."""
    handler = {"handlers": ["stderr"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {name: handler for name in ("qtool.serve", "uvicorn", "uvicorn.access")},
    }


@click.command("serve")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: any free."
)
@trust_option
@click.option(
    "--provider",
    "providers",
    multiple=True,
    help="Execution provider(s) in order of preference (qtool bench --list-providers): the "
    "first usable here runs (default: the one the bundle was validated on, else cpu).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Inference threads in this one process, sharing one verified session.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="ONNX Runtime intra-op threads per run [default: CPUs / workers].",
)
@click.option(
    "--reverify",
    default="60s",
    show_default=True,
    help="Re-verify held bytes and disk this often (500ms, 60s, 5m) or off.",
)
@click.option(
    "--no-repair",
    is_flag=True,
    help="Do not repair the bundle from its ECC parity; stay at 503 until it is restored.",
)
@click.option(
    "--max-body-mb",
    type=click.FloatRange(min=0.001),
    default=16.0,
    show_default=True,
    help="Largest request body.",
)
@click.option(
    "--max-batch", type=click.IntRange(min=1), default=64, show_default=True, help="Largest batch."
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=2**24,
    show_default=True,
    help="Largest upload, in decoded pixel values (frames x rows x columns x channels).",
)
@click.option("--access-log", is_flag=True, help="Log every request (uvicorn's access log).")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def command(
    bundle: Path,
    host: str,
    port: int,
    trust,
    providers,
    workers: int,
    threads: int | None,
    reverify: str,
    no_repair: bool,
    max_body_mb: float,
    max_batch: int,
    max_pixels: int,
    access_log: bool,
    log_level: str,
) -> None:
    """Serve BUNDLE over HTTP with the Open Inference Protocol (KServe/Triton v2 REST).

    The bundle is verified (with --trust: its signature first) before the server listens; a
    tampered, unsigned or untrusted bundle is refused (exit 1). While serving, the bytes the
    model runs from and the files on disk are re-verified every --reverify; on a mismatch
    /infer answers 503 until a verified copy is reloaded (repaired from ECC parity when the
    bundle has it). Ctrl-C or SIGTERM stops it gracefully.

    \b
    Endpoints (NAME is the bundle's model name, e.g. cnn):
      GET  /v2/health/live, /v2/health/ready, /v2, /v2/models/NAME
      POST /v2/models/NAME/infer     JSON tensors (Open Inference Protocol)
      POST /v2/models/NAME/classify  body: a PNG/JPEG/DICOM file -> class probabilities
      GET  /metrics                  Prometheus text format

    \b
    Examples:
      qtool serve bundle/ --trust release.key.pub
      qtool serve bundle/ --trust release.key.pub --port 8080 --workers 2 --reverify 10s
      curl --data-binary @scan.dcm http://127.0.0.1:8000/v2/models/cnn/classify
    """
    from qtool.limits import check as check_limit
    from qtool.serving.app import Limits
    from qtool.serving.server import ServeOptions, serve

    check_limit("threads", workers, "inference threads", param="workers")
    check_limit("threads", threads or 1, "ONNX Runtime threads per run", param="threads")
    options = ServeOptions(
        bundle=bundle,
        host=host,
        port=port,
        trust=trust_list(trust),
        providers=split_list(providers) or None,
        workers=workers,
        threads=threads,
        reverify=parse_duration(reverify),
        repair=not no_repair,
        limits=Limits(int(max_body_mb * 2**20), max_batch, max_pixels),
        access_log=access_log,
    )
    serve(options, log_config=log_config(log_level))
