"""Qdrant as a server, through qdrant-client's async client (`RAGWAY_RETRIEVAL_QDRANT_URL`).

The same payload layout, point ids and scores as the embedded engine (`qdrant_common`); what each
collection was created with is kept in Qdrant's collection metadata under "ragway", which also
tells ragway's collections apart from others on a shared server. Writes wait for the server to
apply them (`wait=True`), so they are durable and visible when the call returns. Hybrid search
and metadata payload indexes follow the same rules as the embedded store (`qdrant_common`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ragway.core.errors import AlreadyExists, NotFound, Unavailable
from ragway.retrieval.stores.base import (
    ChunkPoint,
    CollectionSpec,
    Condition,
    Distance,
    DocumentSummary,
    Filter,
    IndexParams,
    Query,
    SparseVector,
    StoredChunk,
    VectorStore,
)
from ragway.retrieval.stores.qdrant_common import (
    DEFAULT_EF_CONSTRUCT,
    DEFAULT_M,
    HNSW_EF_SEARCH,
    SCROLL_PAGE,
    SPARSE,
    IndexKind,
    point_id,
    replaces,
    score_from_qdrant,
    to_payload,
    to_stored_chunk,
    wanted_indexes,
)

_DISTANCES = {
    Distance.COSINE: models.Distance.COSINE,
    Distance.DOT: models.Distance.DOT,
    Distance.EUCLID: models.Distance.EUCLID,
}
_KEY = "ragway"
_SCHEMA = {
    IndexKind.KEYWORD: models.PayloadSchemaType.KEYWORD,
    IndexKind.INTEGER: models.PayloadSchemaType.INTEGER,
    IndexKind.FLOAT: models.PayloadSchemaType.FLOAT,
    IndexKind.BOOL: models.PayloadSchemaType.BOOL,
}
_KIND = {v: k for k, v in _SCHEMA.items()}


def _match(key: str, value: Any) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _documents(document_ids: Sequence[str]) -> models.FieldCondition:
    return models.FieldCondition(key="document_id", match=models.MatchAny(any=list(document_ids)))


def _clause(clause: Condition | Filter) -> Any:
    """One clause as Qdrant's: a field condition, or a nested models.Filter."""
    if isinstance(clause, Filter):
        return _nested(clause)
    key = f"metadata.{clause.key}"
    if clause.range is not None:
        r = clause.range
        return models.FieldCondition(key=key, range=models.Range(gt=r.gt, gte=r.gte, lt=r.lt, lte=r.lte))
    if clause.any_of is not None:
        return models.FieldCondition(key=key, match=models.MatchAny(any=list(clause.any_of)))
    return _match(key, clause.equals)


def _nested(where: Filter) -> models.Filter:
    return models.Filter(
        must=[_clause(c) for c in where.must] or None,
        should=[_clause(c) for c in where.should] or None,
        must_not=[_clause(c) for c in where.must_not] or None,
    )


def _to_filter(where: Filter) -> models.Filter | None:
    """The service's filter as Qdrant's, whole: must / should / must_not, nested as deep as the
    caller nested it, so every search is filtered inside the index, never after it."""
    return _nested(where) if where else None


def _spec(raw: dict[str, Any]) -> CollectionSpec:
    return CollectionSpec(
        name=raw["name"],
        dimension=int(raw["dimension"]),
        distance=Distance(raw["distance"]),
        index=IndexParams(**raw["index"]),
        embedder=raw["embedder"],
        sparse=raw.get("sparse", ""),
    )


def _sparse(vector: SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=list(vector.indices), values=list(vector.values))


