"""/v1/vector_stores — OpenAI's Vector Stores API over ragway's collections.

Stores, their files, file batches and search. A store is a collection (`/v1/collections` shows the
same row); ingestion runs in the background (`ingestion.py`), so attaching answers at once with
`in_progress` and an `openai-poll-after-ms` header that the SDK's poll helpers follow.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Response

from ragway.core.errors import InvalidArgument
from ragway.gateway.accounts import metering
from ragway.gateway.clients.retrieval import IndexSettings
from ragway.gateway.core.deps import (
    CurrentPrincipal,
    GenerationDep,
    IngestionDep,
    LimiterDep,
    RetrievalDep,
    SessionDep,
    SettingsDep,
)
from ragway.gateway.core.json_route import StrictJsonRoute
from ragway.gateway.vector_stores import serving as vs
from ragway.gateway.vector_stores.protocol import (
    FileBatchCreate,
    FileBatchObject,
    SearchPage,
    VectorStoreCreate,
    VectorStoreDeleted,
    VectorStoreFileContent,
    VectorStoreFileCreate,
    VectorStoreFileDeleted,
    VectorStoreFileList,
    VectorStoreFileObject,
    VectorStoreFileUpdate,
    VectorStoreList,
    VectorStoreObject,
    VectorStoreSearch,
    VectorStoreUpdate,
)

router = APIRouter(prefix="/v1/vector_stores", tags=["vector stores"], route_class=StrictJsonRoute)

POLL_AFTER_MS = "250"
Order = Literal["asc", "desc"]


def _poll_hint(response: Response, status: str) -> None:
    if status == "in_progress":
        response.headers["openai-poll-after-ms"] = POLL_AFTER_MS


@router.post("", response_model=VectorStoreObject)
async def create_vector_store(
    body: VectorStoreCreate,
    principal: CurrentPrincipal,
    session: SessionDep,
    retrieval: RetrievalDep,
    ingestion: IngestionDep,
    limiter: LimiterDep,
) -> VectorStoreObject:
    """Create a vector store, optionally with files to ingest (their embedding is billed)."""
    if body.file_ids:
        await metering.admit(limiter, principal)
    files = [await vs.owned_file(session, principal, f) for f in dict.fromkeys(body.file_ids)]
    row = await vs.create_store(
        session,
        retrieval,
        principal,
        name=body.name,
        metadata=body.metadata,
        expires_after=body.expires_after.model_dump() if body.expires_after else None,
        chunking=body.chunking_strategy,
        shared=body.shared,
        index=body.index.settings() if body.index else IndexSettings(),
    )
    for file in files:
        await vs.attach(session, principal, row, file, attributes=None, chunking=None)
    await session.commit()
    ingestion.wake()
    return await vs.store_out(session, row)


@router.get("", response_model=VectorStoreList)
async def list_vector_stores(
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: int = Query(20, ge=1, le=100),
    order: Order = "desc",
    after: str | None = Query(None, max_length=64),
    before: str | None = Query(None, max_length=64),
) -> VectorStoreList:
    """The caller's vector stores and shared ones (collections made before included)."""
    rows = list(await vs.list_stores(session, principal))
    if order == "desc":
        rows.reverse()
    if after:
        ids = [r.id for r in rows]
        rows = rows[ids.index(after) + 1 :] if after in ids else []
    if before:
        ids = [r.id for r in rows]
        rows = rows[: ids.index(before)] if before in ids else rows
    page = rows[:limit]
    data = [await vs.store_out(session, r) for r in page]
    return VectorStoreList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=len(rows) > limit,
    )


@router.get("/{vector_store_id}", response_model=VectorStoreObject)
async def get_vector_store(
    vector_store_id: str, response: Response, principal: CurrentPrincipal, session: SessionDep
) -> VectorStoreObject:
    """One vector store with its file counts."""
    out = await vs.store_out(session, await vs.get_store(session, principal, vector_store_id))
    _poll_hint(response, out.status)
    return out


@router.post("/{vector_store_id}", response_model=VectorStoreObject)
async def update_vector_store(
    vector_store_id: str, body: VectorStoreUpdate, principal: CurrentPrincipal, session: SessionDep
) -> VectorStoreObject:
    """Rename, change metadata or expiry."""
    row = await vs.get_store(session, principal, vector_store_id, write=True)
    await vs.update_store(
        session,
        row,
        body.model_fields_set,
        name=body.name,
        metadata=body.metadata,
        expires_after=body.expires_after.model_dump() if body.expires_after else None,
    )
    await session.commit()
    return await vs.store_out(session, row)


