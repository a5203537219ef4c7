"""Milvus through pymilvus: a server by URI, or Milvus Lite when the URI is a local `.db` path.

Milvus collection names allow only letters, digits and '_', and Milvus Lite keeps no collection
description, so ragway's collection names map to `ragway_<hash>` and what each collection was
created with lives in a small registry collection (`ragway_registry`). Every read uses Strong
consistency: a search issued after a write returns sees that write, as on the Qdrant backend.
Milvus reports squared L2 distances; scores are turned into minus the Euclidean distance.

Hybrid search: a collection created on a Milvus with sparse vectors (Milvus Lite, servers 2.4+)
gets a `sparse` field (SPARSE_INVERTED_INDEX, inner product) holding the service's BM25 term
weights, and a hybrid query is one `hybrid_search` with Milvus' WeightedRanker, its score-
normalising fusion (DBSF; hybrid RRF is fused by document in the service). Milvus has no IDF
modifier for plain sparse vectors (its BM25 function would do it, but Milvus Lite 3.2's ignores the
analyzer's stemmer and stopwords), so this store weighs each query term by its IDF itself, with
Qdrant's formula, from document frequencies it counts: read from the collection on the first sparse
search, then kept up to date by this process's writes and deletes (other writers to a shared server
are seen after a restart). A Milvus 2.3 server has no sparse vectors: its collections are dense
only, and the service answers hybrid searches there with dense results and says why.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, TypeVar

from pymilvus import AnnSearchRequest, DataType, MilvusClient, MilvusException, WeightedRanker

from ragway.core.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
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
from ragway.retrieval.stores.qdrant_common import point_id

log = logging.getLogger(__name__)

T = TypeVar("T")

REGISTRY = "ragway_registry"
# Index types Milvus accepts for float vectors; Milvus Lite silently accepts any string, so the
# store checks instead of letting a typo become a collection with no real index.
INDEX_TYPES = frozenset({"AUTOINDEX", "FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "DISKANN", "SCANN"})
_METRICS = {Distance.COSINE: "COSINE", Distance.DOT: "IP", Distance.EUCLID: "L2"}
_OUTPUT = ["document_id", "chunk_index", "version", "text", "metadata"]
_PAGE = 1_000
_MAX_TEXT_BYTES = 65_535
# Milvus refuses a sparse vector without a non-zero weight; a chunk of stopwords only gets this
# term, outside the encoder's 31-bit term ids, so no query ever matches it.
_EMPTY_TERM = 1 << 31
_NO_SPARSE = re.compile(r"^v?2\.[0-3]\.")


class _Frequencies:
    """Document frequency of each sparse term in one collection, and its number of points."""

    def __init__(self) -> None:
        self.df: Counter[int] = Counter()
        self.points = 0

    def add(self, rows: Sequence[dict[int, float]], sign: int = 1) -> None:
        for row in rows:
            self.df.update({term: sign for term in row})
        self.points += sign * len(rows)

    def idf(self, term: int) -> float:
        """Qdrant's IDF modifier: ln(1 + (N - n + 0.5) / (n + 0.5)); 0 for an unseen term."""
        n = self.df.get(term, 0)
        return math.log(1 + (self.points - n + 0.5) / (n + 0.5)) if n > 0 else 0.0


def _sparse_row(vector: SparseVector | None) -> dict[int, float]:
    if not vector:
        return {_EMPTY_TERM: 1e-6}
    return dict(zip(vector.indices, vector.values, strict=True))


def physical_name(name: str) -> str:
    return "ragway_" + hashlib.blake2b(name.encode(), digest_size=16).hexdigest()


def _literal(value: Any) -> str:
    """A Milvus expression literal: JSON's quoting of strings is what Milvus' parser reads."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _clause(clause: Condition | Filter, guard: bool) -> str:
    """One clause as a Milvus boolean expression, parenthesised. `guard`: the clause is under a
    `not`, where Milvus' three-valued logic would drop the points whose metadata lacks the key
    (a comparison with a missing JSON key is null, and so is its negation); `exists` makes it
    plainly false there, so `not` keeps those points, as Qdrant's must_not does."""
    if isinstance(clause, Filter):
        return f"({_expression(clause, guard=guard)})"
    field = f'metadata["{clause.key}"]'
    if clause.range is not None:
        r = clause.range
        parts = [
            f"{field} {op} {_literal(bound)}"
            for op, bound in ((">", r.gt), (">=", r.gte), ("<", r.lt), ("<=", r.lte))
            if bound is not None
        ]
    elif clause.any_of is not None:
        # Milvus Lite's parser has no `in` for JSON fields: spell it as a disjunction.
        parts = ["(" + " or ".join(f"{field} == {_literal(v)}" for v in clause.any_of) + ")"]
    else:
        parts = [f"{field} == {_literal(clause.equals)}"]
    if guard:
        parts.insert(0, f"exists {field}")
    return "(" + " and ".join(parts) + ")"


