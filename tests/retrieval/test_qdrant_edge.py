"""What only the embedded Qdrant engine does: building HNSW indexes before serving."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ragway.retrieval.stores.base import ChunkPoint, CollectionSpec, Filter
from ragway.retrieval.stores.qdrant_edge import QdrantEdgeStore


async def test_prepare_indexes_collections_with_many_unindexed_points(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(8_000, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = QdrantEdgeStore(tmp_path, optimize_after_points=5_000)
    try:
        await store.create_collection(CollectionSpec("big", 384))
        await store.create_collection(CollectionSpec("small", 384))
        for start in range(0, len(vectors), 1_000):
            batch = [ChunkPoint(f"d{i}", 0, 1, f"t{i}", {}, vectors[i]) for i in range(start, start + 1_000)]
            await store.write("big", batch)
        await store.write("small", [ChunkPoint("d", 0, 1, "t", {}, vectors[0])])
        assert store.unindexed_points("big") == 8_000
        await store.prepare()
        assert store.unindexed_points("big") == 0
        assert store.unindexed_points("small") == 1
        hits = await store.search("big", vectors[42], 1, Filter())
        assert hits[0].document_id == "d42"
    finally:
        await store.close()
