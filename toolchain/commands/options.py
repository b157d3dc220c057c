"""Options and output rules shared by every command, declared once so they read the same.

One rule for every output, reports included: all output paths are checked before any work
starts (none may be an input or another output of the same call; an existing one is replaced
only with --force), then written atomically (qtool.outputs).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import click

from qtool.outputs import check_distinct, check_output_path, write_json


def json_option(func):
    return click.option(
        "--json",
        "json_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also write the results as JSON to this file.",
    )(func)


def force_option(func):
    return click.option(
        "--force", is_flag=True, help="Replace existing output files (never an input)."
    )(func)


def trust_option(func):
    return click.option(
        "--trust",
        "trust",
        multiple=True,
        metavar="PUB[,PUB...]",
        help="Run only bundles signed by one of these public keys (KEY.pub from qtool keygen; "
        "several for key rotation). Without it the signer is reported as unverified.",
    )(func)


def trust_list(values) -> dict | None:
    """The --trust values (comma lists, repeatable) as a loaded trust list; None when absent."""
    from qtool.deploy.signing import load_trust

    paths = split_list(values)
    return load_trust([Path(p) for p in paths], param="trust") if paths else None


def cluster_options(func):
    """--cluster and --cluster-timeout: where independent units run (the `dask` extra)."""
    from qtool.cluster.spec import DEFAULT_TIMEOUT

    func = click.option(
        "--cluster-timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=DEFAULT_TIMEOUT,
        show_default=True,
        help="--cluster ADDRESS: seconds to reach the scheduler and see a worker (then exit 2).",
    )(func)
    return click.option(
        "--cluster",
        "cluster",
        default=None,
        metavar="local:N|tcp://HOST:PORT",
        help="Run the independent units on Dask: local:N starts N worker processes here; "
        "tcp://HOST:PORT connects to a running scheduler (needs pip install 'qtool[dask]'). "
        "Results are the same as without it.",
    )(func)


def cluster_spec(text: str | None):
    """The --cluster value as a ClusterSpec (None without one); parsing imports no Dask."""
    from qtool.cluster.spec import parse_cluster

    return None if text is None else parse_cluster(text)


def model_argument(func):
    return click.argument("model", type=click.Path(path_type=Path))(func)


def split_list(values: str | Iterable[str] | None) -> list[str]:
    """'a,b' or ('a', 'b,c') -> ['a', 'b', 'c'] (empty items dropped)."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    return [v.strip() for item in items for v in str(item).split(",") if v.strip()]


def int_list(text: str, param: str, *, minimum: int = 1) -> list[int]:
    """'1,8,32' -> [1, 8, 32], as a click error on the named option when malformed."""
    try:
        values = [int(v) for v in split_list(text)]
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: give integers like 1,8,32", param_hint=f"--{param.replace('_', '-')}"
        ) from None
    if not values or any(v < minimum for v in values):
        raise click.BadParameter(
            f"{text!r}: give integers >= {minimum}, like 1,8,32",
            param_hint=f"--{param.replace('_', '-')}",
        )
    return values


def check_outputs(
    force: bool, inputs: Iterable[str | Path | None] = (), **outputs: Path | None
) -> None:
    """Check every named output (param name -> path) before the work starts."""
    check_distinct(outputs)
    inputs = [p for p in inputs if p is not None]
    for name, path in outputs.items():
        if path is not None:
            kind = "dir" if name.endswith("_dir") else "file"
            check_output_path(path, force, inputs, kind=kind, param=name)


def write_json_report(path: Path | None, payload) -> None:
    """Write a --json report (its path was checked by `check_outputs` before the work)."""
    if path is not None:
        write_json(path, payload)
