"""Milvus through pymilvus: a server by URI, or Milvus Lite when the URI is a local `.db` path.

Milvus collection names allow only letters, digits and '_', and Milvus Lite keeps no collection
description, so ragway's collection names map to `ragway_<hash>` and what each collection was
created with lives in a small registry collection (`ragway_registry`). Every read uses Strong
consistency: a search issued after a write returns sees that write, as on the Qdrant backend.
Milvus reports squared L2 distances; scores are turned into minus the Euclidean distance.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, TypeVar

import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException

from ragway.core.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
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
from ragway.retrieval.stores.qdrant_common import point_id

T = TypeVar("T")

REGISTRY = "ragway_registry"
# Index types Milvus accepts for float vectors; Milvus Lite silently accepts any string, so the
# store checks instead of letting a typo become a collection with no real index.
INDEX_TYPES = frozenset({"AUTOINDEX", "FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "DISKANN", "SCANN"})
_METRICS = {Distance.COSINE: "COSINE", Distance.DOT: "IP", Distance.EUCLID: "L2"}
_OUTPUT = ["document_id", "chunk_index", "version", "text", "metadata"]
_PAGE = 1_000
_MAX_TEXT_BYTES = 65_535


def physical_name(name: str) -> str:
    return "ragway_" + hashlib.blake2b(name.encode(), digest_size=16).hexdigest()


def _literal(value: Any) -> str:
    """A Milvus expression literal: JSON's quoting of strings is what Milvus' parser reads."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _expression(where: Filter, *extra: str) -> str:
    parts = list(extra)
    for cond in where.must:
        field = f'metadata["{cond.key}"]'
        if cond.range is not None:
            r = cond.range
            for op, bound in ((">", r.gt), (">=", r.gte), ("<", r.lt), ("<=", r.lte)):
                if bound is not None:
                    parts.append(f"{field} {op} {_literal(bound)}")
        elif cond.any_of is not None:
            # Milvus Lite's parser has no `in` for JSON fields: spell it as a disjunction.
            parts.append("(" + " or ".join(f"{field} == {_literal(v)}" for v in cond.any_of) + ")")
        else:
            parts.append(f"{field} == {_literal(cond.equals)}")
    return " and ".join(parts)


def _documents(document_ids: Sequence[str]) -> str:
    return f"document_id in [{', '.join(_literal(d) for d in document_ids)}]"


def _to_stored(row: dict[str, Any], score: float = 0.0) -> StoredChunk:
    return StoredChunk(
        document_id=row["document_id"],
        index=int(row["chunk_index"]),
        version=int(row["version"]),
        text=row["text"],
        metadata=row.get("metadata") or {},
        score=score,
    )


