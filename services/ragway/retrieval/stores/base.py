"""The vector-store interface every backend implements, and the domain types it speaks.

The service above it owns the document semantics (versions, replace-on-upsert, visibility); a store
only keeps chunk points and answers filtered nearest-neighbour queries. Each chunk carries its
document id, position, document version and the caller's metadata, so every rule the service
enforces can be expressed as a filter on those fields, on any backend.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

# Filter keys become payload paths (Qdrant) and JSON paths inside filter expressions (Milvus):
# keeping them to identifiers makes both safe without escaping.


class Distance(StrEnum):
    COSINE = "cosine"
    DOT = "dot"
    EUCLID = "euclid"


@dataclass(frozen=True)
class IndexParams:
    """Index tuning; each backend reads the fields that apply to it (0 / "" = backend default)."""

    hnsw_m: int = 0
    hnsw_ef_construct: int = 0
    milvus_index_type: str = ""
    on_disk: bool = False  # dense vectors memory-mapped from disk (Qdrant)
    ivf_nlist: int = 0  # Milvus IVF_* clusters


class Fusion(StrEnum):
    RRF = "rrf"
    DBSF = "dbsf"


@dataclass(frozen=True)
class SparseVector:
    """Lexical weights by term id (a 31-bit hash of the stemmed term), ids ascending."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def __bool__(self) -> bool:
        return bool(self.indices)


@dataclass(frozen=True)
class Query:
    """One search: a dense vector, a sparse vector, or both (hybrid). A store fuses both parts by
    DBSF; hybrid RRF is fused by document in the service (fusion.py) from two single-part
    queries, which is what `fusion` tells the service."""

    dense: np.ndarray | None = None
    sparse: SparseVector | None = None
    fusion: Fusion = Fusion.RRF
    weights: tuple[float, float] = (1.0, 1.0)  # dense, sparse
    prefetch: int = 0  # candidates per list before fusion; 0 = the store picks
    ef: int = 0  # HNSW search beam; 0 = the store default
    nprobe: int = 0  # IVF clusters probed (Milvus); 0 = the backend default

    def prefetch_limit(self, limit: int) -> int:
        return max(self.prefetch or max(4 * limit, 40), limit)


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection was created with; stored by the backend next to the vectors."""

    name: str
    dimension: int
    distance: Distance = Distance.COSINE
    index: IndexParams = IndexParams()
    embedder: str = ""
    # The sparse encoder whose vectors the collection stores; "" = dense only (collections made
    # before hybrid search, or a backend without sparse vectors).
    sparse: str = ""


@dataclass(frozen=True)
class Range:
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


Scalar = str | int | bool


@dataclass(frozen=True)
class Condition:
    """One condition on a metadata key: exactly one of `equals`, `any_of`, `range` is set."""

    key: str
    equals: Scalar | None = None
    any_of: tuple[str, ...] | tuple[int, ...] | None = None
    range: Range | None = None


@dataclass(frozen=True)
class Filter:
    """A boolean filter every backend evaluates natively (Qdrant must / should / must_not, a Milvus
    expression): every `must` clause holds, at least one `should` clause holds when there are any,
    and no `must_not` clause holds. A clause is a Condition or a nested Filter. A condition on a
    missing key is false, so under `must_not` it passes. An empty filter matches everything."""

    must: tuple[Clause, ...] = ()
    should: tuple[Clause, ...] = ()
    must_not: tuple[Clause, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.must or self.should or self.must_not)


Clause = Condition | Filter


@dataclass
class ChunkPoint:
    """One chunk as written: the store derives its point id from (document, version, index)."""

    document_id: str
    index: int
    version: int
    text: str
    metadata: dict[str, Any]
    vector: np.ndarray
    sparse: SparseVector | None = None


@dataclass
class StoredChunk:
    """A chunk as read back (no vector); `score` is set by searches."""

    document_id: str
    index: int
    version: int
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    score: float = 0.0
    rerank_score: float | None = None  # set when a cross-encoder reordered the hits


@dataclass(frozen=True)
class DocumentSummary:
    id: str
    chunks: int
    metadata: dict[str, Any]


class VectorStore(abc.ABC):
    """A set of named collections of chunk points. Methods raise ragway.core.errors types:
    NotFound for an unknown collection, AlreadyExists on create, Unavailable when the backend
    cannot be reached. Writes are durable when they return."""

    backend: str
    # Whether a hybrid query's score fusion (Fusion.DBSF) takes `Query.weights`: Milvus'
    # WeightedRanker does; Qdrant's DBSF normalises each list's scores, so no weight survives it.
    weighted_score_fusion: bool = False

    @abc.abstractmethod
    async def create_collection(self, spec: CollectionSpec) -> None: ...

    @abc.abstractmethod
    async def list_collections(self) -> list[CollectionSpec]: ...

    @abc.abstractmethod
    async def get_collection(self, name: str) -> CollectionSpec: ...

    @abc.abstractmethod
    async def delete_collection(self, name: str) -> int:
        """Drop the collection and everything in it; returns the number of points removed."""

    @abc.abstractmethod
    async def count(self, collection: str, document_ids: Sequence[str] | None = None) -> int:
        """Points in the collection, or in these documents (all their versions)."""

    @abc.abstractmethod
    async def write(self, collection: str, chunks: Sequence[ChunkPoint]) -> None:
        """Insert or overwrite points; the vectors have the collection's dimension."""

    @abc.abstractmethod
    async def delete_documents(
        self,
        collection: str,
        document_ids: Sequence[str],
        *,
        version: int | None = None,
        below_version: int | None = None,
    ) -> None:
        """Delete the points of these documents: all of them, one `version`, or the versions
        below `below_version`, in one store operation however many documents there are."""

    @abc.abstractmethod
    async def document_ids(self, collection: str, where: Filter) -> list[str]:
        """Ids of the documents that have a point matching `where`."""

    @abc.abstractmethod
    async def chunks(self, collection: str, document_id: str) -> list[StoredChunk]:
        """Every point of one document (all versions), in no particular order."""

    @abc.abstractmethod
    async def query(self, collection: str, query: Query, limit: int, where: Filter) -> list[StoredChunk]:
        """The `limit` best points matching `where`, best first. Dense: nearest vectors, scores
        higher-is-closer (for Euclidean distance minus the distance); sparse: dot product of the
        query terms with the stored weights, IDF applied by the store; both: the two lists fused
        by DBSF (score-normalising). A sparse part on a collection without sparse vectors is the caller's
        error: the service checks `CollectionSpec.sparse` first."""

    async def search(
        self, collection: str, vector: np.ndarray, limit: int, where: Filter
    ) -> list[StoredChunk]:
        """Dense nearest neighbours (a `query` with only a dense vector)."""
        return await self.query(collection, Query(dense=vector), limit, where)

    def supports_sparse(self) -> str:
        """ "" when new collections get sparse vectors; otherwise why they cannot."""
        return ""

    @abc.abstractmethod
    async def list_documents(self, collection: str, after: str, limit: int) -> list[DocumentSummary]:
        """Documents ordered by id, starting after `after` (empty = from the start)."""

    @abc.abstractmethod
    async def document_count(self, collection: str) -> int: ...

    @abc.abstractmethod
    async def prepare(self) -> None:
        """Maintenance that must happen before serving (the embedded Qdrant engine builds
        pending HNSW indexes here); may take minutes."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release files and connections; the store is unusable afterwards."""