def _expression(where: Filter, *extra: str, guard: bool = False) -> str:
    """The filter as one boolean expression: must clauses joined by `and`, the should clauses as
    one `(... or ...)`, each must_not clause as `not (...)`. "" matches everything."""
    parts = list(extra) + [_clause(c, guard) for c in where.must]
    if where.should:
        parts.append("(" + " or ".join(_clause(c, guard) for c in where.should) + ")")
    parts += [f"not {_clause(c, True)}" for c in where.must_not]
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
    weighted_score_fusion = True

    def __init__(self, uri: str, token: str = "") -> None:
        try:
            self._client = MilvusClient(uri, token=token) if token else MilvusClient(uri)
        except MilvusException as exc:
            raise Unavailable(f"cannot open Milvus at {uri}: {exc.message}") from exc
        self._specs: dict[str, CollectionSpec] = {}
        self._frequencies: dict[str, _Frequencies] = {}  # per collection, once counted
        self._lock = threading.Lock()
        self._ensure_registry()
        version = str(self._client.get_server_version())
        self._no_sparse = (
            f"Milvus {version} has no sparse vectors (Milvus 2.4+ has)" if _NO_SPARSE.match(version) else ""
        )

    def supports_sparse(self) -> str:
        return self._no_sparse

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
            sparse = "" if self._no_sparse else spec.sparse
            if sparse:
                schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
            params: dict[str, Any] = {}
            if index_type == "HNSW":
                params = {"M": spec.index.hnsw_m or 16, "efConstruction": spec.index.hnsw_ef_construct or 200}
            elif index_type.startswith("IVF"):
                params = {"nlist": spec.index.ivf_nlist or 1024}
            index = self._client.prepare_index_params()
            index.add_index(
                "vector", index_type=index_type, metric_type=_METRICS[spec.distance], params=params
            )
            if sparse:
                index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
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
                IndexParams(
                    int(params.get("M", 0)),
                    int(params.get("efConstruction", 0)),
                    index_type,
                    ivf_nlist=int(params.get("nlist", 0)),
                ),
                spec.embedder,
                sparse,
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
        spec = self._specs.get(name)
        return spec if spec is not None else await self._run(self._get, name)

    def _delete_collection(self, name: str) -> int:
        with self._lock:
            self._get(name)
            removed = self._count(name, None)
            # Unregister first: a crash mid-way leaves an orphan that create() drops.
            self._client.delete(REGISTRY, filter=f"name == {_literal(name)}")
            self._client.flush(REGISTRY)
            self._specs.pop(name, None)
            self._frequencies.pop(name, None)
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
        spec = self._get(collection)
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
            | ({"sparse": _sparse_row(c.sparse)} if spec.sparse else {})
            for c in chunks
        ]
        physical = self._physical(collection)
        self._client.upsert(physical, rows)
        self._client.flush(physical)
        if spec.sparse and (counted := self._frequencies.get(collection)) is not None:
            with self._lock:
                counted.add([row["sparse"] for row in rows])

    def _counted(self, collection: str) -> _Frequencies:
        """The collection's term frequencies, counted from its points the first time."""
        counted = self._frequencies.get(collection)
        if counted is None:
            counted = _Frequencies()
            counted.add([row["sparse"] for row in self._rows(collection, 'id != ""', ["sparse"])])
            with self._lock:
                counted = self._frequencies.setdefault(collection, counted)
        return counted

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
        counted = self._frequencies.get(collection)
        if counted is not None:
            gone = [row["sparse"] for row in self._rows(collection, where, ["sparse"])]
        self._client.delete(physical, filter=where)
        self._client.flush(physical)
        if counted is not None:
            with self._lock:
                counted.add(gone, -1)

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

    def _query(self, collection: str, query: Query, limit: int, where: Filter) -> list[StoredChunk]:
        spec = self._get(collection)
        physical, expression = physical_name(collection), _expression(where)
        dense_params: dict[str, Any] = {"metric_type": _METRICS[spec.distance], "params": {}}
        if query.ef:
            dense_params["params"]["ef"] = query.ef
        if query.nprobe:
            dense_params["params"]["nprobe"] = query.nprobe
        sparse_params = {"metric_type": "IP", "params": {}}
        sparse = self._weighted(collection, query.sparse) if query.sparse else None
        common: dict[str, Any] = {"output_fields": _OUTPUT, "consistency_level": "Strong"}
        dense = query.dense.tolist() if query.dense is not None else None
        fused = dense is not None and sparse is not None
        if fused:
            depth = query.prefetch_limit(limit)
            requests = [
                AnnSearchRequest([dense], "vector", dense_params, depth, expr=expression),
                AnnSearchRequest([sparse], "sparse", sparse_params, depth, expr=expression),
            ]
            ranker = WeightedRanker(*query.weights)
            hits = self._client.hybrid_search(physical, requests, ranker, limit=limit, **common)[0]
        elif dense is not None or sparse is not None:
            field, data, params = (
                ("vector", dense, dense_params) if dense is not None else ("sparse", sparse, sparse_params)
            )
            hits = self._client.search(
                physical,
                data=[data],
                anns_field=field,
                limit=limit,
                filter=expression,
                search_params=params,
                **common,
            )[0]
        else:
            return []  # a sparse query of stopwords only matches nothing
        out = []
        for hit in hits:
            score = float(hit["distance"])
            if query.dense is not None and not fused and spec.distance is Distance.EUCLID:
                score = -math.sqrt(max(score, 0.0))
            out.append(_to_stored(hit["entity"], score))
        return out

    async def query(self, collection: str, query: Query, limit: int, where: Filter) -> list[StoredChunk]:
        return await self._run(self._query, collection, query, limit, where)

    def _weighted(self, collection: str, vector: SparseVector) -> dict[int, float] | None:
        """Query term weights times their IDF; None when no term occurs in the collection."""
        counted = self._counted(collection)
        weights = {t: w * counted.idf(t) for t, w in zip(vector.indices, vector.values, strict=True)}
        weights = {t: w for t, w in weights.items() if w > 0}
        return weights or None

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
        sparse=raw.get("sparse", ""),
    )