class MilvusStore(VectorStore):
    """Collections as Milvus collections, plus a registry of their specs."""

    backend = "milvus"

    def __init__(self, uri: str, token: str = "") -> None:
        try:
            self._client = MilvusClient(uri, token=token) if token else MilvusClient(uri)
        except MilvusException as exc:
            raise Unavailable(f"cannot open Milvus at {uri}: {exc.message}") from exc
        self._specs: dict[str, CollectionSpec] = {}
        self._lock = threading.Lock()
        self._ensure_registry()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    def _ensure_registry(self) -> None:
        if self._client.has_collection(REGISTRY):
            return
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("name", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("spec", DataType.JSON)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus requires a vector field.
        index = self._client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="L2")
        self._client.create_collection(
            REGISTRY, schema=schema, index_params=index, consistency_level="Strong"
        )

    # Collections

    def _create(self, spec: CollectionSpec) -> None:
        index_type = (spec.index.milvus_index_type or "AUTOINDEX").upper()
        if index_type not in INDEX_TYPES:
            raise InvalidArgument(
                f"unknown Milvus index type {spec.index.milvus_index_type!r}; "
                f"use one of {', '.join(sorted(INDEX_TYPES))}",
                field="index.milvus_index_type",
            )
        with self._lock:
            if self._registered(spec.name) is not None:
                raise AlreadyExists(f"collection {spec.name!r} already exists")
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
            schema.add_field("document_id", DataType.VARCHAR, max_length=1024)
            schema.add_field("chunk_index", DataType.INT64)
            schema.add_field("version", DataType.INT64)
            schema.add_field("text", DataType.VARCHAR, max_length=_MAX_TEXT_BYTES)
            schema.add_field("metadata", DataType.JSON)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=spec.dimension)
            params: dict[str, Any] = {}
            if index_type == "HNSW":
                params = {"M": spec.index.hnsw_m or 16, "efConstruction": spec.index.hnsw_ef_construct or 200}
            index = self._client.prepare_index_params()
            index.add_index(
                "vector", index_type=index_type, metric_type=_METRICS[spec.distance], params=params
            )
            physical = physical_name(spec.name)
            if self._client.has_collection(physical):  # A create that died before registering.
                self._client.drop_collection(physical)
            self._client.create_collection(
                physical, schema=schema, index_params=index, consistency_level="Strong"
            )
            stored = CollectionSpec(
                spec.name,
                spec.dimension,
                spec.distance,
                IndexParams(int(params.get("M", 0)), int(params.get("efConstruction", 0)), index_type),
                spec.embedder,
            )
            raw = asdict(stored) | {"distance": stored.distance.value}
            self._client.insert(REGISTRY, [{"name": spec.name, "spec": raw, "vector": [0.0, 0.0]}])
            self._client.flush(REGISTRY)
            self._specs[spec.name] = stored

    async def create_collection(self, spec: CollectionSpec) -> None:
        await self._run(self._create, spec)

    def _registered(self, name: str) -> CollectionSpec | None:
        rows = self._client.query(REGISTRY, filter=f"name == {_literal(name)}", output_fields=["spec"])
        return _spec(rows[0]["spec"]) if rows else None

    def _list(self) -> list[CollectionSpec]:
        rows = self._client.query(REGISTRY, filter='name != ""', output_fields=["spec"], limit=16_384)
        return sorted((_spec(r["spec"]) for r in rows), key=lambda s: s.name)

    async def list_collections(self) -> list[CollectionSpec]:
        return await self._run(self._list)

    def _get(self, name: str) -> CollectionSpec:
        spec = self._specs.get(name)
        if spec is None:
            spec = self._registered(name)
            if spec is None:
                raise NotFound(f"collection {name!r} does not exist")
            self._specs[name] = spec
        return spec

    async def get_collection(self, name: str) -> CollectionSpec:
        # Every search asks this first: answer from the cache without a thread hop.
        return self._specs.get(name) or await self._run(self._get, name)

    def _delete_collection(self, name: str) -> int:
        with self._lock:
            self._get(name)
            removed = self._count(name, None)
            # Unregister first: a crash mid-way leaves an orphan that create() drops.
            self._client.delete(REGISTRY, filter=f"name == {_literal(name)}")
            self._client.flush(REGISTRY)
            self._specs.pop(name, None)
            self._client.drop_collection(physical_name(name))
        return removed

    async def delete_collection(self, name: str) -> int:
        return await self._run(self._delete_collection, name)

    # Points

    def _physical(self, collection: str) -> str:
        self._get(collection)
        return physical_name(collection)

    def _count(self, collection: str, document_ids: Sequence[str] | None) -> int:
        if document_ids is not None and not document_ids:
            return 0
        where = _documents(document_ids) if document_ids is not None else ""
        rows = self._client.query(self._physical(collection), filter=where, output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    async def count(self, collection: str, document_ids: Sequence[str] | None = None) -> int:
        return await self._run(self._count, collection, document_ids)

    def _write(self, collection: str, chunks: Sequence[ChunkPoint]) -> None:
        rows = [
            {
                "id": point_id(c.document_id, c.version, c.index),
                "document_id": c.document_id,
                "chunk_index": c.index,
                "version": c.version,
                "text": c.text,
                "metadata": c.metadata,
                "vector": c.vector.tolist(),
            }
            for c in chunks
        ]
        physical = self._physical(collection)
        self._client.upsert(physical, rows)
        self._client.flush(physical)

    async def write(self, collection: str, chunks: Sequence[ChunkPoint]) -> None:
        await self._run(self._write, collection, chunks)

    def _delete_documents(
        self, collection: str, document_ids: Sequence[str], version: int | None, below_version: int | None
    ) -> None:
        if not document_ids:
            return
        where = _documents(document_ids)
        if version is not None:
            where += f" and version == {int(version)}"
        if below_version is not None:
            where += f" and version < {int(below_version)}"
        physical = self._physical(collection)
        self._client.delete(physical, filter=where)
        self._client.flush(physical)

    async def delete_documents(
        self,
        collection: str,
        document_ids: Sequence[str],
        *,
        version: int | None = None,
        below_version: int | None = None,
    ) -> None:
        await self._run(self._delete_documents, collection, document_ids, version, below_version)

    def _rows(self, collection: str, where: str, fields: list[str]) -> list[dict[str, Any]]:
        """All rows matching `where`, paged (a plain query stops at Milvus' 16,384-row window)."""
        iterator = self._client.query_iterator(
            self._physical(collection), batch_size=_PAGE, filter=where, output_fields=fields
        )
        rows: list[dict[str, Any]] = []
        try:
            while page := iterator.next():
                rows.extend(page)
        finally:
            iterator.close()
        return rows

    def _document_ids(self, collection: str, where: Filter) -> list[str]:
        expression = _expression(where) or 'document_id != ""'
        return sorted({r["document_id"] for r in self._rows(collection, expression, ["document_id"])})

    async def document_ids(self, collection: str, where: Filter) -> list[str]:
        return await self._run(self._document_ids, collection, where)

    def _chunks(self, collection: str, document_id: str) -> list[StoredChunk]:
        return [_to_stored(r) for r in self._rows(collection, _documents([document_id]), _OUTPUT)]

    async def chunks(self, collection: str, document_id: str) -> list[StoredChunk]:
        return await self._run(self._chunks, collection, document_id)

    def _search(self, collection: str, vector: np.ndarray, limit: int, where: Filter) -> list[StoredChunk]:
        spec = self._get(collection)
        results = self._client.search(
            physical_name(collection),
            data=[vector.tolist()],
            limit=limit,
            filter=_expression(where),
            output_fields=_OUTPUT,
            consistency_level="Strong",
        )
        hits = []
        for hit in results[0]:
            score = float(hit["distance"])
            if spec.distance is Distance.EUCLID:
                score = -math.sqrt(max(score, 0.0))
            hits.append(_to_stored(hit["entity"], score))
        return hits

    async def search(
        self, collection: str, vector: np.ndarray, limit: int, where: Filter
    ) -> list[StoredChunk]:
        return await self._run(self._search, collection, vector, limit, where)

    def _list_documents(self, collection: str, after: str, limit: int) -> list[DocumentSummary]:
        where = "chunk_index == 0" + (f" and document_id > {_literal(after)}" if after else "")
        firsts = {r["document_id"]: r.get("metadata") or {} for r in self._rows(collection, where, _OUTPUT)}
        page = sorted(firsts)[:limit]
        rows = self._rows(collection, _documents(page), ["document_id"]) if page else []
        counts = Counter(r["document_id"] for r in rows)
        return [DocumentSummary(doc, counts[doc], firsts[doc]) for doc in page]

    async def list_documents(self, collection: str, after: str, limit: int) -> list[DocumentSummary]:
        return await self._run(self._list_documents, collection, after, limit)

    def _document_count(self, collection: str) -> int:
        rows = self._client.query(
            self._physical(collection), filter="chunk_index == 0", output_fields=["count(*)"]
        )
        return int(rows[0]["count(*)"])

    async def document_count(self, collection: str) -> int:
        return await self._run(self._document_count, collection)

    async def prepare(self) -> None:
        """Nothing to do: Milvus and Qdrant servers index in the background themselves."""

    async def close(self) -> None:
        await self._run(self._client.close)


def _spec(raw: dict[str, Any]) -> CollectionSpec:
    return CollectionSpec(
        name=raw["name"],
        dimension=int(raw["dimension"]),
        distance=Distance(raw["distance"]),
        index=IndexParams(**raw["index"]),
        embedder=raw["embedder"],
    )
