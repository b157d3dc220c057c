"""Where units run, as a typed value: `local:N` or the address of an existing scheduler."""

from __future__ import annotations

import re
from dataclasses import dataclass

from qtool.errors import QtoolError

DEFAULT_TIMEOUT = 10.0  # seconds to reach a scheduler and see a worker before giving up
MAX_LOCAL_WORKERS = 64  # a LocalCluster larger than this is a typo, not a machine
_ADDRESS = re.compile(r"^(tcp|tls)://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$")


@dataclass(frozen=True)
class ClusterSpec:
    """`local` workers started here (in-process LocalCluster), or a scheduler `address`."""

    local_workers: int | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        if (self.local_workers is None) == (self.address is None):
            raise QtoolError("give local:N or a scheduler address", param="cluster")

    @property
    def text(self) -> str:
        """How the spec is written (recorded in reports as `cluster`)."""
        return f"local:{self.local_workers}" if self.address is None else self.address


def parse_cluster(text: str) -> ClusterSpec:
    """'local:4' -> 4 local worker processes; 'tcp://host:8786' -> that scheduler."""
    value = text.strip()
    if value.lower().startswith("local:"):
        count = value[6:]
        if not count.isdigit() or not 1 <= int(count) <= MAX_LOCAL_WORKERS:
            raise QtoolError(
                f"{text!r}: local:N takes 1 to {MAX_LOCAL_WORKERS} worker processes, e.g. local:2",
                param="cluster",
            )
        return ClusterSpec(local_workers=int(count))
    match = _ADDRESS.match(value)
    if match is None or not 0 < int(match.group(3)) < 65536:
        raise QtoolError(
            f"{text!r}: give local:N (worker processes started here) or a scheduler address "
            "like tcp://HOST:8786",
            param="cluster",
        )
    return ClusterSpec(address=value)
