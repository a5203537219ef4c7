"""What both Qdrant stores (embedded engine and server) share: point ids, payload layout, scores,
the sparse vector's name, and the rule that decides which metadata keys get a payload index.

Every metadata key gets a payload index on first write, typed by its value. Without one, a
filtered HNSW search skips the points that fail the filter and loses its way through the graph:
at 100k points a 10%-selective filter found 5% of the true top 10. With the index, Qdrant's
planner scans the index for selective filters and the HNSW build adds links per indexed value.
The rule lives here so that the server store gets the same filtered-search recall as the
embedded one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from enum import StrEnum
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
# The named sparse vector beside the default (unnamed) dense one: keeping the dense vector
# unnamed is what lets collections created before hybrid search load unchanged.
SPARSE = "sparse"


class IndexKind(StrEnum):
    """Payload index types, named apart from either Qdrant package's enum."""

    KEYWORD = "keyword"
    INTEGER = "integer"
    FLOAT = "float"
    BOOL = "bool"


def index_kind(value: Any) -> IndexKind | None:
    """The payload index for a metadata value; None for values not worth indexing."""
    if isinstance(value, list):
        kinds = {index_kind(v) for v in value}
        if kinds == {IndexKind.INTEGER, IndexKind.FLOAT}:
            return IndexKind.FLOAT
        return kinds.pop() if len(kinds) == 1 else None
    if isinstance(value, bool):
        return IndexKind.BOOL
    if isinstance(value, int):
        return IndexKind.INTEGER
    if isinstance(value, float):
        return IndexKind.FLOAT
    if isinstance(value, str):
        return IndexKind.KEYWORD
    return None


def wanted_indexes(chunks: Sequence[ChunkPoint]) -> dict[str, IndexKind]:
    """Metadata key -> the index its values need. Float wins over Integer: a Float index holds
    both, an Integer index silently leaves floats out (a range filter would miss them)."""
    wanted: dict[str, IndexKind] = {}
    for chunk in chunks:
        for key, value in chunk.metadata.items():
            if (kind := index_kind(value)) is not None and wanted.get(key) is not IndexKind.FLOAT:
                wanted[key] = kind
    return wanted


def replaces(have: IndexKind | None, want: IndexKind) -> bool:
    """Whether an index `want` must be created where `have` exists (None: no index yet). Only an
    Integer index is replaced (by a Float one); a key holding both strings and numbers keeps its
    first index: Qdrant falls back to reading the payload for conditions that index cannot
    answer, so results stay right."""
    return have is None or (have is IndexKind.INTEGER and want is IndexKind.FLOAT)


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