@router.delete("/{vector_store_id}", response_model=VectorStoreDeleted)
async def delete_vector_store(
    vector_store_id: str, principal: CurrentPrincipal, session: SessionDep, retrieval: RetrievalDep
) -> VectorStoreDeleted:
    """Delete a vector store and every chunk in it (the files themselves stay)."""
    row = await vs.get_store(session, principal, vector_store_id, write=True)
    await vs.delete_store(session, retrieval, row)
    return VectorStoreDeleted(id=vector_store_id)


@router.post("/{vector_store_id}/search", response_model=SearchPage)
async def search_vector_store(
    vector_store_id: str,
    body: VectorStoreSearch,
    principal: CurrentPrincipal,
    session: SessionDep,
    retrieval: RetrievalDep,
    settings: SettingsDep,
    limiter: LimiterDep,
    generation: GenerationDep,
) -> SearchPage:
    """Nearest chunks to a query, with attribute filters; the query's embedding is billed."""
    await metering.admit(limiter, principal)
    ranking = body.ranking_options
    options = vs.SearchOptions(
        query=body.query,
        filters=body.filters,
        max_num_results=body.max_num_results,
        ranker=ranking.ranker if ranking else "auto",
        score_threshold=ranking.score_threshold if ranking else None,
        rewrite_query=body.rewrite_query,
        mode=body.mode,
        hybrid=body.hybrid,
        params=body.params,
    )
    queries, chunks = await vs.find_chunks(
        session,
        retrieval,
        principal,
        [vector_store_id],
        options,
        settings=settings,
        limiter=limiter,
        generation=generation,
    )
    return SearchPage(search_query=queries, data=[vs.search_result(c) for c in chunks])


# -- files of a store ------------------------------------------------------------------------------


@router.post("/{vector_store_id}/files", response_model=VectorStoreFileObject)
async def create_vector_store_file(
    vector_store_id: str,
    body: VectorStoreFileCreate,
    response: Response,
    principal: CurrentPrincipal,
    session: SessionDep,
    ingestion: IngestionDep,
    limiter: LimiterDep,
) -> VectorStoreFileObject:
    """Attach one of the caller's files (with attributes); it is ingested (and its embedding
    billed) in the background."""
    await metering.admit(limiter, principal)
    store = await vs.get_store(session, principal, vector_store_id, write=True)
    file = await vs.owned_file(session, principal, body.file_id)
    row = await vs.attach(
        session, principal, store, file, attributes=body.attributes, chunking=body.chunking_strategy
    )
    await session.commit()
    ingestion.wake()
    _poll_hint(response, row.status)
    return vs.store_file_out(store, row)


@router.get("/{vector_store_id}/files", response_model=VectorStoreFileList)
async def list_vector_store_files(
    vector_store_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: int = Query(20, ge=1, le=100),
    order: Order = "desc",
    after: str | None = Query(None, max_length=256),
    before: str | None = Query(None, max_length=256),
    filter: str | None = Query(None, max_length=16),
) -> VectorStoreFileList:
    """The store's files, optionally only those with one status."""
    store = await vs.get_store(session, principal, vector_store_id)
    rows, more = await vs.list_store_files(
        session, store, status=filter, batch_id=None, limit=limit, order=order, after=after, before=before
    )
    data = [vs.store_file_out(store, r) for r in rows]
    return VectorStoreFileList(
        data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None, has_more=more
    )


@router.get("/{vector_store_id}/files/{file_id}", response_model=VectorStoreFileObject)
async def get_vector_store_file(
    vector_store_id: str, file_id: str, response: Response, principal: CurrentPrincipal, session: SessionDep
) -> VectorStoreFileObject:
    """One file of the store, with its ingestion status."""
    store = await vs.get_store(session, principal, vector_store_id)
    row = await vs.store_file(session, store, file_id)
    _poll_hint(response, row.status)
    return vs.store_file_out(store, row)


@router.post("/{vector_store_id}/files/{file_id}", response_model=VectorStoreFileObject)
async def update_vector_store_file(
    vector_store_id: str,
    file_id: str,
    body: VectorStoreFileUpdate,
    principal: CurrentPrincipal,
    session: SessionDep,
    ingestion: IngestionDep,
    limiter: LimiterDep,
) -> VectorStoreFileObject:
    """New attributes; the file's chunks are rewritten (and billed) with them in the background."""
    await metering.admit(limiter, principal)
    store = await vs.get_store(session, principal, vector_store_id, write=True)
    row = await vs.store_file(session, store, file_id)
    await vs.update_attributes(session, row, body.attributes)
    await session.commit()
    ingestion.wake()
    return vs.store_file_out(store, row)


