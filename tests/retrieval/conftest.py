"""Fixtures for the retrieval tests: the real embedder (one per session) and real stores.

Every contract test runs against each backend: the embedded Qdrant engine (the default), Milvus
Lite, and qdrant-client in its local on-disk mode, which stands in for a Qdrant server (no server
binary can run here): it exercises the very client code `RAGWAY_RETRIEVAL_QDRANT_URL` uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ragway.retrieval.config import RetrievalSettings
from ragway.retrieval.embedder import Embedder
from ragway.retrieval.rerank import Reranker
from ragway.retrieval.service import DocumentInput, Retrieval
from ragway.retrieval.stores.base import Distance, IndexParams, VectorStore
from tests.retrieval.corpus import TOPICS, metadata

BACKENDS = ["qdrant-edge", "milvus-lite", "qdrant-client-local"]


@dataclass
class Backend:
    """Opens a store of one kind on one folder; open it again to simulate a service restart."""

    name: str
    path: Path

    def open(self) -> VectorStore:
        if self.name == "qdrant-edge":
            from ragway.retrieval.stores.qdrant_edge import QdrantEdgeStore

            return QdrantEdgeStore(self.path / "qdrant")
        if self.name == "milvus-lite":
            from ragway.retrieval.stores.milvus import MilvusStore

            return MilvusStore(str(self.path / "milvus.db"))
        from qdrant_client import AsyncQdrantClient

        from ragway.retrieval.stores.qdrant_server import QdrantServerStore

        return QdrantServerStore(client=AsyncQdrantClient(path=str(self.path / "qdrant-local")))


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder(batch_size=32)


@pytest.fixture(scope="session")
def reranker() -> Reranker:
    """A small real cross-encoder (see tests/retrieval/cross_encoder.py)."""
    from tests.retrieval.cross_encoder import cross_encoder_folder

    return Reranker(str(cross_encoder_folder()))


@pytest.fixture
def settings(tmp_path: Path) -> RetrievalSettings:
    return RetrievalSettings(data_dir=tmp_path, metrics_port=0, port=0)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend(request.param, tmp_path)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[VectorStore]:
    opened = backend.open()
    yield opened
    await opened.close()


@pytest.fixture
def retrieval(store: VectorStore, embedder: Embedder, settings: RetrievalSettings) -> Retrieval:
    return Retrieval(store, embedder, settings)


async def load_corpus(retrieval: Retrieval, collection: str) -> None:
    """Create `collection` and upsert the 40-topic corpus, one document per topic."""
    await retrieval.create_collection(collection, Distance.COSINE, IndexParams())
    docs = [
        DocumentInput(topic, text, metadata=metadata(i, topic)) for i, (topic, text, _) in enumerate(TOPICS)
    ]
    await retrieval.upsert(collection, docs)
