"""Run the gateway under uvicorn: one process, or several workers on one port.

One Python process relays tokens at a ceiling set by its per-token cost (bench/relay_bench.py);
`RAGWAY_WORKERS` > 1 runs that many worker processes that accept on the same listening socket
(bound once here and handed to each, as uvicorn's own workers are), so one pod uses several cores.
Every worker is a whole gateway — its own connections, ingestion worker (leases keep them from
writing a file twice) and drain on SIGTERM — so what they share must be shared outside them:
the database, and Redis for rate limits.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import socket
import sys

import uvicorn

from ragway.core.env_check import warn_unknown_variables
from ragway.core.logging import configure_logging
from ragway.gateway.app import bootstrap, create_app
from ragway.gateway.core.config import GatewaySettings, get_settings
from ragway.gateway.core.drain import DrainingServer

log = logging.getLogger(__name__)


def serve(settings: GatewaySettings, sockets: list[socket.socket] | None = None) -> None:
    """One gateway process, listening on `sockets` (a worker) or binding host:port itself."""
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=int(settings.drain_seconds),
        # uvloop + httptools when installed (uvicorn[standard]).
        loop="auto",
        http="auto",
    )
    DrainingServer(config, app.state.drain, settings.drain_seconds).run(sockets=sockets)


def _worker(listener: socket.socket) -> None:
    settings = get_settings()
    configure_logging("gateway", settings.log_level)
    serve(settings, [listener])


def main() -> None:
    settings = get_settings()
    configure_logging("gateway", settings.log_level)
    warn_unknown_variables(log)
    if settings.workers == 1:
        serve(settings)
        return
    if settings.redis_url is None:
        sys.exit(
            f"ragway: RAGWAY_WORKERS={settings.workers} needs RAGWAY_REDIS_URL: without Redis each "
            "worker would count rate limits on its own"
        )
    asyncio.run(bootstrap(settings))
    listener = uvicorn.Config(None, host=settings.host, port=settings.port).bind_socket()  # type: ignore[arg-type]
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(listener,), name=f"gateway-{i}")
        for i in range(settings.workers)
    ]
    for worker in workers:
        worker.start()
    log.info("gateway: %d workers on %s:%d", len(workers), settings.host, settings.port)

    def drain_workers(_signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()  # SIGTERM: each drains as a single gateway does

    signal.signal(signal.SIGTERM, drain_workers)
    signal.signal(signal.SIGINT, drain_workers)
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    main()
