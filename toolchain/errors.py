"""The two ways a qtool command can fail, mapped to exit codes by the CLI.

Library code raises these instead of printing or exiting, so the Python API and the
shell see the same failure with the same one-line message.
"""

from __future__ import annotations


class QtoolError(Exception):
    """Bad usage or bad input (exit 2). The message says what is wrong and what to do."""

    exit_code = 2


class WorkFailed(Exception):
    """The input was fine but the work did not meet its check (exit 1), e.g. a parity check."""

    exit_code = 1
