"""Admission control: a hard bound on how many requests may wait, refused at once beyond it.

vLLM would queue without limit; a caller is better served by RESOURCE_EXHAUSTED now (and a retry
on another replica) than by a timeout minutes later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from ragway.core.errors import ResourceExhausted, Unavailable
from ragway.model import metrics


class Admission:
    """Counts in-flight requests; up to `max_running` run, `max_waiting` more may queue."""

    def __init__(self, max_running: int, max_waiting: int) -> None:
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.in_flight = 0
        self.closed = False
        self.idle = asyncio.Event()
        self.idle.set()

    @property
    def waiting(self) -> int:
        return max(0, self.in_flight - self.max_running)

    @contextmanager
    def admit(self, sequences: int = 1) -> Iterator[None]:
        """Hold `sequences` slots (n choices count n) for the duration of a request."""
        if self.closed:
            metrics.REJECTIONS.inc()
            raise Unavailable("the model service is shutting down; retry on another replica")
        if self.in_flight + sequences > self.max_running + self.max_waiting:
            metrics.REJECTIONS.inc()
            raise ResourceExhausted(
                f"the model service is at capacity ({self.in_flight} requests in flight, "
                f"{self.max_waiting} may wait); retry shortly",
                retry_after=1.0,
            )
        self.in_flight += sequences
        self._publish()
        try:
            yield
        finally:
            self.in_flight -= sequences
            self._publish()

    def _publish(self) -> None:
        if self.in_flight:
            self.idle.clear()
        else:
            self.idle.set()
        metrics.RUNNING.set(min(self.in_flight, self.max_running))
        metrics.WAITING.set(self.waiting)