class QdrantServerStore(VectorStore):
    """Collections as Qdrant collections on a server (or any `AsyncQdrantClient`)."""

    backend = "qdrant"

    def __init__(self, url: str = "", api_key: str = "", *, client: AsyncQdrantClient | None = None) -> None:
        self._client = client or AsyncQdrantClient(url=url, api_key=api_key or None)
        self._specs: dict[str, CollectionSpec] = {}
        self._indexes: dict[str, dict[str, IndexKind]] = {}  # per collection: metadata field -> type

    async def create_collection(self, spec: CollectionSpec) -> None:
        try:
            exists = await self._client.collection_exists(spec.name)
        except (ResponseHandlingException, UnexpectedResponse) as exc:
            raise Unavailable(f"Qdrant is unreachable: {exc}") from exc
        if exists:
            raise AlreadyExists(f"collection {spec.name!r} already exists")
        index = IndexParams(
            spec.index.hnsw_m or DEFAULT_M,
            spec.index.hnsw_ef_construct or DEFAULT_EF_CONSTRUCT,
            on_disk=spec.index.on_disk,
        )
        stored = CollectionSpec(spec.name, spec.dimension, spec.distance, index, spec.embedder, spec.sparse)
        await self._client.create_collection(
            spec.name,
            vectors_config=models.VectorParams(
                size=spec.dimension, distance=_DISTANCES[spec.distance], on_disk=index.on_disk or None
            ),
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)}
            if spec.sparse
            else None,
            hnsw_config=models.HnswConfigDiff(m=index.hnsw_m, ef_construct=index.hnsw_ef_construct),
            metadata={_KEY: asdict(stored) | {"distance": stored.distance.value}},
        )
        for field, schema in (
            ("document_id", models.PayloadSchemaType.KEYWORD),
            ("chunk_index", models.PayloadSchemaType.INTEGER),
            ("version", models.PayloadSchemaType.INTEGER),
        ):
            await self._client.create_payload_index(spec.name, field, schema, wait=True)
        self._specs[spec.name] = stored

    async def _spec_of(self, name: str) -> CollectionSpec | None:
        info = await self._client.get_collection(name)
        raw = (info.config.metadata or {}).get(_KEY)
        return _spec(raw) if raw else None

    async def list_collections(self) -> list[CollectionSpec]:
        names = sorted(c.name for c in (await self._client.get_collections()).collections)
        specs = [await self._spec_of(name) for name in names]
        return [s for s in specs if s is not None]

    async def get_collection(self, name: str) -> CollectionSpec:
        spec = self._specs.get(name)
        if spec is None:
            if not await self._client.collection_exists(name) or (spec := await self._spec_of(name)) is None:
                raise NotFound(f"collection {name!r} does not exist")
            self._specs[name] = spec
        return spec

    async def delete_collection(self, name: str) -> int:
        removed = await self.count(name)
        self._specs.pop(name, None)
        self._indexes.pop(name, None)
        await self._client.delete_collection(name)
        return removed

    async def count(self, collection: str, document_ids: Sequence[str] | None = None) -> int:
        await self.get_collection(collection)
        if document_ids is not None and not document_ids:
            return 0
        where = models.Filter(must=[_documents(document_ids)]) if document_ids is not None else None
        return (await self._client.count(collection, count_filter=where, exact=True)).count

    async def _index_metadata(self, collection: str, chunks: Sequence[ChunkPoint]) -> None:
        """Create the payload indexes these chunks' metadata needs, before the points land."""
        indexes = self._indexes.get(collection)
        if indexes is None:
            schema = (await self._client.get_collection(collection)).payload_schema
            indexes = self._indexes[collection] = {
                k: _KIND[v.data_type] for k, v in schema.items() if v.data_type in _KIND
            }
        for key, kind in wanted_indexes(chunks).items():
            field = f"metadata.{key}"
            have = indexes.get(field)
            if not replaces(have, kind):
                continue
            if have is not None:
                await self._client.delete_payload_index(collection, field, wait=True)
            await self._client.create_payload_index(collection, field, _SCHEMA[kind], wait=True)
            indexes[field] = kind

    async def write(self, collection: str, chunks: Sequence[ChunkPoint]) -> None:
        spec = await self.get_collection(collection)
        await self._index_metadata(collection, chunks)
        points = [
            models.PointStruct(
                id=point_id(c.document_id, c.version, c.index),
                vector={"": c.vector.tolist(), SPARSE: _sparse(c.sparse)}
                if spec.sparse and c.sparse is not None
                else c.vector.tolist(),
                payload=to_payload(c),
            )
            for c in chunks
        ]
        await self._client.upsert(collection, points, wait=True)

    async def delete_documents(
        self,
        collection: str,
        document_ids: Sequence[str],
        *,
        version: int | None = None,
        below_version: int | None = None,
    ) -> None:
        await self.get_collection(collection)
        if not document_ids:
            return
        must: list[Any] = [_documents(document_ids)]
        if version is not None:
            must.append(_match("version", version))
        if below_version is not None:
            must.append(models.FieldCondition(key="version", range=models.Range(lt=below_version)))
        await self._client.delete(
            collection, models.FilterSelector(filter=models.Filter(must=must)), wait=True
        )

    async def _scroll(self, collection: str, where: models.Filter | None, payload: Any = True) -> list[Any]:
        await self.get_collection(collection)
        records: list[Any] = []
        offset = None
        while True:
            page, offset = await self._client.scroll(
                collection, scroll_filter=where, limit=SCROLL_PAGE, offset=offset, with_payload=payload
            )
            records.extend(page)
            if offset is None:
                return records

    async def document_ids(self, collection: str, where: Filter) -> list[str]:
        records = await self._scroll(collection, _to_filter(where), ["document_id"])
        return sorted({r.payload["document_id"] for r in records if r.payload})

    async def chunks(self, collection: str, document_id: str) -> list[StoredChunk]:
        records = await self._scroll(collection, models.Filter(must=[_match("document_id", document_id)]))
        return [to_stored_chunk(r.payload or {}) for r in records]

    async def query(self, collection: str, query: Query, limit: int, where: Filter) -> list[StoredChunk]:
        spec = await self.get_collection(collection)
        condition = _to_filter(where)
        params = models.SearchParams(hnsw_ef=query.ef or max(HNSW_EF_SEARCH, limit))
        dense = query.dense.tolist() if query.dense is not None else None
        sparse = _sparse(query.sparse) if query.sparse else None
        if dense is not None and sparse is not None:
            depth = query.prefetch_limit(limit)
            response = await self._client.query_points(
                collection,
                prefetch=[
                    models.Prefetch(query=dense, filter=condition, limit=depth, params=params),
                    models.Prefetch(query=sparse, using=SPARSE, filter=condition, limit=depth),
                ],
                query=models.FusionQuery(fusion=models.Fusion.DBSF),
                query_filter=condition,
                limit=limit,
                with_payload=True,
            )
        elif dense is not None or sparse is not None:
            response = await self._client.query_points(
                collection,
                query=dense if dense is not None else sparse,
                using=None if dense is not None else SPARSE,
                query_filter=condition,
                limit=limit,
                with_payload=True,
                search_params=params,
            )
        else:
            return []  # a sparse query of stopwords only matches nothing
        if sparse is not None:  # fused and sparse scores are higher-is-better already
            return [to_stored_chunk(p.payload or {}, p.score) for p in response.points]
        return [
            to_stored_chunk(p.payload or {}, score_from_qdrant(spec.distance, p.score))
            for p in response.points
        ]

    async def list_documents(self, collection: str, after: str, limit: int) -> list[DocumentSummary]:
        records = await self._scroll(collection, models.Filter(must=[_match("chunk_index", 0)]))
        firsts = {r.payload["document_id"]: r.payload.get("metadata") or {} for r in records if r.payload}
        page = [doc for doc in sorted(firsts) if doc > after][:limit]
        rows = (
            await self._scroll(collection, models.Filter(must=[_documents(page)]), ["document_id"])
            if page
            else []
        )
        counts = Counter(r.payload["document_id"] for r in rows if r.payload)
        return [DocumentSummary(doc, counts[doc], firsts[doc]) for doc in page]

    async def document_count(self, collection: str) -> int:
        await self.get_collection(collection)
        where = models.Filter(must=[_match("chunk_index", 0)])
        return (await self._client.count(collection, count_filter=where, exact=True)).count

    async def prepare(self) -> None:
        """Nothing to do: Milvus and Qdrant servers index in the background themselves."""

    async def close(self) -> None:
        await self._client.close()
