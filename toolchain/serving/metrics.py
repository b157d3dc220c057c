"""Prometheus text-format metrics: requests, latency histograms, the verification state.

The exposition format (text 0.0.4) is a few lines per metric, written here rather than
pulling in a client library. Labels are bounded: the endpoint is the route's name (never the
raw path) and the status code, so clients cannot inflate the series.
"""

from __future__ import annotations

import threading
from collections import defaultdict

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Request counts and latency histograms per endpoint, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.buckets: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self.sums: dict[str, float] = defaultdict(float)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            counts = self.buckets[endpoint]
            index = next((i for i, b in enumerate(BUCKETS) if seconds <= b), len(BUCKETS))
            counts[index] += 1
            self.sums[endpoint] += seconds

    def render(self, gauges: list[tuple[str, str, str, float, dict | None]]) -> str:
        """The whole exposition: these counters and histograms, then `gauges` given as
        (name, type, help, value, labels)."""
        lines = [
            "# HELP qtool_requests_total HTTP requests by endpoint and status code.",
            "# TYPE qtool_requests_total counter",
        ]
        with self._lock:
            for (endpoint, status), n in sorted(self.requests.items()):
                lines.append(f'qtool_requests_total{{endpoint="{endpoint}",code="{status}"}} {n}')
            lines += [
                "# HELP qtool_request_duration_seconds Time from request to response.",
                "# TYPE qtool_request_duration_seconds histogram",
            ]
            for endpoint, counts in sorted(self.buckets.items()):
                running = 0
                for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
                    running += n
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    lines.append(
                        f'qtool_request_duration_seconds_bucket{{endpoint="{endpoint}",'
                        f'le="{le}"}} {running}'
                    )
                lines.append(
                    f'qtool_request_duration_seconds_sum{{endpoint="{endpoint}"}} '
                    f"{self.sums[endpoint]:.6f}"
                )
                lines.append(
                    f'qtool_request_duration_seconds_count{{endpoint="{endpoint}"}} {running}'
                )
        seen = set()
        for name, kind, text, value, labels in gauges:
            if name not in seen:
                lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
                seen.add(name)
            label = ""
            if labels:
                label = "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"
            lines.append(f"{name}{label} {_number(value)}")
        return "\n".join(lines) + "\n"


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6f}"
