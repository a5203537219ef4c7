"""The retrieval service's business logic, free of protobuf: collections, ingestion, search.

Ingestion is a stream: chunks of every document in a request are cut lazily, embedded one batch at
a time across document boundaries (so a batch of small documents still fills the embedder), and
written before the next batch is cut. A 20 MB document never has all its embeddings in memory.
Replace-on-upsert and the no-mixing rule are `versions.DocumentVersions`' job.

Search is dense, sparse (BM25) or hybrid (both, fused in the store), optionally followed by a
cross-encoder over the top candidates. Collections created before hybrid search hold no sparse
vectors: hybrid search there runs dense and says so (`SearchResult.fallback_reason`); recreating
the collection and uploading its documents again gives it sparse vectors.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import islice
from typing import Any

import numpy as np

from ragway.core.errors import FailedPrecondition, InvalidArgument, NotFound
from ragway.core.limits import (
    MAX_DOCUMENT_ID,
    MAX_EF,
    MAX_EMBED_TEXTS,
    MAX_FUSION_WEIGHT,
    MAX_HNSW_EF_CONSTRUCT,
    MAX_HNSW_M,
    MAX_IVF_NLIST,
    MAX_PREFETCH,
    MAX_RERANK_CANDIDATES,
    MAX_TOP_K,
    STORE_COLLECTION_NAME,
)
from ragway.retrieval import metrics
from ragway.retrieval.chunking import chunk_sections
from ragway.retrieval.config import RetrievalSettings
from ragway.retrieval.embedder import Embedder, Embedders
from ragway.retrieval.fusion import fuse_by_document
from ragway.retrieval.parsing import Section, parse
from ragway.retrieval.rerank import NO_RERANKER_NOTE, Reranker
from ragway.retrieval.sparse import SparseEncoder, encoder_named
from ragway.retrieval.stores.base import (
    ChunkPoint,
    CollectionSpec,
    Distance,
    DocumentSummary,
    Filter,
    Fusion,
    IndexParams,
    Query,
    StoredChunk,
    VectorStore,
)
from ragway.retrieval.versions import DocumentVersions

DEFAULT_TOP_K = 5
DEFAULT_PAGE, MAX_PAGE = 100, 1000
MIN_CHUNK_TOKENS = 16


class Mode(StrEnum):
    DENSE = "dense"
    SPARSE = "sparse"
    HYBRID = "hybrid"


class Ranker(StrEnum):
    AUTO = "auto"  # the configured cross-encoder if there is one
    NONE = "none"
    CROSS_ENCODER = "cross-encoder"  # required: FailedPrecondition without one


@dataclass(frozen=True)
class SearchOptions:
    """How to search; the defaults are hybrid RRF with equal weights, reranked when a
    cross-encoder is configured. `mode=None` means hybrid for text, dense for a vector, and
    dense for text with a score threshold (whose scale is the cosine of dense search)."""

    mode: Mode | None = None
    fusion: Fusion = Fusion.RRF
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    prefetch: int = 0
    ranker: Ranker = Ranker.AUTO
    rerank_candidates: int = 0
    ef: int = 0
    nprobe: int = 0


@dataclass(frozen=True)
class SearchResult:
    hits: list[StoredChunk]
    mode: Mode  # the mode that ran
    fallback_reason: str = ""  # why it is not the mode asked for
    ranker: str = ""  # the reranker that reordered the hits, if any


@dataclass(frozen=True)
class ServiceInfo:
    backend: str
    embedder: str
    sparse_encoder: str
    reranker: str
    notes: list[str]
    embedders: list[Embedder] = field(default_factory=list)  # every one served, the default first


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
    if not STORE_COLLECTION_NAME.match(name):
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

    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        settings: RetrievalSettings,
        *,
        reranker: Reranker | None = None,
        sparse: SparseEncoder | None = None,
        more_embedders: Sequence[Embedder] = (),
    ) -> None:
        self.store = store
        self.embedder = embedder  # the default: new collections and Embed calls naming none
        self.embedders = Embedders([embedder, *more_embedders])
        self.settings = settings
        self.reranker = reranker
        self.sparse = sparse or SparseEncoder()
        self.versions = DocumentVersions()

    def describe_service(self) -> ServiceInfo:
        notes = []
        if self.reranker is None:
            notes.append(NO_RERANKER_NOTE)
        if why := self.store.supports_sparse():
            notes.append(f"no sparse vectors: {why}; hybrid and sparse search fall back to dense")
        return ServiceInfo(
            self.store.backend,
            self.embedder.name,
            "" if self.store.supports_sparse() else self.sparse.name,
            self.reranker.name if self.reranker else "",
            notes,
            list(self.embedders),
        )

    # Collections

    async def _info(self, spec: CollectionSpec) -> CollectionInfo:
        vectors = await self.store.count(spec.name)
        documents = await self.store.document_count(spec.name)
        return CollectionInfo(spec, vectors, documents, self.store.backend)

    async def create_collection(
        self, name: str, distance: Distance, index: IndexParams, embedder: str = ""
    ) -> CollectionInfo:
        """A new collection built with `embedder` (the default for "") from now on."""
        check_collection_name(name)
        try:
            model = self.embedders.get(embedder)
        except NotFound as exc:
            raise NotFound(exc.message, field="embedder") from None
        if (
            index.hnsw_m > MAX_HNSW_M
            or index.hnsw_ef_construct > MAX_HNSW_EF_CONSTRUCT
            or index.ivf_nlist > MAX_IVF_NLIST
        ):
            raise InvalidArgument(
                f"index parameters out of range: hnsw_m <= {MAX_HNSW_M}, hnsw_ef_construct <= "
                f"{MAX_HNSW_EF_CONSTRUCT}, ivf_nlist <= {MAX_IVF_NLIST}",
                field="index",
            )
        sparse = "" if self.store.supports_sparse() else self.sparse.name
        spec = CollectionSpec(name, model.dimension, distance, index, model.name, sparse)
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

    def _built_with(self, spec: CollectionSpec, embedder: str) -> str:
        """The embedder the collection was built with, which every write and query of it uses:
        vectors of two embedders are not comparable, even at the same dimension. A caller that
        means another (`embedder`) is refused rather than answered with the wrong one."""
        # Collections from before embedders were recorded carry none: they hold the default's.
        built_with = spec.embedder or self.embedder.name
        if embedder and embedder != built_with:
            raise FailedPrecondition(
                f"collection {spec.name!r} was built with the embedder {built_with!r}, not "
                f"{embedder!r}; its vectors are comparable with {built_with!r}'s only",
                field="embedder",
            )
        return built_with

    async def _writable(self, collection: str, embedder: str = "") -> tuple[CollectionSpec, Embedder]:
        """The collection and the embedder it was built with (see `_built_with`)."""
        check_collection_name(collection, "collection")
        spec = await self.store.get_collection(collection)
        try:
            model = self.embedders.get(self._built_with(spec, embedder))
        except NotFound:
            raise FailedPrecondition(
                f"collection {collection!r} was built with the embedder {spec.embedder!r}, which this "
                "service does not serve (add its folder to RAGWAY_RETRIEVAL_EXTRA_EMBEDDERS)"
            ) from None
        if spec.dimension != model.dimension:
            raise FailedPrecondition(
                f"collection {collection!r} holds {spec.dimension}-d vectors of {spec.embedder!r}, but "
                f"{model.name!r} makes {model.dimension}-d ones"
            )
        return spec, model

    def _sparse_encoder(self, spec: CollectionSpec) -> SparseEncoder | None:
        """The sparse encoder version the collection's vectors were written with (new collections
        get the newest; older ones keep theirs), or None when it holds no sparse vectors."""
        return self.sparse if spec.sparse == self.sparse.name else encoder_named(spec.sparse)

    async def _update_points_gauge(self, collection: str) -> None:
        metrics.POINTS.labels(collection).set(await self.store.count(collection))

    # Documents

    def _chunk_options(self, doc: DocumentInput, i: int, embedder: Embedder) -> tuple[int, int]:
        size = doc.chunk_tokens or min(self.settings.chunk_tokens, embedder.max_tokens)
        overlap = doc.overlap_tokens or self.settings.overlap_tokens
        if not MIN_CHUNK_TOKENS <= size <= embedder.max_tokens:
            raise InvalidArgument(
                f"chunk_tokens must be {MIN_CHUNK_TOKENS}-{embedder.max_tokens} "
                f"(what {embedder.name} reads), got {size}",
                field=f"documents[{i}].chunking.chunk_tokens",
            )
        if overlap >= size:
            raise InvalidArgument(
                f"overlap_tokens ({overlap}) must be smaller than chunk_tokens ({size})",
                field=f"documents[{i}].chunking.overlap_tokens",
            )
        return size, overlap

    def _parse(self, docs: Sequence[DocumentInput], embedder: Embedder) -> list[_Parsed]:
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
            chunk_tokens, overlap = self._chunk_options(doc, i, embedder)
            try:
                sections = parse(doc.content, doc.content_type)
            except InvalidArgument as exc:
                raise InvalidArgument(
                    f"document {doc.id!r}: {exc.message}", field=f"documents[{i}].{exc.field}"
                ) from exc
            parsed.append(_Parsed(doc, sections, chunk_tokens, overlap))
        return parsed

    def _pending(self, parsed: list[_Parsed], embedder: Embedder) -> Iterator[_Pending]:
        for p in parsed:
            metadata = normalize_metadata(p.document.metadata)
            chunks = chunk_sections(p.sections, embedder, p.chunk_tokens, p.overlap_tokens)
            for index, text in enumerate(chunks):
                yield _Pending(p.document.id, index, text, metadata)

    async def upsert(
        self, collection: str, docs: Sequence[DocumentInput], embedder: str = ""
    ) -> list[tuple[str, int]]:
        """Write each document as a new version, then drop its old versions; returns chunks per id.
        `embedder`, when given, must be the one the collection was built with."""
        spec, model = await self._writable(collection, embedder)
        sparse_encoder = self._sparse_encoder(spec)
        if not docs:
            raise InvalidArgument("no documents to upsert", field="documents")
        ids = [doc.id for doc in docs]
        if len(set(ids)) != len(ids):
            raise InvalidArgument("a document id appears twice in one request", field="documents")
        parsed = await asyncio.to_thread(self._parse, docs, model)
        counts = dict.fromkeys(ids, 0)
        async with self.versions.locked(collection, ids):
            # One version for the whole request: old versions of every document go in one delete.
            version = self.versions.new_version()
            for doc_id in ids:
                self.versions.begin(collection, doc_id, version)
            switched = False
            try:
                stream = self._pending(parsed, model)
                while batch := await asyncio.to_thread(_take, stream, self.settings.embed_batch_size):
                    texts = [c.text for c in batch]
                    if sparse_encoder is not None:
                        # Sparse encoding (Python) overlaps embedding (torch, GIL released).
                        vectors, sparse = await asyncio.gather(
                            model.embed_async(texts), asyncio.to_thread(sparse_encoder.documents, texts)
                        )
                    else:
                        vectors, sparse = await model.embed_async(texts), [None] * len(batch)
                    points = [
                        ChunkPoint(c.document_id, c.index, version, c.text, c.metadata, vector, terms)
                        for c, vector, terms in zip(batch, vectors, sparse, strict=True)
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
        if ids and where:
            raise InvalidArgument("give document ids or a filter, not both", field="filter")
        if not ids and not where:
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
        options: SearchOptions = SearchOptions(),
    ) -> list[StoredChunk]:
        """The top_k best chunks for the query among those matching `where`, best first."""
        return (await self.run_search(collection, query, top_k, where, score_threshold, options)).hits

    def _check_options(self, top_k: int, options: SearchOptions, score_threshold: float | None) -> None:
        if top_k > MAX_TOP_K:
            raise InvalidArgument(f"top_k must be 1-{MAX_TOP_K}, got {top_k}", field="top_k")
        if score_threshold is not None and math.isnan(score_threshold):
            raise InvalidArgument("score_threshold is NaN", field="score_threshold")
        for name, weight in (
            ("dense_weight", options.dense_weight),
            ("sparse_weight", options.sparse_weight),
        ):
            if not (math.isfinite(weight) and 0 <= weight <= MAX_FUSION_WEIGHT):
                raise InvalidArgument(
                    f"{name} must be 0-{MAX_FUSION_WEIGHT:g}, got {weight}", field=f"hybrid.{name}"
                )
        if options.dense_weight == options.sparse_weight == 0:
            raise InvalidArgument("dense_weight and sparse_weight cannot both be 0", field="hybrid")
        if options.prefetch > MAX_PREFETCH:
            raise InvalidArgument(
                f"prefetch_limit must be at most {MAX_PREFETCH}", field="hybrid.prefetch_limit"
            )
        if options.rerank_candidates > MAX_RERANK_CANDIDATES:
            raise InvalidArgument(
                f"candidates must be at most {MAX_RERANK_CANDIDATES}", field="ranking_options.candidates"
            )
        if options.ef > MAX_EF:
            raise InvalidArgument(f"ef must be at most {MAX_EF}", field="params.ef")
        if options.ranker is Ranker.CROSS_ENCODER and self.reranker is None:
            raise FailedPrecondition(
                "ranker 'cross-encoder' asked for, but this service has no cross-encoder "
                "(set RAGWAY_RETRIEVAL_RERANKER)"
            )

    async def run_search(
        self,
        collection: str,
        query: str | Sequence[float],
        top_k: int,
        where: Filter,
        score_threshold: float | None = None,
        options: SearchOptions = SearchOptions(),
        embedder: str = "",
    ) -> SearchResult:
        """Search, say which mode ran (and why, if not the one asked for) and who reranked.
        `embedder`, when given, must be the one the collection was built with (for a vector
        query: the one that made the vector)."""
        started = time.perf_counter()
        check_collection_name(collection, "collection")
        top_k = top_k or DEFAULT_TOP_K
        self._check_options(top_k, options, score_threshold)
        reason = ""
        if isinstance(query, str):
            if not query.strip():
                raise InvalidArgument("the query text is empty", field="text")
            spec, model = await self._writable(collection, embedder)
            # A threshold without a mode keeps the meaning it had before hybrid search: a cut on
            # cosine similarity, which only dense scores have.
            mode = options.mode or (Mode.DENSE if score_threshold is not None else Mode.HYBRID)
            sparse_encoder = self._sparse_encoder(spec)
            if mode is not Mode.DENSE and sparse_encoder is None:
                why = (
                    f"collection {collection!r} has no sparse vectors"
                    + (f" ({self.store.supports_sparse()})" if self.store.supports_sparse() else "")
                    + "; recreate it and upload its documents again to enable hybrid search"
                )
                if mode is Mode.SPARSE:
                    raise FailedPrecondition(f"sparse search unavailable: {why}")
                mode, reason = Mode.DENSE, f"hybrid search fell back to dense: {why}"
            if mode is Mode.HYBRID and options.dense_weight == 0:
                mode = Mode.SPARSE
            elif mode is Mode.HYBRID and options.sparse_weight == 0:
                mode = Mode.DENSE
            elif (
                mode is Mode.HYBRID
                and options.fusion is Fusion.DBSF
                and options.dense_weight != options.sparse_weight
                and not self.store.weighted_score_fusion
            ):
                raise InvalidArgument(
                    f"the {self.store.backend} store's DBSF fusion weighs both searches equally; "
                    "weights need fusion rrf",
                    field="hybrid",
                )
            dense = (await model.embed_async([query]))[0] if mode is not Mode.SPARSE else None
            sparse = sparse_encoder.query(query) if sparse_encoder and mode is not Mode.DENSE else None
        else:
            if options.mode not in (None, Mode.DENSE):
                raise InvalidArgument(
                    f"{options.mode} search needs a query text; a vector query is dense only", field="mode"
                )
            spec = await self.store.get_collection(collection)
            self._built_with(spec, embedder)
            mode, dense, sparse = Mode.DENSE, self._query_vector(spec, query), None
        request = Query(
            dense=dense,
            sparse=sparse,
            fusion=options.fusion,
            weights=(options.dense_weight, options.sparse_weight),
            prefetch=options.prefetch,
            ef=options.ef,
            nprobe=options.nprobe,
        )
        # The same legacy rule: a threshold without a mode is a cosine cut, so "auto" skips reranking.
        legacy_threshold = score_threshold is not None and options.mode is None
        rerank = (
            self.reranker is not None
            and isinstance(query, str)
            and (
                options.ranker is Ranker.CROSS_ENCODER
                or (options.ranker is Ranker.AUTO and not legacy_threshold)
            )
        )
        depth = max(top_k, options.rerank_candidates or self.settings.rerank_candidates) if rerank else top_k
        hits = await self._hits(collection, request, depth, where)
        ranker = ""
        if rerank and self.reranker is not None and hits:
            assert isinstance(query, str)
            scores = await self.reranker.score_async(query, [h.text for h in hits])
            for hit, score in zip(hits, scores, strict=True):
                hit.score = hit.rerank_score = score
            hits = sorted(hits, key=lambda h: -h.score)[:top_k]
            ranker = self.reranker.name
        if score_threshold is not None:
            hits = [h for h in hits if h.score >= score_threshold]
        metrics.SEARCH_SECONDS.labels(mode.value).observe(time.perf_counter() - started)
        return SearchResult(hits, mode, reason, ranker)

    async def _hits(self, collection: str, query: Query, top_k: int, where: Filter) -> list[StoredChunk]:
        """Hybrid RRF is fused here, by document (fusion.py), from the two lists the store ranks
        apart; DBSF, which fuses scores, and single-mode searches are the store's."""
        if query.dense is None or query.sparse is None or query.fusion is not Fusion.RRF:
            return await self._visible_hits(collection, query, top_k, where)
        depth = query.prefetch_limit(top_k)
        dense, sparse = await asyncio.gather(
            self._visible_hits(collection, replace(query, sparse=None), depth, where),
            self._visible_hits(collection, replace(query, dense=None), depth, where),
        )
        return fuse_by_document(dense, sparse, query.weights, top_k)

    async def _visible_hits(
        self, collection: str, query: Query, top_k: int, where: Filter
    ) -> list[StoredChunk]:
        """Best hits that no in-flight rewrite hides; asks the store for more while some are hidden."""
        limit = top_k
        while True:
            visibility = self.versions.visibility(collection)
            hits = await self.store.query(collection, query, limit, where)
            if not visibility.hides_something():
                return hits[:top_k]
            kept = [h for h in hits if visibility.visible(h)]
            if len(kept) >= top_k or len(hits) < limit:
                return kept[:top_k]
            limit *= 4

    async def embed(self, texts: Sequence[str], model: str = "") -> Embeddings:
        """Vectors of `texts` by the embedder called `model` (the default for "")."""
        embedder = self.embedders.get(model)
        if not texts:
            raise InvalidArgument("no texts to embed", field="texts")
        if len(texts) > MAX_EMBED_TEXTS:
            raise InvalidArgument(
                f"at most {MAX_EMBED_TEXTS} texts per call, got {len(texts)}", field="texts"
            )
        for i, text in enumerate(texts):
            if not text.strip():
                raise InvalidArgument(f"text {i} is empty", field=f"texts[{i}]")
        vectors = await embedder.embed_async(texts)
        tokens = await asyncio.to_thread(embedder.count_tokens, texts)
        return Embeddings(vectors, tokens, embedder.name)

    async def refresh_points_gauge(self) -> None:
        for spec in await self.store.list_collections():
            await self._update_points_gauge(spec.name)
