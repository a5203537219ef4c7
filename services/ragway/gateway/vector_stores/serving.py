"""OpenAI vector stores over ragway's collections: one model of the data.

A vector store IS a `collections` row (its `id` is the vector store id, `vs_...`; its `name` is the
route key `/v1/collections` uses), and a vector store file IS a `documents` row whose `file_id` is
set (`document_id` is the file id too). So `/v1/collections`, `ragway ingest`, the `rag` option
of chat and `/v1/vector_stores` read and write the same rows and the same retrieval collections.

Writes only record intent (`status = in_progress`); the ingestion worker (`ingestion.py`)
does the embedding in the background from those rows. `find_chunks` is how the search route and
the Responses API's `file_search` tool search: OpenAI's options as a `rag.search.Search`, run by
the one search path every API shares.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ragway.core.errors import FailedPrecondition, InvalidArgument, NotFound
from ragway.core.limits import METADATA_KEY
from ragway.gateway.accounts.auth import Principal
from ragway.gateway.accounts.limiter import Limiter
from ragway.gateway.clients.retrieval import IndexSettings, RetrievalClient, RetrievedChunk
from ragway.gateway.core.config import GatewaySettings
from ragway.gateway.core.errors import PermissionDenied
from ragway.gateway.core.tables import Collection, FileBatch, IngestedFile, StoredFile, now
from ragway.gateway.generation.service import GenerationService
from ragway.gateway.rag import access
from ragway.gateway.rag.protocol import HybridOptions, SearchParams, SearchTuning
from ragway.gateway.rag.query import rewrite_query
from ragway.gateway.rag.search import Search, run_search
from ragway.gateway.vector_stores.protocol import (
    Attributes,
    ChunkingStrategy,
    ContentPart,
    FileBatchObject,
    FileCounts,
    SearchResult,
    VectorStoreFileObject,
    VectorStoreObject,
)

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
# "auto" chunking: the retrieval service's default chunk size and overlap, sent explicitly so a
# file reports the sizes it was really cut with. The embedder reads at most 256 tokens with its two
# special tokens, so a static chunk may not pass 254 (OpenAI allows 4096 for its own embedders).
AUTO_CHUNK_TOKENS, AUTO_OVERLAP_TOKENS = 200, 40
MIN_CHUNK_TOKENS, MAX_CHUNK_TOKENS = 16, 254
# Keys ragway writes into every chunk's metadata beside the attributes.
RESERVED_KEYS = ("file_id", "filename")
MAX_ATTRIBUTES = 16
MAX_ATTRIBUTE_CHARS = 512
STATUSES = ("in_progress", "completed", "failed", "cancelled")


# -- validation ------------------------------------------------------------------------------------


def chunking_of(strategy: ChunkingStrategy | None, default: dict[str, Any] | None = None) -> dict[str, Any]:
    """A chunking strategy as OpenAI reports it applied: always `static` with real sizes."""
    if strategy is None:
        if default is not None:
            return default
        return {
            "type": "static",
            "static": {
                "max_chunk_size_tokens": AUTO_CHUNK_TOKENS,
                "chunk_overlap_tokens": AUTO_OVERLAP_TOKENS,
            },
        }
    if strategy.type == "auto":
        if strategy.static is not None:
            raise InvalidArgument("chunking_strategy: 'auto' takes no 'static'", field="chunking_strategy")
        return chunking_of(None)
    if strategy.static is None:
        raise InvalidArgument(
            "chunking_strategy: 'static' needs a 'static' object", field="chunking_strategy"
        )
    size, overlap = strategy.static.max_chunk_size_tokens, strategy.static.chunk_overlap_tokens
    if not MIN_CHUNK_TOKENS <= size <= MAX_CHUNK_TOKENS:
        raise InvalidArgument(
            f"chunking_strategy.static.max_chunk_size_tokens must be {MIN_CHUNK_TOKENS}-{MAX_CHUNK_TOKENS} "
            "(the embedder reads at most 254 tokens of a chunk)",
            field="chunking_strategy.static.max_chunk_size_tokens",
        )
    if not 0 <= overlap <= size // 2:
        raise InvalidArgument(
            "chunking_strategy.static.chunk_overlap_tokens must be 0 to half of max_chunk_size_tokens",
            field="chunking_strategy.static.chunk_overlap_tokens",
        )
    # retrieval.proto's ChunkingOptions reads 0 as "the service default" (40), so no overlap is
    # sent, applied and reported as the smallest it can express: 1 token.
    overlap = max(overlap, 1)
    return {"type": "static", "static": {"max_chunk_size_tokens": size, "chunk_overlap_tokens": overlap}}


def check_attributes(attributes: Attributes | None) -> dict[str, Any]:
    attributes = attributes or {}
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidArgument(f"attributes: at most {MAX_ATTRIBUTES} keys", field="attributes")
    for key, value in attributes.items():
        if not METADATA_KEY.match(key):
            raise InvalidArgument(
                f"attributes: key {key!r} must be an identifier (letters, digits, '_'; up to 64)",
                field="attributes",
            )
        if key in RESERVED_KEYS:
            raise InvalidArgument(f"attributes: {key!r} is set by ragway itself", field="attributes")
        if isinstance(value, str) and len(value) > MAX_ATTRIBUTE_CHARS:
            raise InvalidArgument(
                f"attributes: {key!r} is over {MAX_ATTRIBUTE_CHARS} characters", field="attributes"
            )
    return dict(attributes)


# -- vector stores ---------------------------------------------------------------------------------


async def get_store(
    session: AsyncSession, principal: Principal, store_id: str, *, write: bool = False
) -> Collection:
    """The caller's vector store (or a shared one, for reading); NotFound otherwise (rag.access,
    the one access check)."""
    return await access.get(session, principal, store_id, write=write, by_id=True)


_expiry = access.expiry


async def create_store(
    session: AsyncSession,
    retrieval: RetrievalClient,
    principal: Principal,
    *,
    name: str | None,
    metadata: dict[str, str] | None,
    expires_after: dict[str, Any] | None,
    chunking: ChunkingStrategy | None,
    shared: bool,
    index: IndexSettings = IndexSettings(),
) -> Collection:
    """A new vector store: a collection row and its retrieval-side collection (with `index`)."""
    if shared and not principal.is_admin:
        raise PermissionDenied("only admins may share a vector store")
    store_id = f"vs_{uuid.uuid4().hex}"
    applied = chunking_of(chunking)["static"]
    stamp = now()
    row = Collection(
        id=store_id,
        user_id=principal.user_id,
        name=store_id,
        store_name=f"{principal.user_id}__{store_id}",
        shared=shared,
        title=name or "",
        meta=metadata,
        expires_after=expires_after,
        last_active_at=stamp,
        created_at=stamp,
        chunk_tokens=applied["max_chunk_size_tokens"],
        overlap_tokens=applied["chunk_overlap_tokens"],
    )
    _expiry(row)
    await retrieval.create_collection(row.store_name, index)
    session.add(row)
    await session.flush()
    return row


def store_chunking(row: Collection) -> dict[str, Any] | None:
    if row.chunk_tokens is None or row.overlap_tokens is None:
        return None
    return {
        "type": "static",
        "static": {"max_chunk_size_tokens": row.chunk_tokens, "chunk_overlap_tokens": row.overlap_tokens},
    }


async def file_counts(session: AsyncSession, where: Any) -> tuple[FileCounts, int]:
    """Counts by status of the vector store files `where` selects, and their completed bytes."""
    rows = (
        await session.execute(
            select(IngestedFile.status, func.count(), func.coalesce(func.sum(IngestedFile.usage_bytes), 0))
            .where(where)
            .group_by(IngestedFile.status)
        )
    ).all()
    counts = FileCounts()
    usage = 0
    for status, count, used in rows:
        if status in STATUSES:
            setattr(counts, status, int(count))
        if status == "completed":
            usage = int(used)
    counts.total = sum(int(count) for _, count, _ in rows)
    return counts, usage


async def store_out(session: AsyncSession, row: Collection) -> VectorStoreObject:
    counts, usage = await file_counts(session, IngestedFile.collection_id == row.id)
    if row.expires_at is not None and row.expires_at < now():
        status = "expired"
    else:
        status = "in_progress" if counts.in_progress else "completed"
    return VectorStoreObject(
        id=row.id,
        created_at=row.created_at,
        name=row.title if row.title is not None else row.name,
        usage_bytes=usage,
        file_counts=counts,
        status=status,  # type: ignore[arg-type]
        expires_after=row.expires_after,
        expires_at=row.expires_at,
        last_active_at=row.last_active_at if row.last_active_at is not None else row.created_at,
        metadata=row.meta or {},
        shared=row.shared,
    )


async def list_stores(session: AsyncSession, principal: Principal) -> Sequence[Collection]:
    rows = await session.execute(
        select(Collection).where(access.readable(principal)).order_by(Collection.created_at, Collection.id)
    )
    return rows.scalars().all()


async def update_store(
    session: AsyncSession,
    row: Collection,
    fields: set[str],
    *,
    name: str | None,
    metadata: dict[str, str] | None,
    expires_after: dict[str, Any] | None,
) -> None:
    if "name" in fields and name is not None:
        row.title = name
    if "metadata" in fields:
        row.meta = metadata
    if "expires_after" in fields:
        row.expires_after = expires_after
        _expiry(row)
    await session.flush()


async def delete_store(session: AsyncSession, retrieval: RetrievalClient, row: Collection) -> None:
    """The store's retrieval collection first (every chunk), then its rows (files, batches cascade)."""
    try:
        await retrieval.delete_collection(row.store_name)
    except NotFound:
        pass
    await session.delete(row)
    await session.commit()


