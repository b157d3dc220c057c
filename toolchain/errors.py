"""The ways a qtool call can fail, mapped to exit codes by the CLI.

Library code raises these instead of printing or exiting, so the Python API and the shell
see the same failure with the same one-line message. The library never spells a CLI flag:
an error about one argument names it with `param` (the Python parameter name, e.g. "bits"),
and the CLI turns that into the flag the user typed (`--bits`), as click's
`BadParameter(param_hint=...)` does. A message that points at another argument writes it
with `option(name)`: the CLI shows that parameter's flag, Python callers its name.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_OPTION = re.compile(r"\{opt:([A-Za-z_][A-Za-z0-9_]*)\}")


def option(name: str) -> str:
    """A reference to the parameter `name` inside an error message (see the module doc)."""
    return f"{{opt:{name}}}"


class QtoolError(Exception):
    """Bad usage or bad input (exit 2). The message says what is wrong and what to do."""

    exit_code = 2

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(_OPTION.sub(lambda m: f"`{m.group(1)}`", message))
        self.template = message
        self.param = param

    def render(self, spell: Callable[[str], str | None]) -> str:
        """The message with each `option(name)` spelled by `spell` (the CLI: its flag)."""
        return _OPTION.sub(lambda m: spell(m.group(1)) or f"`{m.group(1)}`", self.template)


class WorkFailed(Exception):
    """The input was fine but the work did not meet its check (exit 1), e.g. a parity check."""

    exit_code = 1


class MissingExtra(QtoolError):
    """An optional package is needed for this call; the message gives the install line."""

    def __init__(self, package: str, extra: str, purpose: str = "this"):
        super().__init__(
            f"{purpose} needs {package}, which is not installed here: pip install 'qtool[{extra}]'"
        )
        self.package = package
        self.extra = extra


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived (raised by the CLI's handler, like SIGINT's
    KeyboardInterrupt), so cleanup in `finally` blocks runs; exit 128 + `signum`."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = int(signum)
