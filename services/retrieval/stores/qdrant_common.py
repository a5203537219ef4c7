"""What both Qdrant stores (embedded engine and server) share: point ids, payload layout, scores."""

from __future__ import annotations

import uuid
from typing import Any

from ragway.retrieval.stores.base import ChunkPoint, Distance, StoredChunk

# Qdrant's own defaults, stated so describe() can report the parameters in effect.
DEFAULT_M = 16
DEFAULT_EF_CONSTRUCT = 100
FULL_SCAN_THRESHOLD_KB = 10_000
# Search-time beam width. Qdrant's default (ef_construct, 100) gave recall@10 of 0.73-0.79 at
# 100k clustered 384-d points with m=16; 256 gave 0.95 and 512 gave 1.00 at ~1.5 ms p50
# (bench/retrieval_bench.py). A RAG answer built on the wrong neighbours costs more than 1 ms.
HNSW_EF_SEARCH = 512
SCROLL_PAGE = 1_000

_NAMESPACE = uuid.UUID("5b0c2a4e-6f1d-4f43-9a57-2f6e0d7c9a11")


def point_id(document_id: str, version: int, index: int) -> str:
    """Qdrant ids are integers or UUIDs: a UUID5 of (document, version, index) is stable, so a
    retried write overwrites itself instead of duplicating, and two versions never collide."""
    return str(uuid.uuid5(_NAMESPACE, f"{document_id}\x1f{version}\x1f{index}"))


def to_payload(chunk: ChunkPoint) -> dict[str, Any]:
    return {
        "document_id": chunk.document_id,
        "chunk_index": chunk.index,
        "version": chunk.version,
        "text": chunk.text,
        "metadata": chunk.metadata,
    }


def to_stored_chunk(payload: dict[str, Any], score: float = 0.0) -> StoredChunk:
    return StoredChunk(
        document_id=payload["document_id"],
        index=int(payload["chunk_index"]),
        version=int(payload["version"]),
        text=payload["text"],
        metadata=payload.get("metadata") or {},
        score=score,
    )


def score_from_qdrant(distance: Distance, score: float) -> float:
    """Qdrant reports Euclidean distance (lower is closer); the service's scores are higher-is-closer."""
    return -score if distance is Distance.EUCLID else score
