"""Reading a service's Prometheus endpoint, as an operator's dashboard would."""

from __future__ import annotations

import httpx


def metric(metrics_url: str, name: str) -> float:
    """The value of metric `name` (its first series) on a /metrics page."""
    for line in httpx.get(metrics_url, timeout=5).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)
