"""The retrieval service's business logic, free of protobuf: collections, ingestion, search.

Ingestion is a stream: chunks of every document in a request are cut lazily, embedded one batch at
a time across document boundaries (so a batch of small documents still fills the embedder), and
written before the next batch is cut. A 20 MB document never has all its embeddings in memory.
Replace-on-upsert and the no-mixing rule are `versions.DocumentVersions`' job.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np

from ragway.core.errors import FailedPrecondition, InvalidArgument, NotFound
from ragway.retrieval import metrics
from ragway.retrieval.chunking import chunk_sections
from ragway.retrieval.config import RetrievalSettings
from ragway.retrieval.embedder import Embedder
from ragway.retrieval.parsing import Section, parse
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
from ragway.retrieval.versions import DocumentVersions

COLLECTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
MAX_DOCUMENT_ID = 256
MAX_TOP_K = 100
DEFAULT_TOP_K = 5
MAX_EMBED_TEXTS = 2048
DEFAULT_PAGE, MAX_PAGE = 100, 1000
MIN_CHUNK_TOKENS = 16


@dataclass(frozen=True)
class DocumentInput:
    id: str
    content: str | bytes
    content_type: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    chunk_tokens: int = 0  # 0 = the service default
    overlap_tokens: int = 0


@dataclass(frozen=True)
class CollectionInfo:
    spec: CollectionSpec
    vector_count: int
    document_count: int
    backend: str


@dataclass(frozen=True)
class StoredDocument:
    id: str
    metadata: dict[str, Any]
    chunks: list[StoredChunk]


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray
    total_tokens: int
    model: str


@dataclass(frozen=True)
class _Pending:
    document_id: str
    index: int
    text: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class _Parsed:
    document: DocumentInput
    sections: list[Section]
    chunk_tokens: int
    overlap_tokens: int


def check_collection_name(name: str, field: str = "name") -> None:
    if not COLLECTION_NAME.match(name):
        raise InvalidArgument(
            f"invalid collection name {name!r}: use 1-128 letters, digits, '_' or '-'", field=field
        )


def normalize_metadata(value: Any) -> Any:
    """JSON numbers arrive as floats (protobuf Struct); integral ones are stored as integers so
    that equality and any_of filters on integers match on every backend."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: normalize_metadata(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize_metadata(v) for v in value]
    return value


def _take(stream: Iterator[_Pending], n: int) -> list[_Pending]:
    return list(islice(stream, n))