# -- vector store files ----------------------------------------------------------------------------


async def owned_file(session: AsyncSession, principal: Principal, file_id: str) -> StoredFile:
    row = await session.get(StoredFile, file_id)
    if row is None or row.user_id != principal.user_id:
        raise NotFound(f"no file {file_id!r}", field="file_id")
    return row


async def attach(
    session: AsyncSession,
    principal: Principal,
    store: Collection,
    file: StoredFile,
    *,
    attributes: Attributes | None,
    chunking: ChunkingStrategy | None,
    batch_id: str | None = None,
) -> IngestedFile:
    """Record that `file` goes into `store` (in_progress); the ingestion worker does the rest.
    Attaching a file again re-ingests it with the new attributes and chunking."""
    row = (
        await session.execute(
            select(IngestedFile).where(
                IngestedFile.collection_id == store.id, IngestedFile.document_id == file.id
            )
        )
    ).scalar_one_or_none()
    if row is None:
        row = IngestedFile(collection_id=store.id, document_id=file.id, chunks=0, created_at=now())
        session.add(row)
    row.file_id = file.id
    row.filename = file.filename
    row.sha256 = file.sha256
    row.attributes = check_attributes(attributes)
    row.chunking = chunking_of(chunking, store_chunking(store))
    row.status = "in_progress"
    row.last_error = None
    row.usage_bytes = 0
    row.attempts = 0
    row.batch_id = batch_id
    row.user_id, row.key_id = principal.user_id, principal.key_id
    row.updated_at = now()
    await session.flush()
    return row


