"""The `qtool` command: a thin face over the library. Commands load lazily from the registry
in `qtool.commands`, so `qtool --help` imports none of them.

Failures raised as QtoolError (bad input, exit 2) or WorkFailed (a check failed, exit 1)
become one line on stderr; a QtoolError naming a `param` is shown with the flag the user
typed; a limit that was exceeded (`qtool.limits`) says how to raise it. Click's own usage
errors are one line too. `--debug` shows the traceback instead.

Signals: SIGTERM and SIGHUP are turned into an exception (as SIGINT already is), once, here,
so every `finally` block runs and no temp file or staging folder outlives the process (exit
128 + the signal number). ONNX Runtime's own log lines are silenced where sessions are made
(`qtool.runtimes.session`).
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
import threading
import traceback
from collections.abc import Iterator

import click

from qtool import __version__, limits
from qtool.commands import COMMANDS
from qtool.errors import QtoolError, Terminated, WorkFailed
from qtool.report import err_console, error_line, set_quiet

# Lazily imported packages of the optional extras -> the extra that installs them. A command
# that reaches one on a lean server install gets the install line, not a traceback.
OPTIONAL_MODULES = {
    "torch": "torch",
    "onnxscript": "torch",
    "sklearn": "data",
    "PIL": "data",
    "matplotlib": "plot",
    "reedsolo": "ecc",
    "cryptography": "sign",
    "pydicom": "dicom",
    "starlette": "serve",
    "uvicorn": "serve",
    "distributed": "dask",
    "dask": "dask",
}


def flag_for(command: click.Command | None, param: str | None) -> str | None:
    """The flag (or METAVAR) a user types for the Python parameter `param` of `command`."""
    if command is None or param is None:
        return None
    for p in command.params:
        if p.name == param:
            if isinstance(p, click.Option):
                longs = [o for o in p.opts if o.startswith("--")]
                return (longs or p.opts)[0]
            return p.human_readable_name
    return None


class QtoolGroup(click.Group):
    """Lazy command loading, exit codes and one-line messages for every failure."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return COMMANDS.names()

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        entry = COMMANDS.get(name)
        return importlib.import_module(entry.module).command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, entry.short_help) for name, entry in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            with signals_raise():
                rv = super().main(args, prog_name or "qtool", complete_var, False, **extra)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "qtool"
            error_line("error", f"{exc.format_message()} (see {where} --help)")
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            error_line("error", exc.format_message())
            sys.exit(exc.exit_code)
        except click.Abort:
            err_console.print("aborted")
            sys.exit(130)
        except KeyboardInterrupt as exc:  # a signal while click parsed or cleaned up
            sys.exit(128 + getattr(exc, "signum", signal.SIGINT))
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (QtoolError, WorkFailed) as exc:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            invoked = self._invoked(ctx)
            message = (
                exc.render(lambda name: flag_for(invoked, name))
                if isinstance(exc, QtoolError)
                else str(exc)
            )
            flag = flag_for(invoked, getattr(exc, "param", None))
            if isinstance(exc, limits.LimitExceeded) and not (flag or "").startswith("--max-"):
                command = ctx.invoked_subcommand
                message += f"; to allow it: qtool --limit {exc.limit}=N {command} ..."
            error_line("error", f"{flag}: {message}" if flag else message)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            err_console.print("interrupted" if signum == signal.SIGINT else "terminated")
            ctx.exit(128 + signum)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except ModuleNotFoundError as exc:
            extra = OPTIONAL_MODULES.get((exc.name or "").split(".")[0])
            if extra is None or (ctx.obj and ctx.obj.get("debug")):
                raise
            error_line(
                "error",
                f"this command needs {exc.name.split('.')[0]}, which is not installed here: "
                f"pip install 'qtool[{extra}]'",
            )
            ctx.exit(2)
        except Exception as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            if RECEIVED or _interrupted(exc):  # e.g. an extension's import cut short by it
                signum = RECEIVED[-1] if RECEIVED else signal.SIGINT
                err_console.print("interrupted" if signum == signal.SIGINT else "terminated")
                ctx.exit(128 + signum)
            error_line(
                "internal error",
                f"{type(exc).__name__}: {exc} "
                "(run with qtool --debug ... for the traceback and report it)",
            )
            ctx.exit(1)

    def _invoked(self, ctx: click.Context) -> click.Command | None:
        name = ctx.invoked_subcommand
        return self.get_command(ctx, name) if name else None


@click.group(cls=QtoolGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qtool")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or remarks on stderr.")
@click.option(
    "--limit",
    "limit_values",
    multiple=True,
    metavar="NAME=VALUE",
    envvar="QTOOL_LIMITS",
    help="Raise a resource limit for this call (repeatable; K/M/G suffixes): "
    + ", ".join(f"{name} ({default})" for name, default, _ in limits.describe())
    + ". See the README's table.",
)
@click.pass_context
def main(ctx: click.Context, debug: bool, quiet: bool, limit_values: tuple[str, ...]) -> None:
    """qtool: take a trained model to a verified INT8 ONNX model for CPU servers.

    \b
    The pipeline (each stage reads and writes plain files):
      qtool demo                                        all of it, on the built-in models
      qtool train cnn --out cnn.pt                      zoo model: cnn, sasa or mlp
      qtool export cnn --weights cnn.pt --out cnn.onnx  parity-checked ONNX
      qtool quantize cnn.onnx --calib digits --out cnn.int8.onnx --max-accuracy-drop 0.5
      qtool eval cnn.int8.onnx --data digits            accuracy in ONNX Runtime
      qtool bench cnn.onnx cnn.int8.onnx --batch 1,32   latency and energy, FP32 vs INT8
      qtool flip cnn.int8.onnx --bits 20 --out f.onnx   bit flips in the stored weights
      qtool keygen --out release.key                    a key pair to sign bundles with
      qtool package cnn.int8.onnx --out bundle --ecc --sign release.key
      qtool verify bundle --trust release.key.pub       refuse a corrupted or forged copy
      qtool predict bundle x.png scan.dcm               classify images and DICOM
      qtool serve bundle --trust release.key.pub        Open Inference Protocol over HTTP
      qtool inspect cnn.int8.onnx                       what is in an ONNX file

    Exit codes: 0 ok, 1 a check failed, 2 bad usage or bad input.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    set_quiet(quiet)
    try:
        values = limits.parse_assignments(limit_values)
    except QtoolError as exc:
        raise click.BadParameter(str(exc), param_hint="--limit") from None
    ctx.with_resource(limits.using(**values))


RECEIVED: list[int] = []  # termination signals this process received (SIGINT: see below)


def _interrupted(exc: BaseException) -> bool:
    """True when a KeyboardInterrupt (SIGINT, or our SIGTERM/SIGHUP) caused `exc`."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM/SIGHUP raise Terminated (like SIGINT's KeyboardInterrupt) for this call, so
    `finally` blocks remove temp files and staging folders; the old handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    RECEIVED.clear()

    def raise_terminated(signum, frame):
        RECEIVED.append(signum)
        raise Terminated(signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous[signum] = signal.signal(signum, raise_terminated)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":  # pragma: no cover
    main()
