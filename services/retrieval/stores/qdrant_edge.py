"""The embedded Qdrant engine (qdrant-edge-py): the default store, in a local folder.

Qdrant Edge has no collections: one shard per directory, so a collection is a folder
`<root>/<name>/` holding `shard/` and `spec.json` (what it was created with). Writes go through
the shard's write-ahead log, so they survive a restart, even a SIGKILL, as soon as `update` returns.

The HNSW index is built only by `optimize()`, and qdrant-edge-py 0.9.0 holds the GIL for all of
it (measured: a 20k-point optimize froze every other Python thread for 21 s; 100k points take
about 4 minutes on 2 cores). Run on a background thread it would freeze the gRPC server, so it
runs only in `prepare()`, before the service reports SERVING, for collections with enough
unindexed points. Until then searches are exact: slower (about 16 ms at 100k points), never wrong.

Every metadata key gets a payload index on first write, typed by its value. Without one, a
filtered HNSW search skips the points that fail the filter and loses its way through the graph:
at 100k points a 10%-selective filter found 5% of the true top 10. With the index, Qdrant's
planner scans the index for selective filters and the HNSW build adds links per indexed value.
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

import numpy as np
import qdrant_edge as qe

from ragway.core.errors import AlreadyExists, NotFound
from ragway.retrieval.stores.base import (
    ChunkPoint,
    CollectionSpec,
    Distance,
    DocumentSummary,
    Filter,
    IndexParams,
    StoredChunk,
    VectorStore,
)
from ragway.retrieval.stores.qdrant_common import (
    DEFAULT_EF_CONSTRUCT,
    DEFAULT_M,
    FULL_SCAN_THRESHOLD_KB,
    HNSW_EF_SEARCH,
    SCROLL_PAGE,
    point_id,
    score_from_qdrant,
    to_payload,
    to_stored_chunk,
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


def _index_type(value: Any) -> qe.PayloadSchemaType | None:
    """The payload index for a metadata value; None for values not worth indexing."""
    if isinstance(value, list):
        kinds = {_index_type(v) for v in value}
        if kinds == {qe.PayloadSchemaType.Integer, qe.PayloadSchemaType.Float}:
            return qe.PayloadSchemaType.Float
        return kinds.pop() if len(kinds) == 1 else None
    if isinstance(value, bool):
        return None  # stored as 0/1 under "flags", indexed there
    if isinstance(value, int):
        return qe.PayloadSchemaType.Integer
    if isinstance(value, float):
        return qe.PayloadSchemaType.Float
    if isinstance(value, str):
        return qe.PayloadSchemaType.Keyword
    return None


def _wanted_indexes(chunks: Sequence[ChunkPoint]) -> dict[str, qe.PayloadSchemaType]:
    wanted: dict[str, qe.PayloadSchemaType] = {}
    for chunk in chunks:
        for key, value in chunk.metadata.items():
            if isinstance(value, bool):
                wanted.setdefault(f"{_FLAGS}.{key}", qe.PayloadSchemaType.Integer)
            elif (kind := _index_type(value)) is not None:
                # Float wins over Integer: a Float index holds both, an Integer index drops floats.
                if wanted.get(f"metadata.{key}") != qe.PayloadSchemaType.Float:
                    wanted[f"metadata.{key}"] = kind
    return wanted


def _to_filter(where: Filter, *extra: Any) -> qe.Filter | None:
    must: list[Any] = list(extra)
    for cond in where.must:
        key = f"metadata.{cond.key}"
        if cond.range is not None:
            r = cond.range
            must.append(
                qe.FieldCondition(key=key, range=qe.RangeFloat(gt=r.gt, gte=r.gte, lt=r.lt, lte=r.lte))
            )
        elif cond.any_of is not None:
            must.append(qe.FieldCondition(key=key, match=qe.MatchAny(list(cond.any_of))))
        elif isinstance(cond.equals, bool):
            must.append(_match(f"{_FLAGS}.{cond.key}", int(cond.equals)))
        else:
            must.append(_match(key, cond.equals))
    return qe.Filter(must=must) if must else None


def _read_spec(folder: Path) -> CollectionSpec:
    raw = json.loads((folder / _SPEC_FILE).read_text())
    return CollectionSpec(
        name=raw["name"],
        dimension=raw["dimension"],
        distance=Distance(raw["distance"]),
        index=IndexParams(**raw["index"]),
        embedder=raw["embedder"],
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
        self._indexes: dict[str, dict[str, qe.PayloadSchemaType]] = {}  # per collection: field -> type
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
                vectors=qe.EdgeVectorParams(size=spec.dimension, distance=_DISTANCES[spec.distance]),
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
        return self._specs.get(name) or await self._run(self._get, name)

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
        """Create the payload indexes these chunks' metadata needs, before the points land.

        An Integer index silently leaves out float values (a range filter would miss them), so
        a key that turns out to hold floats too has its Integer index replaced by a Float one.
        A key holding both strings and numbers keeps its first index: Qdrant falls back to
        reading the payload for conditions that index cannot answer, so results stay right."""
        with self._lock:
            indexes = self._indexes.get(collection)
            if indexes is None:
                schema = shard.info().payload_schema
                indexes = self._indexes[collection] = {k: v.data_type for k, v in schema.items()}
            for field, kind in _wanted_indexes(chunks).items():
                have = indexes.get(field)
                if have is not None:
                    if not (have == qe.PayloadSchemaType.Integer and kind == qe.PayloadSchemaType.Float):
                        continue  # the same type, or one Qdrant completes by reading payloads
                    shard.update(qe.UpdateOperation.delete_field_index(field))
                shard.update(qe.UpdateOperation.create_field_index(field, kind))
                indexes[field] = kind

    def _write(self, collection: str, chunks: Sequence[ChunkPoint]) -> None:
        shard = self._shard(collection)
        self._index_metadata(collection, shard, chunks)
        points = [
            qe.Point(point_id(c.document_id, c.version, c.index), c.vector.tolist(), _edge_payload(c))
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

    def _search(self, collection: str, vector: np.ndarray, limit: int, where: Filter) -> list[StoredChunk]:
        spec = self._get(collection)
        hits = self._shard(collection).query(
            qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(vector.tolist()),
                filter=_to_filter(where),
                with_payload=True,
                params=qe.SearchParams(hnsw_ef=max(HNSW_EF_SEARCH, limit)),
            )
        )
        return [to_stored_chunk(h.payload or {}, score_from_qdrant(spec.distance, h.score)) for h in hits]

    async def search(
        self, collection: str, vector: np.ndarray, limit: int, where: Filter
    ) -> list[StoredChunk]:
        return await self._run(self._search, collection, vector, limit, where)

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
