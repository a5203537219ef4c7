"""Draining on SIGTERM: stop taking new work, finish what is running, then close.

uvicorn on its own closes the listening socket at the signal, so a request that a load balancer
still routes here meets a refused connection, which says nothing about when to come back. Draining
instead keeps listening while requests are in flight and answers every new one 503 with Retry-After
and `Connection: close` (the OpenAI SDK retries a 503 after Retry-After; a load balancer retries it
on another replica), and /readyz fails with it, so the orchestrator stops routing here. When the last
request in flight ends, or the drain period runs out, uvicorn's own shutdown takes over.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from ragway.gateway.core import metrics
from ragway.gateway.core.errors import error_body

log = logging.getLogger(__name__)

# Long enough for a load balancer to notice the failing readiness probe; short enough that a
# client retrying here does not wait for nothing.
RETRY_AFTER_SECONDS = 2
# Liveness and scraping still answer while draining: the process is alive and its numbers matter.
ALWAYS_SERVED = frozenset({"/healthz", "/metrics"})


class Drain:
    """Whether this gateway is draining, and how many requests it is still serving."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self.idle = asyncio.Event()  # set while nothing is in flight
        self.idle.set()

    def started(self) -> None:
        self.in_flight += 1
        self.idle.clear()

    def ended(self) -> None:
        self.in_flight -= 1
        if not self.in_flight:
            self.idle.set()


class DrainMiddleware:
    """Counts requests in flight; once draining, refuses new ones with 503 + Retry-After."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in ALWAYS_SERVED:
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            metrics.REJECTIONS.labels("draining").inc()
            await self._refuse(send)
            return
        self.drain.started()
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.ended()

    @staticmethod
    async def _refuse(send: Send) -> None:
        body = json.dumps(
            error_body(
                "this gateway is shutting down; retry, another replica will answer",
                "server_error",
                "service_unavailable",
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a drain before its shutdown; the whole stop stays within `seconds`."""

    def __init__(self, config: uvicorn.Config, drain: Drain, seconds: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.seconds = seconds

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.drain.draining = True
        log.info("draining: %d requests in flight, up to %.0f s", self.drain.in_flight, self.seconds)
        deadline = time.monotonic() + self.seconds
        try:
            await asyncio.wait_for(self.drain.idle.wait(), self.seconds)
        except TimeoutError:
            pass  # uvicorn's shutdown cancels what still runs when its grace below ends
        # What is left of the drain period is uvicorn's grace for anything still running.
        self.config.timeout_graceful_shutdown = max(1, int(deadline - time.monotonic()))
        await super().shutdown(sockets)
