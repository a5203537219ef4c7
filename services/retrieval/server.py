"""Run the retrieval service: the store, the embedder, the gRPC server and the metrics endpoint."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health
from prometheus_client import start_http_server

from ragway.core.grpc_server import create_server, set_serving, shutdown_event
from ragway.core.logging import configure_logging
from ragway.retrieval.config import RetrievalSettings, get_settings
from ragway.retrieval.embedder import Embedder
from ragway.retrieval.servicer import RetrievalServicer
from ragway.retrieval.stores import open_store
from ragway.retrieval.stores.base import VectorStore
from ragway.v1 import retrieval_pb2, retrieval_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = retrieval_pb2.DESCRIPTOR.services_by_name["RetrievalService"].full_name


@dataclass
class RunningServer:
    """A started, SERVING retrieval server bound to `port`."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    store: VectorStore
    embedder: Embedder
    owns_embedder: bool

    async def stop(self, grace: float = 1.0) -> None:
        """NOT_SERVING first (load balancers stop sending), let calls finish, then close the store."""
        await set_serving(self.health, [SERVICE_NAME], False)
        await self.server.stop(grace)
        await self.store.close()
        if self.owns_embedder:
            self.embedder.close()


def _load_embedder(settings: RetrievalSettings) -> Embedder:
    return Embedder(settings.embedder_path, batch_size=settings.embed_batch_size)


async def start_server(
    settings: RetrievalSettings,
    port: int | None = None,
    *,
    embedder: Embedder | None = None,
    store: VectorStore | None = None,
) -> RunningServer:
    """Open the store (and the embedder unless given: tests share one), then serve on `port`
    (settings.port when None; 0 picks a free port)."""
    owns_embedder = embedder is None
    model: Embedder = embedder or await asyncio.to_thread(_load_embedder, settings)
    vectors: VectorStore = store or await asyncio.to_thread(open_store, settings)
    await vectors.prepare()
    servicer = RetrievalServicer(vectors, model, settings)
    await servicer.retrieval.refresh_points_gauge()
    server, bound, health_servicer = create_server(
        lambda s: retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server(servicer, s),
        [SERVICE_NAME],
        settings.host,
        settings.port if port is None else port,
    )
    await server.start()
    await set_serving(health_servicer, [SERVICE_NAME], True)
    log.info("retrieval service on %s:%d (%s store, %s)", settings.host, bound, vectors.backend, model.name)
    return RunningServer(server, bound, health_servicer, vectors, model, owns_embedder)


async def serve(settings: RetrievalSettings) -> None:
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host)
    running = await start_server(settings)
    stop = shutdown_event()
    await stop.wait()
    log.info("shutting down: finishing calls for up to %.0f s", settings.drain_seconds)
    await running.stop(settings.drain_seconds)


def main() -> None:
    settings = get_settings()
    configure_logging("retrieval", settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
