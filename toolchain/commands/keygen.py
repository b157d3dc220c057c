"""`qtool keygen`: an Ed25519 key pair for signing bundles (private 0600, public beside it)."""

from __future__ import annotations

from pathlib import Path

import click

from qtool.commands.options import force_option
from qtool.deploy.signing import generate_keypair
from qtool.report import show, table


@click.command("keygen")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Private key file to write (mode 0600); the public key goes to OUT.pub.",
)
@force_option
def command(out: Path, force: bool) -> None:
    """Make an Ed25519 key pair to sign bundles with (qtool package --sign KEY).

    Keep the private key where bundles are built, never on the server; copy KEY.pub to the
    server and pass it to verify/predict/serve --trust.

    \b
    Examples:
      qtool keygen --out release.key
      qtool package model.int8.onnx --out bundle --ecc --sign release.key
      qtool serve bundle --trust release.key.pub
    """
    pair = generate_keypair(out, force=force)
    show(
        table(
            "signing key",
            ["", ""],
            [
                ["private key", f"{pair.private} (mode 0600: keep it off the server)"],
                ["public key", f"{pair.public} (copy to the server; --trust)"],
                ["key id", pair.key_id],
            ],
        )
    )
