"""Vector stores: one interface (`base.VectorStore`), one module per backend, imported lazily so
that running on Qdrant never imports pymilvus, and the other way round."""

from __future__ import annotations

from ragway.retrieval.config import RetrievalSettings
from ragway.retrieval.stores.base import VectorStore


def open_store(settings: RetrievalSettings) -> VectorStore:
    """The store the settings name: a server by URL, or the embedded one in the data folder."""
    if settings.backend == "milvus":
        from ragway.retrieval.stores.milvus import MilvusStore

        if settings.milvus_uri:
            return MilvusStore(settings.milvus_uri, settings.milvus_token)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return MilvusStore(str(settings.milvus_path))
    if settings.qdrant_url:
        from ragway.retrieval.stores.qdrant_server import QdrantServerStore

        return QdrantServerStore(settings.qdrant_url, settings.qdrant_api_key)
    from ragway.retrieval.stores.qdrant_edge import QdrantEdgeStore

    return QdrantEdgeStore(settings.qdrant_path, optimize_after_points=settings.optimize_after_points)
