"""The embedded Qdrant engine (qdrant-edge-py): the default store, in a local folder.

Qdrant Edge has no collections: one shard per directory, so a collection is a folder
`<root>/<name>/` holding `shard/` and `spec.json` (what it was created with). Writes go through
the shard's write-ahead log, so they survive a restart, even a SIGKILL, as soon as `update` returns.

The HNSW index is built only by `optimize()`, and qdrant-edge-py 0.9.0 holds the GIL for all of
it (measured: a 20k-point optimize froze every other Python thread for 21 s; 100k points take
about 4 minutes on 2 cores). Run on a background thread it would freeze the gRPC server, so it
runs only in `prepare()`, before the service reports SERVING, for collections with enough
unindexed points. Until then searches are exact: slower (about 16 ms at 100k points), never wrong.

Hybrid search: new collections keep a named sparse vector ("sparse", IDF modifier) beside the
unnamed dense one, and a hybrid query is the Query API's two prefetches fused by DBSF (hybrid RRF
is fused by document in the service).
Metadata keys get payload indexes by the rule in `qdrant_common`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import qdrant_edge as qe

from ragway.core.errors import AlreadyExists, NotFound
from ragway.retrieval.stores.base import (
    ChunkPoint,
    CollectionSpec,
    Condition,
    Distance,
    DocumentSummary,
    Filter,
    IndexParams,
    Query,
    StoredChunk,
    VectorStore,
)
from ragway.retrieval.stores.qdrant_common import (
    DEFAULT_EF_CONSTRUCT,
    DEFAULT_M,
    FULL_SCAN_THRESHOLD_KB,
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

log = logging.getLogger(__name__)

T = TypeVar("T")

_DISTANCES = {
    Distance.COSINE: qe.Distance.Cosine,
    Distance.DOT: qe.Distance.Dot,
    Distance.EUCLID: qe.Distance.Euclid,
}
_SPEC_FILE = "spec.json"


# qdrant-edge-py 0.9.0 turns MatchValue(True) into the integer 1, which never matches a stored
# boolean. So boolean metadata is also stored as 0/1 under "flags", and boolean equality filters
# match there instead.
_FLAGS = "flags"


def _match(key: str, value: Any) -> qe.FieldCondition:
    return qe.FieldCondition(key=key, match=qe.MatchValue(value))


def _documents(document_ids: Sequence[str]) -> qe.FieldCondition:
    return qe.FieldCondition(key="document_id", match=qe.MatchAny(list(document_ids)))


def _edge_payload(chunk: ChunkPoint) -> dict[str, Any]:
    payload = to_payload(chunk)
    payload[_FLAGS] = {k: int(v) for k, v in chunk.metadata.items() if isinstance(v, bool)}
    return payload


_SCHEMA = {
    IndexKind.KEYWORD: qe.PayloadSchemaType.Keyword,
    IndexKind.INTEGER: qe.PayloadSchemaType.Integer,
    IndexKind.FLOAT: qe.PayloadSchemaType.Float,
}
_KIND = {v: k for k, v in _SCHEMA.items()}


def _edge_indexes(chunks: Sequence[ChunkPoint]) -> dict[str, IndexKind]:
    """The shared rule, with booleans indexed as 0/1 under "flags" (see `_FLAGS`)."""
    return {
        f"{_FLAGS}.{key}" if kind is IndexKind.BOOL else f"metadata.{key}": (
            IndexKind.INTEGER if kind is IndexKind.BOOL else kind
        )
        for key, kind in wanted_indexes(chunks).items()
    }


def _sparse(vector: Any) -> qe.SparseVector:
    return qe.SparseVector(list(vector.indices), list(vector.values))


def _clause(clause: Condition | Filter) -> Any:
    """One clause as Qdrant's: a field condition, or a nested qe.Filter."""
    if isinstance(clause, Filter):
        return _nested(clause)
    key = f"metadata.{clause.key}"
    if clause.range is not None:
        r = clause.range
        return qe.FieldCondition(key=key, range=qe.RangeFloat(gt=r.gt, gte=r.gte, lt=r.lt, lte=r.lte))
    if clause.any_of is not None:
        values: list[Any] = list(clause.any_of)
        return qe.FieldCondition(key=key, match=qe.MatchAny(values))
    if isinstance(clause.equals, bool):
        return _match(f"{_FLAGS}.{clause.key}", int(clause.equals))
    return _match(key, clause.equals)


