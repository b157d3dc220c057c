"""The `qtool` command: a thin face over the library. Each command lives in qtool.commands.

Failures raised as QtoolError (bad input, exit 2) or WorkFailed (a check failed, exit 1)
become one line on stderr; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import sys
import traceback

import click

from qtool import __version__
from qtool.errors import QtoolError, WorkFailed
from qtool.report import err_console, error_line, set_quiet

COMMAND_MODULES = [
    "qtool.commands.inspect",
    "qtool.commands.eval",
    "qtool.commands.train",
    "qtool.commands.export",
    "qtool.commands.demo",
    "qtool.commands.package",
    "qtool.commands.verify",
    "qtool.commands.predict",
    "qtool.commands.quantize",
    "qtool.commands.bench",
    "qtool.commands.flip",
]


# Lazily imported packages of the optional extras -> the extra that installs them. A command
# that reaches one on a lean server install gets the install line, not a traceback.
OPTIONAL_MODULES = {
    "torch": "torch",
    "onnxscript": "torch",
    "sklearn": "data",
    "PIL": "data",
    "matplotlib": "plot",
    "reedsolo": "ecc",
}


class QtoolGroup(click.Group):
    """Maps library exceptions to exit codes and one-line messages."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (QtoolError, WorkFailed) as exc:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            error_line("error", str(exc))
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            err_console.print("interrupted")
            ctx.exit(130)
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
            error_line(
                "internal error",
                f"{type(exc).__name__}: {exc} "
                "(run with qtool --debug ... for the traceback and report it)",
            )
            ctx.exit(1)


@click.group(cls=QtoolGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qtool")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or remarks on stderr.")
@click.pass_context
def main(ctx: click.Context, debug: bool, quiet: bool) -> None:
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
      qtool package cnn.int8.onnx --out bundle --ecc    a bundle the server can verify
      qtool verify bundle ; qtool predict bundle x.png  refuse a corrupted copy
      qtool inspect cnn.int8.onnx                       what is in an ONNX file

    Exit codes: 0 ok, 1 a check failed, 2 bad usage or bad input.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    set_quiet(quiet)


def _register() -> None:
    import importlib

    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        main.add_command(module.command)


_register()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