@router.delete("/{vector_store_id}/files/{file_id}", response_model=VectorStoreFileDeleted)
async def delete_vector_store_file(
    vector_store_id: str,
    file_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    retrieval: RetrievalDep,
) -> VectorStoreFileDeleted:
    """Remove a file from the store with every chunk (the file itself stays)."""
    store = await vs.get_store(session, principal, vector_store_id, write=True)
    await vs.detach(session, retrieval, store, await vs.store_file(session, store, file_id))
    return VectorStoreFileDeleted(id=file_id)


@router.get("/{vector_store_id}/files/{file_id}/content", response_model=VectorStoreFileContent)
async def get_vector_store_file_content(
    vector_store_id: str,
    file_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    retrieval: RetrievalDep,
) -> VectorStoreFileContent:
    """The file's text as stored: its chunks, in order."""
    store = await vs.get_store(session, principal, vector_store_id)
    row = await vs.store_file(session, store, file_id)
    return VectorStoreFileContent(data=await vs.content(retrieval, store, row))


# -- file batches ----------------------------------------------------------------------------------


@router.post("/{vector_store_id}/file_batches", response_model=FileBatchObject)
async def create_file_batch(
    vector_store_id: str,
    body: FileBatchCreate,
    response: Response,
    principal: CurrentPrincipal,
    session: SessionDep,
    ingestion: IngestionDep,
    limiter: LimiterDep,
) -> FileBatchObject:
    """Attach many files at once; `files` may give each its own attributes and chunking."""
    await metering.admit(limiter, principal)
    store = await vs.get_store(session, principal, vector_store_id, write=True)
    if body.file_ids and body.files:
        raise InvalidArgument("give file_ids or files, not both", field="files")
    entries = [(f, body.attributes, body.chunking_strategy) for f in body.file_ids or []] + [
        (
            f.file_id,
            f.attributes if f.attributes is not None else body.attributes,
            f.chunking_strategy or body.chunking_strategy,
        )
        for f in body.files or []
    ]
    batch = await vs.create_batch(session, principal, store, entries)
    await session.commit()
    ingestion.wake()
    out = await vs.batch_out(session, batch)
    _poll_hint(response, out.status)
    return out


@router.get("/{vector_store_id}/file_batches/{batch_id}", response_model=FileBatchObject)
async def get_file_batch(
    vector_store_id: str, batch_id: str, response: Response, principal: CurrentPrincipal, session: SessionDep
) -> FileBatchObject:
    """A batch's status and file counts."""
    store = await vs.get_store(session, principal, vector_store_id)
    out = await vs.batch_out(session, await vs.get_batch(session, store, batch_id))
    _poll_hint(response, out.status)
    return out


@router.post("/{vector_store_id}/file_batches/{batch_id}/cancel", response_model=FileBatchObject)
async def cancel_file_batch(
    vector_store_id: str, batch_id: str, principal: CurrentPrincipal, session: SessionDep
) -> FileBatchObject:
    """Stop the batch: files not yet written are cancelled."""
    store = await vs.get_store(session, principal, vector_store_id, write=True)
    batch = await vs.get_batch(session, store, batch_id)
    await vs.cancel_batch(session, batch)
    return await vs.batch_out(session, batch)


@router.get("/{vector_store_id}/file_batches/{batch_id}/files", response_model=VectorStoreFileList)
async def list_file_batch_files(
    vector_store_id: str,
    batch_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: int = Query(20, ge=1, le=100),
    order: Order = "desc",
    after: str | None = Query(None, max_length=256),
    before: str | None = Query(None, max_length=256),
    filter: str | None = Query(None, max_length=16),
) -> VectorStoreFileList:
    """The files of one batch."""
    store = await vs.get_store(session, principal, vector_store_id)
    batch = await vs.get_batch(session, store, batch_id)
    rows, more = await vs.list_store_files(
        session, store, status=filter, batch_id=batch.id, limit=limit, order=order, after=after, before=before
    )
    data = [vs.store_file_out(store, r) for r in rows]
    return VectorStoreFileList(
        data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None, has_more=more
    )