class Retrieval:
    """Collections of chunked, embedded documents in one vector store."""

    def __init__(self, store: VectorStore, embedder: Embedder, settings: RetrievalSettings) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.versions = DocumentVersions()

    # Collections

    async def _info(self, spec: CollectionSpec) -> CollectionInfo:
        vectors = await self.store.count(spec.name)
        documents = await self.store.document_count(spec.name)
        return CollectionInfo(spec, vectors, documents, self.store.backend)

    async def create_collection(self, name: str, distance: Distance, index: IndexParams) -> CollectionInfo:
        check_collection_name(name)
        spec = CollectionSpec(name, self.embedder.dimension, distance, index, self.embedder.name)
        await self.store.create_collection(spec)
        metrics.POINTS.labels(name).set(0)
        return await self.describe_collection(name)

    async def list_collections(self) -> list[CollectionInfo]:
        return [await self._info(spec) for spec in await self.store.list_collections()]

    async def describe_collection(self, name: str) -> CollectionInfo:
        check_collection_name(name)
        return await self._info(await self.store.get_collection(name))

    async def delete_collection(self, name: str) -> int:
        check_collection_name(name)
        removed = await self.store.delete_collection(name)
        with contextlib.suppress(KeyError):  # No gauge yet when nothing was written since start.
            metrics.POINTS.remove(name)
        return removed

    async def _writable(self, collection: str) -> CollectionSpec:
        check_collection_name(collection, "collection")
        spec = await self.store.get_collection(collection)
        if spec.dimension != self.embedder.dimension:
            raise FailedPrecondition(
                f"collection {collection!r} holds {spec.dimension}-d vectors of {spec.embedder!r}, but the "
                f"service embeds with {self.embedder.name!r} ({self.embedder.dimension}-d)"
            )
        return spec

    async def _update_points_gauge(self, collection: str) -> None:
        metrics.POINTS.labels(collection).set(await self.store.count(collection))

    # Documents

    def _chunk_options(self, doc: DocumentInput, i: int) -> tuple[int, int]:
        size = doc.chunk_tokens or min(self.settings.chunk_tokens, self.embedder.max_tokens)
        overlap = doc.overlap_tokens or self.settings.overlap_tokens
        if not MIN_CHUNK_TOKENS <= size <= self.embedder.max_tokens:
            raise InvalidArgument(
                f"chunk_tokens must be {MIN_CHUNK_TOKENS}-{self.embedder.max_tokens} "
                f"(what {self.embedder.name} reads), got {size}",
                field=f"documents[{i}].chunking.chunk_tokens",
            )
        if overlap >= size:
            raise InvalidArgument(
                f"overlap_tokens ({overlap}) must be smaller than chunk_tokens ({size})",
                field=f"documents[{i}].chunking.overlap_tokens",
            )
        return size, overlap

    def _parse(self, docs: Sequence[DocumentInput]) -> list[_Parsed]:
        """Validate and parse every document before anything is written (blocking)."""
        parsed = []
        for i, doc in enumerate(docs):
            if not doc.id or len(doc.id) > MAX_DOCUMENT_ID:
                raise InvalidArgument(
                    f"document ids must be 1-{MAX_DOCUMENT_ID} characters, got {len(doc.id)}",
                    field=f"documents[{i}].id",
                )
            size = len(doc.content) if isinstance(doc.content, bytes) else len(doc.content.encode())
            if size > self.settings.max_document_bytes:
                raise InvalidArgument(
                    f"document {doc.id!r} is {size} bytes; the limit is {self.settings.max_document_bytes}",
                    field=f"documents[{i}]",
                )
            chunk_tokens, overlap = self._chunk_options(doc, i)
            try:
                sections = parse(doc.content, doc.content_type)
            except InvalidArgument as exc:
                raise InvalidArgument(
                    f"document {doc.id!r}: {exc.message}", field=f"documents[{i}].{exc.field}"
                ) from exc
            parsed.append(_Parsed(doc, sections, chunk_tokens, overlap))
        return parsed

    def _pending(self, parsed: list[_Parsed]) -> Iterator[_Pending]:
        for p in parsed:
            metadata = normalize_metadata(p.document.metadata)
            chunks = chunk_sections(p.sections, self.embedder, p.chunk_tokens, p.overlap_tokens)
            for index, text in enumerate(chunks):
                yield _Pending(p.document.id, index, text, metadata)

    async def upsert(self, collection: str, docs: Sequence[DocumentInput]) -> list[tuple[str, int]]:
        """Write each document as a new version, then drop its old versions; returns chunks per id."""
        await self._writable(collection)
        if not docs:
            raise InvalidArgument("no documents to upsert", field="documents")
        ids = [doc.id for doc in docs]
        if len(set(ids)) != len(ids):
            raise InvalidArgument("a document id appears twice in one request", field="documents")
        parsed = await asyncio.to_thread(self._parse, docs)
        counts = dict.fromkeys(ids, 0)
        async with self.versions.locked(collection, ids):
            # One version for the whole request: old versions of every document go in one delete.
            version = self.versions.new_version()
            for doc_id in ids:
                self.versions.begin(collection, doc_id, version)
            switched = False
            try:
                stream = self._pending(parsed)
                while batch := await asyncio.to_thread(_take, stream, self.settings.embed_batch_size):
                    vectors = await self.embedder.embed_async([c.text for c in batch])
                    points = [
                        ChunkPoint(c.document_id, c.index, version, c.text, c.metadata, vector)
                        for c, vector in zip(batch, vectors, strict=True)
                    ]
                    await self.store.write(collection, points)
                    del points, vectors
                    for c in batch:
                        counts[c.document_id] += 1
                    metrics.CHUNKS_INGESTED.inc(len(batch))
                for doc_id in ids:
                    self.versions.switch(collection, doc_id)
                switched = True
                await self.store.delete_documents(collection, ids, below_version=version)
            except BaseException:
                # An unfinished new version must not survive: its chunks would mix with the old.
                if not switched:
                    await self.store.delete_documents(collection, ids, version=version)
                raise
            finally:
                for doc_id in ids:
                    self.versions.end(collection, doc_id)
        metrics.DOCUMENTS_INGESTED.inc(len(ids))
        await self._update_points_gauge(collection)
        return list(counts.items())

    async def delete_documents(self, collection: str, ids: Sequence[str], where: Filter) -> int:
        """Delete whole documents, by id or by a filter on their metadata; returns chunks removed."""
        check_collection_name(collection, "collection")
        if ids and where.must:
            raise InvalidArgument("give document ids or a filter, not both", field="filter")
        if not ids and not where.must:
            raise InvalidArgument(
                "give document ids or a filter (an empty filter would match all)", field="ids"
            )
        await self.store.get_collection(collection)
        targets = list(ids) or await self.store.document_ids(collection, where)
        async with self.versions.locked(collection, targets):
            removed = await self.store.count(collection, targets)
            await self.store.delete_documents(collection, targets)
        await self._update_points_gauge(collection)
        return removed

    async def get_document(self, collection: str, document_id: str) -> StoredDocument:
        check_collection_name(collection, "collection")
        visibility = self.versions.visibility(collection)
        chunks = [c for c in await self.store.chunks(collection, document_id) if visibility.visible(c)]
        if not chunks:
            raise NotFound(f"document {document_id!r} not found in collection {collection!r}")
        newest = max(c.version for c in chunks)
        chunks = sorted((c for c in chunks if c.version == newest), key=lambda c: c.index)
        return StoredDocument(document_id, chunks[0].metadata, chunks)

    async def list_documents(
        self, collection: str, limit: int, after: str
    ) -> tuple[list[DocumentSummary], str]:
        """One page of documents ordered by id, and the id to continue after ("" on the last page)."""
        check_collection_name(collection, "collection")
        limit = limit or DEFAULT_PAGE
        if limit > MAX_PAGE:
            raise InvalidArgument(f"limit must be at most {MAX_PAGE}", field="limit")
        page = await self.store.list_documents(collection, after, limit + 1)
        return page[:limit], page[limit - 1].id if len(page) > limit else ""

    # Search and embeddings

    def _query_vector(self, spec: CollectionSpec, values: Sequence[float]) -> np.ndarray:
        if len(values) != spec.dimension:
            raise InvalidArgument(
                f"query vector has {len(values)} dimensions; collection {spec.name!r} has {spec.dimension}",
                field="vector",
            )
        vector = np.asarray(values, dtype=np.float32)
        if not np.isfinite(vector).all():
            raise InvalidArgument("query vector contains NaN or infinity", field="vector")
        return vector

    async def search(
        self,
        collection: str,
        query: str | Sequence[float],
        top_k: int,
        where: Filter,
        score_threshold: float | None = None,
    ) -> list[StoredChunk]:
        """The top_k chunks nearest the query among those matching `where`, best first."""
        started = time.perf_counter()
        check_collection_name(collection, "collection")
        top_k = top_k or DEFAULT_TOP_K
        if top_k > MAX_TOP_K:
            raise InvalidArgument(f"top_k must be 1-{MAX_TOP_K}, got {top_k}", field="top_k")
        if score_threshold is not None and math.isnan(score_threshold):
            raise InvalidArgument("score_threshold is NaN", field="score_threshold")
        if isinstance(query, str):
            if not query.strip():
                raise InvalidArgument("the query text is empty", field="text")
            await self._writable(collection)
            vector = (await self.embedder.embed_async([query]))[0]
        else:
            vector = self._query_vector(await self.store.get_collection(collection), query)
        hits = await self._visible_hits(collection, vector, top_k, where)
        if score_threshold is not None:
            hits = [h for h in hits if h.score >= score_threshold]
        metrics.SEARCH_SECONDS.observe(time.perf_counter() - started)
        return hits

    async def _visible_hits(
        self, collection: str, vector: np.ndarray, top_k: int, where: Filter
    ) -> list[StoredChunk]:
        """Nearest hits that no in-flight rewrite hides; asks the store for more while some are hidden."""
        limit = top_k
        while True:
            visibility = self.versions.visibility(collection)
            hits = await self.store.search(collection, vector, limit, where)
            if not visibility.hides_something():
                return hits[:top_k]
            kept = [h for h in hits if visibility.visible(h)]
            if len(kept) >= top_k or len(hits) < limit:
                return kept[:top_k]
            limit *= 4

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        if not texts:
            raise InvalidArgument("no texts to embed", field="texts")
        if len(texts) > MAX_EMBED_TEXTS:
            raise InvalidArgument(
                f"at most {MAX_EMBED_TEXTS} texts per call, got {len(texts)}", field="texts"
            )
        for i, text in enumerate(texts):
            if not text.strip():
                raise InvalidArgument(f"text {i} is empty", field=f"texts[{i}]")
        vectors = await self.embedder.embed_async(texts)
        tokens = await asyncio.to_thread(self.embedder.count_tokens, texts)
        return Embeddings(vectors, tokens, self.embedder.name)

    async def refresh_points_gauge(self) -> None:
        for spec in await self.store.list_collections():
            await self._update_points_gauge(spec.name)
