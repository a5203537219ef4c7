"""Run the retrieval service: the store, the embedder, the gRPC server and the metrics endpoint."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health
from prometheus_client import start_http_server

from ragway.core.env_check import warn_unknown_variables
from ragway.core.grpc_server import create_server, set_serving, shutdown_event
from ragway.core.logging import configure_logging
from ragway.retrieval.config import RetrievalSettings, get_settings
from ragway.retrieval.embedder import Embedder
from ragway.retrieval.rerank import Reranker
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
    reranker: Reranker | None = None
    owns_reranker: bool = False
    loaded_embedders: list[Embedder] = field(default_factory=list)  # extra ones it loaded itself

    async def stop(self, grace: float = 1.0) -> None:
        """NOT_SERVING first (load balancers stop sending), let calls finish, then close the store."""
        await set_serving(self.health, [SERVICE_NAME], False)
        await self.server.stop(grace)
        await self.store.close()
        if self.owns_embedder:
            self.embedder.close()
        for embedder in self.loaded_embedders:
            embedder.close()
        if self.owns_reranker and self.reranker is not None:
            self.reranker.close()


def _load_embedder(settings: RetrievalSettings, path: str) -> Embedder:
    return Embedder(path, batch_size=settings.embed_batch_size)


async def start_server(
    settings: RetrievalSettings,
    port: int | None = None,
    *,
    embedder: Embedder | None = None,
    store: VectorStore | None = None,
    reranker: Reranker | None = None,
    more_embedders: Sequence[Embedder] | None = None,
) -> RunningServer:
    """Open the store (and the embedders unless given: tests share them), then serve on `port`
    (settings.port when None; 0 picks a free port)."""
    owns_embedder = embedder is None
    model = (
        embedder
        if embedder is not None
        else await asyncio.to_thread(_load_embedder, settings, settings.embedder_path)
    )
    loaded = (
        [await asyncio.to_thread(_load_embedder, settings, path) for path in settings.extra_embedders]
        if more_embedders is None
        else []
    )
    vectors = store if store is not None else await asyncio.to_thread(open_store, settings)
    owns_reranker = reranker is None and bool(settings.reranker)
    if owns_reranker:
        reranker = await asyncio.to_thread(Reranker, settings.reranker)
    await vectors.prepare()
    servicer = RetrievalServicer(vectors, model, settings, reranker, [*loaded, *(more_embedders or ())])
    await servicer.retrieval.refresh_points_gauge()
    server, bound, health_servicer = create_server(
        lambda s: retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server(servicer, s),
        [SERVICE_NAME],
        settings.host,
        settings.port if port is None else port,
    )
    await server.start()
    await set_serving(health_servicer, [SERVICE_NAME], True)
    log.info(
        "retrieval service on %s:%d (%s store, %s, reranker: %s)",
        settings.host,
        bound,
        vectors.backend,
        ", ".join(e.name for e in servicer.retrieval.embedders),
        reranker.name if reranker else "none",
    )
    return RunningServer(
        server, bound, health_servicer, vectors, model, owns_embedder, reranker, owns_reranker, loaded
    )


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
    warn_unknown_variables(log)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