async def store_file(session: AsyncSession, store: Collection, file_id: str) -> IngestedFile:
    row = (
        await session.execute(
            select(IngestedFile).where(
                IngestedFile.collection_id == store.id, IngestedFile.document_id == file_id
            )
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no file {file_id!r} in vector store {store.id!r}")
    return row


def store_file_out(store: Collection, row: IngestedFile) -> VectorStoreFileObject:
    return VectorStoreFileObject(
        id=row.document_id,
        created_at=row.created_at,
        usage_bytes=row.usage_bytes,
        vector_store_id=store.id,
        status=row.status,  # type: ignore[arg-type]
        last_error=row.last_error,  # type: ignore[arg-type]
        attributes=row.attributes if row.attributes is not None else {},
        chunking_strategy=row.chunking or {"type": "other"},
    )


async def list_store_files(
    session: AsyncSession,
    store: Collection,
    *,
    status: str | None,
    batch_id: str | None,
    limit: int,
    order: str,
    after: str | None,
    before: str | None,
) -> tuple[Sequence[IngestedFile], bool]:
    query = select(IngestedFile).where(IngestedFile.collection_id == store.id)
    if status is not None:
        if status not in STATUSES:
            raise InvalidArgument(f"filter must be one of {', '.join(STATUSES)}", field="filter")
        query = query.where(IngestedFile.status == status)
    if batch_id is not None:
        query = query.where(IngestedFile.batch_id == batch_id)
    ascending = order == "asc"
    for cursor, later in ((after, True), (before, False)):
        if cursor:
            anchor = (await store_file(session, store, cursor)).id
            query = query.where(IngestedFile.id > anchor if later == ascending else IngestedFile.id < anchor)
    query = query.order_by(IngestedFile.id.asc() if ascending else IngestedFile.id.desc()).limit(limit + 1)
    rows = (await session.execute(query)).scalars().all()
    return rows[:limit], len(rows) > limit


async def update_attributes(session: AsyncSession, row: IngestedFile, attributes: Attributes | None) -> None:
    """New attributes: the file is written again (chunk metadata is what filters read)."""
    row.attributes = check_attributes(attributes)
    if row.file_id is None:
        raise FailedPrecondition(
            f"{row.document_id!r} was written through /v1/collections; "
            "replace it there to change its metadata"
        )
    row.status, row.last_error, row.attempts, row.updated_at = "in_progress", None, 0, now()
    await session.flush()


async def detach(
    session: AsyncSession, retrieval: RetrievalClient, store: Collection, row: IngestedFile
) -> None:
    """Remove a file from a store: every chunk, then the row (the file itself stays)."""
    await retrieval.delete(store.store_name, [row.document_id])
    await session.delete(row)
    await session.commit()


async def content(retrieval: RetrievalClient, store: Collection, row: IngestedFile) -> list[ContentPart]:
    if row.status != "completed":
        return []
    try:
        doc = await retrieval.get_document(store.store_name, row.document_id)
    except NotFound:
        return []
    return [ContentPart(text=text) for _, text in doc.chunks]


# -- file batches ----------------------------------------------------------------------------------


async def create_batch(
    session: AsyncSession,
    principal: Principal,
    store: Collection,
    entries: list[tuple[str, Attributes | None, ChunkingStrategy | None]],
) -> FileBatch:
    if not entries:
        raise InvalidArgument("a batch needs file_ids or files", field="file_ids")
    if len({e[0] for e in entries}) != len(entries):
        raise InvalidArgument("a file appears twice in the batch", field="file_ids")
    files = [await owned_file(session, principal, file_id) for file_id, _, _ in entries]
    batch = FileBatch(collection_id=store.id, created_at=now())
    session.add(batch)
    await session.flush()
    for file, (_, attributes, chunking) in zip(files, entries, strict=True):
        await attach(
            session, principal, store, file, attributes=attributes, chunking=chunking, batch_id=batch.id
        )
    return batch


async def get_batch(session: AsyncSession, store: Collection, batch_id: str) -> FileBatch:
    batch = await session.get(FileBatch, batch_id)
    if batch is None or batch.collection_id != store.id:
        raise NotFound(f"no file batch {batch_id!r} in vector store {store.id!r}")
    return batch


async def batch_out(session: AsyncSession, batch: FileBatch) -> FileBatchObject:
    counts, _ = await file_counts(session, IngestedFile.batch_id == batch.id)
    if batch.cancelled:
        status = "cancelled"
    elif counts.in_progress:
        status = "in_progress"
    elif counts.total and counts.failed == counts.total:
        status = "failed"
    else:
        status = "completed"
    return FileBatchObject(
        id=batch.id,
        created_at=batch.created_at,
        vector_store_id=batch.collection_id,
        status=status,  # type: ignore[arg-type]
        file_counts=counts,
    )


async def cancel_batch(session: AsyncSession, batch: FileBatch) -> None:
    """Files of the batch not yet written stop (cancelled); the worker drops any it was writing."""
    batch.cancelled = True
    await session.execute(
        update(IngestedFile)
        .where(IngestedFile.batch_id == batch.id, IngestedFile.status == "in_progress")
        .values(status="cancelled", updated_at=now())
    )
    await session.commit()


# -- search ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchOptions:
    """One vector store search, as OpenAI's search route and file_search tool describe it."""

    query: str | list[str]
    filters: dict[str, Any] | None = None
    max_num_results: int = 10
    ranker: str = "auto"  # see rag.search.resolve_ranker; the retrieval service reranks
    score_threshold: float | None = None  # cosine unless `mode` is given
    rewrite_query: bool = False
    # ragway: dense / sparse / hybrid (None: the service's default), fusion, index search params.
    mode: Literal["dense", "sparse", "hybrid"] | None = None
    hybrid: HybridOptions | None = None
    params: SearchParams | None = None


def search_result(chunk: RetrievedChunk) -> SearchResult:
    """A chunk as OpenAI reports a search hit: its file, attributes and text."""
    meta = chunk.metadata
    attributes = {k: v for k, v in meta.items() if k not in RESERVED_KEYS}
    return SearchResult(
        file_id=str(meta.get("file_id") or chunk.document_id),
        filename=str(meta.get("filename") or chunk.document_id),
        score=round(chunk.score, 6),
        attributes=attributes,
        content=[ContentPart(text=chunk.text)],
    )


async def find_chunks(
    session: AsyncSession,
    retrieval: RetrievalClient,
    principal: Principal,
    store_ids: Sequence[str],
    options: SearchOptions,
    *,
    settings: GatewaySettings,
    limiter: Limiter,
    generation: GenerationService | None = None,
) -> tuple[list[str], list[RetrievedChunk]]:
    """Search vector stores the caller may read (rag.search, the one search path): the queries
    searched and the best `max_num_results` chunks over all of them, the query embedding tokens
    billed like /v1/embeddings. The file_search tool grounds answers in the chunks themselves;
    the search route pages them as OpenAI's results."""
    request = Search(
        stores=store_ids,
        queries=[options.query] if isinstance(options.query, str) else list(options.query),
        top_k=options.max_num_results,
        # The LLM reranker takes the settings' candidate count and budget: OpenAI's
        # ranking_options has no field for either.
        tuning=SearchTuning(mode=options.mode, hybrid=options.hybrid, params=options.params),
        filters=options.filters,
        min_score=options.score_threshold,
        ranker=options.ranker,
        by_id=True,
        billed_as="vector_stores.search",
        rerank_endpoint="vector_stores.rerank",
    )

    async def standalone(queries: list[str]) -> list[str]:
        if generation is None:
            raise InvalidArgument("rewrite_query is not available here", field="rewrite_query")
        try:
            route = await generation.models.resolve(principal, None)
        except NotFound:
            raise InvalidArgument(
                "rewrite_query needs a model this key may use, and it may use none", field="rewrite_query"
            ) from None
        return [await rewrite_query(generation, principal, route, [q]) for q in queries]

    return await run_search(
        session,
        retrieval,
        principal,
        request,
        settings=settings,
        limiter=limiter,
        generation=generation,
        rewrite=standalone if options.rewrite_query else None,
    )