def _nested(where: Filter) -> qe.Filter:
    return qe.Filter(
        must=[_clause(c) for c in where.must] or None,
        should=[_clause(c) for c in where.should] or None,
        must_not=[_clause(c) for c in where.must_not] or None,
    )


def _to_filter(where: Filter) -> qe.Filter | None:
    """The service's filter as the engine's, whole: must / should / must_not, nested as deep as
    the caller nested it, so every search is filtered inside the index, never after it."""
    return _nested(where) if where else None


def _read_spec(folder: Path) -> CollectionSpec:
    raw = json.loads((folder / _SPEC_FILE).read_text())
    return CollectionSpec(
        name=raw["name"],
        dimension=raw["dimension"],
        distance=Distance(raw["distance"]),
        index=IndexParams(**raw["index"]),
        embedder=raw["embedder"],
        sparse=raw.get("sparse", ""),
    )


class QdrantEdgeStore(VectorStore):
    """Collections as Qdrant Edge shards under one root folder."""

    backend = "qdrant"

    def __init__(self, root: Path, *, optimize_after_points: int = 10_000) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.optimize_after_points = optimize_after_points
        self._shards: dict[str, qe.EdgeShard] = {}
        self._specs: dict[str, CollectionSpec] = {}
        self._indexes: dict[str, dict[str, IndexKind]] = {}  # per collection: field -> type
        self._lock = threading.Lock()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    def _folder(self, name: str) -> Path:
        return self.root / name

    def _shard(self, name: str) -> qe.EdgeShard:
        with self._lock:
            shard = self._shards.get(name)
            if shard is None:
                folder = self._folder(name)
                if not (folder / _SPEC_FILE).exists():
                    raise NotFound(f"collection {name!r} does not exist")
                shard = qe.EdgeShard.load(str(folder / "shard"))
                self._shards[name] = shard
            return shard

    # Collections

    def _create(self, spec: CollectionSpec) -> None:
        folder = self._folder(spec.name)
        with self._lock:
            if (folder / _SPEC_FILE).exists():
                raise AlreadyExists(f"collection {spec.name!r} already exists")
            # A folder without spec.json is a create that died half-way: start it over.
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            hnsw = qe.HnswIndexConfig(
                m=spec.index.hnsw_m or DEFAULT_M,
                ef_construct=spec.index.hnsw_ef_construct or DEFAULT_EF_CONSTRUCT,
                full_scan_threshold=FULL_SCAN_THRESHOLD_KB,
            )
            config = qe.EdgeConfig(
                vectors=qe.EdgeVectorParams(
                    size=spec.dimension,
                    distance=_DISTANCES[spec.distance],
                    on_disk=spec.index.on_disk or None,
                ),
                sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
                if spec.sparse
                else None,
                hnsw_config=hnsw,
            )
            shard = qe.EdgeShard.create(str(folder / "shard"), config)
            # Indexes on the fields every document operation filters by.
            shard.update(qe.UpdateOperation.create_field_index("document_id", qe.PayloadSchemaType.Keyword))
            shard.update(qe.UpdateOperation.create_field_index("chunk_index", qe.PayloadSchemaType.Integer))
            shard.update(qe.UpdateOperation.create_field_index("version", qe.PayloadSchemaType.Integer))
            shard.flush()
            raw = asdict(spec) | {"distance": spec.distance.value}
            tmp = folder / f"{_SPEC_FILE}.tmp"
            tmp.write_text(json.dumps(raw))
            os.replace(tmp, folder / _SPEC_FILE)
            self._shards[spec.name] = shard

    async def create_collection(self, spec: CollectionSpec) -> None:
        await self._run(self._create, spec)

    def _list(self) -> list[CollectionSpec]:
        return [_read_spec(p) for p in sorted(self.root.iterdir()) if (p / _SPEC_FILE).exists()]

    async def list_collections(self) -> list[CollectionSpec]:
        return await self._run(self._list)

    def _get(self, name: str) -> CollectionSpec:
        spec = self._specs.get(name)
        if spec is None:
            folder = self._folder(name)
            if not (folder / _SPEC_FILE).exists():
                raise NotFound(f"collection {name!r} does not exist")
            spec = self._specs[name] = _read_spec(folder)
        return spec

    async def get_collection(self, name: str) -> CollectionSpec:
        # Every search asks this first: answer from the cache without a thread hop.
        spec = self._specs.get(name)
        return spec if spec is not None else await self._run(self._get, name)

    def _delete_collection(self, name: str) -> int:
        shard = self._shard(name)
        removed = shard.count(qe.CountRequest(exact=True))
        with self._lock:
            self._shards.pop(name, None)
            self._specs.pop(name, None)
            self._indexes.pop(name, None)
            shard.close()
            # Remove the marker first: a crash mid-way leaves a folder that create() cleans up.
            (self._folder(name) / _SPEC_FILE).unlink()
            shutil.rmtree(self._folder(name))
        return removed

    async def delete_collection(self, name: str) -> int:
        return await self._run(self._delete_collection, name)

    # Points

    def _count(self, collection: str, document_ids: Sequence[str] | None) -> int:
        if document_ids is not None and not document_ids:
            return 0
        where = qe.Filter(must=[_documents(document_ids)]) if document_ids is not None else None
        return self._shard(collection).count(qe.CountRequest(exact=True, filter=where))

    async def count(self, collection: str, document_ids: Sequence[str] | None = None) -> int:
        return await self._run(self._count, collection, document_ids)

    def _index_metadata(self, collection: str, shard: qe.EdgeShard, chunks: Sequence[ChunkPoint]) -> None:
        """Create the payload indexes these chunks' metadata needs, before the points land."""
        with self._lock:
            indexes = self._indexes.get(collection)
            if indexes is None:
                schema = shard.info().payload_schema
                indexes = self._indexes[collection] = {
                    k: _KIND[v.data_type] for k, v in schema.items() if v.data_type in _KIND
                }
            for field, kind in _edge_indexes(chunks).items():
                have = indexes.get(field)
                if not replaces(have, kind):
                    continue
                if have is not None:
                    shard.update(qe.UpdateOperation.delete_field_index(field))
                shard.update(qe.UpdateOperation.create_field_index(field, _SCHEMA[kind]))
                indexes[field] = kind

    def _write(self, collection: str, chunks: Sequence[ChunkPoint]) -> None:
        shard = self._shard(collection)
        spec = self._get(collection)
        self._index_metadata(collection, shard, chunks)
        points = [
            qe.Point(
                point_id(c.document_id, c.version, c.index),
                {"": c.vector.tolist(), SPARSE: _sparse(c.sparse)}
                if spec.sparse and c.sparse is not None
                else c.vector.tolist(),
                _edge_payload(c),
            )
            for c in chunks
        ]
        shard.update(qe.UpdateOperation.upsert_points(points))

    async def write(self, collection: str, chunks: Sequence[ChunkPoint]) -> None:
        await self._run(self._write, collection, chunks)

    def optimize(self, collection: str) -> bool:
        """Build the HNSW index of a collection now (blocking, GIL held throughout)."""
        started = time.monotonic()
        changed = self._shard(collection).optimize()
        log.info(
            "optimized collection %s in %.1f s (changed=%s)", collection, time.monotonic() - started, changed
        )
        return changed

    def unindexed_points(self, collection: str) -> int:
        """Points that exact search still scans because no HNSW index covers them yet."""
        info = self._shard(collection).info()
        return int(info.points_count - info.indexed_vectors_count)

    def _prepare(self) -> None:
        for spec in self._list():
            if self.unindexed_points(spec.name) >= self.optimize_after_points:
                self.optimize(spec.name)

    async def prepare(self) -> None:
        await self._run(self._prepare)

    def _delete_documents(
        self, collection: str, document_ids: Sequence[str], version: int | None, below_version: int | None
    ) -> None:
        if not document_ids:
            return
        must: list[Any] = [_documents(document_ids)]
        if version is not None:
            must.append(_match("version", version))
        if below_version is not None:
            must.append(qe.FieldCondition(key="version", range=qe.RangeFloat(lt=float(below_version))))
        self._shard(collection).update(qe.UpdateOperation.delete_points_by_filter(qe.Filter(must=must)))

    async def delete_documents(
        self,
        collection: str,
        document_ids: Sequence[str],
        *,
        version: int | None = None,
        below_version: int | None = None,
    ) -> None:
        await self._run(self._delete_documents, collection, document_ids, version, below_version)

    def _scroll(self, collection: str, where: qe.Filter | None, payload: Any = True) -> list[qe.Record]:
        shard = self._shard(collection)
        records: list[qe.Record] = []
        offset = None
        while True:
            page, offset = shard.scroll(
                qe.ScrollRequest(offset=offset, limit=SCROLL_PAGE, filter=where, with_payload=payload)
            )
            records.extend(page)
            if offset is None:
                return records

    def _document_ids(self, collection: str, where: Filter) -> list[str]:
        records = self._scroll(collection, _to_filter(where), ["document_id"])
        return sorted({r.payload["document_id"] for r in records if r.payload})

    async def document_ids(self, collection: str, where: Filter) -> list[str]:
        return await self._run(self._document_ids, collection, where)

    def _chunks(self, collection: str, document_id: str) -> list[StoredChunk]:
        records = self._scroll(collection, qe.Filter(must=[_match("document_id", document_id)]))
        return [to_stored_chunk(r.payload or {}) for r in records]

    async def chunks(self, collection: str, document_id: str) -> list[StoredChunk]:
        return await self._run(self._chunks, collection, document_id)

    def _query(self, collection: str, query: Query, limit: int, where: Filter) -> list[StoredChunk]:
        spec = self._get(collection)
        condition = _to_filter(where)
        params = qe.SearchParams(hnsw_ef=query.ef or max(HNSW_EF_SEARCH, limit))
        dense = qe.Query.Nearest(query.dense.tolist()) if query.dense is not None else None
        sparse = qe.Query.Nearest(_sparse(query.sparse), using=SPARSE) if query.sparse else None
        if dense is not None and sparse is not None:
            depth = query.prefetch_limit(limit)
            # The stub types the nested Fusion classes apart from the Fusion it accepts.
            fusion: Any = qe.Fusion.Dbsf()
            request = qe.QueryRequest(
                limit=limit,
                query=fusion,
                prefetches=[
                    qe.Prefetch(limit=depth, query=dense, filter=condition, params=params),
                    qe.Prefetch(limit=depth, query=sparse, filter=condition),
                ],
                filter=condition,
                with_payload=True,
            )
        elif dense is not None or sparse is not None:
            request = qe.QueryRequest(
                limit=limit, query=dense or sparse, filter=condition, with_payload=True, params=params
            )
        else:
            return []  # a sparse query of stopwords only matches nothing
        hits = self._shard(collection).query(request)
        if sparse is not None:  # fused and sparse scores are higher-is-better already
            return [to_stored_chunk(h.payload or {}, h.score) for h in hits]
        return [to_stored_chunk(h.payload or {}, score_from_qdrant(spec.distance, h.score)) for h in hits]

    async def query(self, collection: str, query: Query, limit: int, where: Filter) -> list[StoredChunk]:
        return await self._run(self._query, collection, query, limit, where)

    def _first_chunks(self, collection: str) -> list[qe.Record]:
        return self._scroll(collection, qe.Filter(must=[_match("chunk_index", 0)]))

    def _list_documents(self, collection: str, after: str, limit: int) -> list[DocumentSummary]:
        firsts = {
            r.payload["document_id"]: r.payload.get("metadata") or {}
            for r in self._first_chunks(collection)
            if r.payload
        }
        page = [doc for doc in sorted(firsts) if doc > after][:limit]
        records = (
            self._scroll(collection, qe.Filter(must=[_documents(page)]), ["document_id"]) if page else []
        )
        counts = Counter(r.payload["document_id"] for r in records if r.payload)
        return [DocumentSummary(doc, counts[doc], firsts[doc]) for doc in page]

    async def list_documents(self, collection: str, after: str, limit: int) -> list[DocumentSummary]:
        return await self._run(self._list_documents, collection, after, limit)

    def _document_count(self, collection: str) -> int:
        where = qe.Filter(must=[_match("chunk_index", 0)])
        return self._shard(collection).count(qe.CountRequest(exact=True, filter=where))

    async def document_count(self, collection: str) -> int:
        return await self._run(self._document_count, collection)

    def _close(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                shard.close()
            self._shards.clear()

    async def close(self) -> None:
        await self._run(self._close)
