"""What each web process counts for Prometheus itself: requests by route, method and status (the rest of
``/metrics`` is read from the database, runtime/metrics.py). Several uvicorn workers of one ``radshare web`` share
their counts through prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by ``radshare web``
to a fresh folder before the workers start); a single process keeps them in memory (docs/operations.md
"Metrics")."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, multiprocess
from prometheus_client.registry import REGISTRY

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "radshare_http_requests",
    "HTTP requests answered, by route (the URL pattern's name, never the path), method and status",
    ["route", "method", "status"],
)


def count_request(route: str, method: str, status: int) -> None:
    REQUESTS.labels(route or "unmatched", method, str(status)).inc()


def process_registry() -> CollectorRegistry:
    """The registry holding this process's counters, or those of every worker of this web server."""
    if os.environ.get(MULTIPROCESS):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY
