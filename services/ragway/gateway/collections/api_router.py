"""/v1/collections — a user's RAG collections, their documents, and search."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from ragway.core.errors import InvalidArgument
from ragway.gateway.accounts import metering
from ragway.gateway.catalog.embedding_models import resolve_embedding_model
from ragway.gateway.chat_completion.protocol import Citation
from ragway.gateway.clients.retrieval import IndexSettings
from ragway.gateway.collections import documents
from ragway.gateway.collections.protocol import (
    ChunkOut,
    CollectionCreate,
    CollectionList,
    CollectionOut,
    DocumentBatch,
    DocumentOut,
    DocumentReplace,
    DocumentSummaryList,
    DocumentSummaryOut,
    DocumentWritten,
    DocumentWrittenList,
    SearchIn,
    SearchOut,
)
from ragway.gateway.core.deps import (
    CurrentPrincipal,
    GenerationDep,
    LimiterDep,
    RetrievalDep,
    SessionDep,
    SettingsDep,
)
from ragway.gateway.core.errors import PayloadTooLarge, UnsupportedMediaType
from ragway.gateway.core.json_route import StrictJsonRoute
from ragway.gateway.core.tables import Collection
from ragway.gateway.core.wire import Deleted
from ragway.gateway.generation.grounding import Sources
from ragway.gateway.rag import access, filters
from ragway.gateway.rag.protocol import IndexOptions
from ragway.gateway.rag.search import Search, run_search

router = APIRouter(prefix="/v1/collections", tags=["rag"], route_class=StrictJsonRoute)


async def _out(retrieval: RetrievalDep, row: Collection, user_id: str) -> CollectionOut:
    info = await retrieval.describe(row.store_name)
    return CollectionOut(
        name=row.name,
        shared=row.shared,
        owned=row.user_id == user_id,
        document_count=info.document_count,
        vector_count=info.vector_count,
        created_at=row.created_at,
        index=IndexOptions.of(info.index),
        hybrid=bool(info.sparse_encoder),
        embedding_model=info.embedder,
    )


@router.post("", response_model=CollectionOut, status_code=201)
async def create_collection(
    body: CollectionCreate, principal: CurrentPrincipal, session: SessionDep, retrieval: RetrievalDep
) -> CollectionOut:
    """Create a collection (admins may mark it shared), with optional index parameters and
    embedding model."""
    embedder = (
        await resolve_embedding_model(retrieval, body.embedding_model) if body.embedding_model else None
    )
    row = await access.create(session, principal, body.name, body.shared)
    await retrieval.create_collection(
        row.store_name,
        body.index.settings() if body.index else IndexSettings(),
        embedder.name if embedder else "",
    )
    await session.commit()
    return await _out(retrieval, row, principal.user_id)


@router.get("", response_model=CollectionList)
async def list_collections(
    principal: CurrentPrincipal, session: SessionDep, retrieval: RetrievalDep
) -> CollectionList:
    """The caller's collections and shared ones, with document and vector counts."""
    rows = await access.visible(session, principal)
    return CollectionList(
        data=list(await asyncio.gather(*(_out(retrieval, r, principal.user_id) for r in rows)))
    )


@router.get("/{name}", response_model=CollectionOut)
async def get_collection(
    name: str, principal: CurrentPrincipal, session: SessionDep, retrieval: RetrievalDep
) -> CollectionOut:
    """One collection."""
    return await _out(retrieval, await access.get(session, principal, name), principal.user_id)


@router.delete("/{name}", response_model=Deleted)
async def delete_collection(
    name: str, principal: CurrentPrincipal, session: SessionDep, retrieval: RetrievalDep
) -> Deleted:
    """Delete a collection and every vector in it."""
    row = await access.get(session, principal, name, write=True)
    await retrieval.delete_collection(row.store_name)
    await session.delete(row)
    await session.commit()
    return Deleted(id=name, object="collection.deleted")


async def _uploads_from_form(request: Request, settings: SettingsDep) -> list[documents.Upload]:
    form = await request.form(max_files=settings.max_upload_files + 1)
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    if not files:
        raise UnsupportedMediaType("send documents as JSON {documents: [...]} or as multipart 'files' fields")
    if len(files) > settings.max_upload_files:
        raise PayloadTooLarge(f"at most {settings.max_upload_files} files per upload")
    uploads = []
    for file in files:
        name = file.filename or "upload.txt"
        content_type = documents.content_type_for(name)
        data = await file.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise PayloadTooLarge(f"{name!r} is larger than the limit of {settings.max_upload_bytes} bytes")
        uploads.append(
            documents.Upload(
                id=documents.check_document_id(name),
                content=data,
                content_type=content_type,
                metadata={"filename": name},
                filename=name,
            )
        )
    return uploads


@router.post(
    "/{name}/documents",
    response_model=DocumentWrittenList,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": DocumentBatch.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                        },
                    }
                },
            }
        }
    },
)
async def add_documents(
    name: str,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    retrieval: RetrievalDep,
    settings: SettingsDep,
    limiter: LimiterDep,
) -> DocumentWrittenList:
    """Add or replace documents: JSON `{documents: [{id?, text, metadata}]}` or multipart `files`
    (.txt .md .html .pdf). A document whose content did not change is not re-embedded (nor billed)."""
    row = await access.get(session, principal, name, write=True)
    await metering.admit(limiter, principal)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        uploads = await _uploads_from_form(request, settings)
    elif content_type.startswith("application/json"):
        try:
            batch = DocumentBatch.model_validate_json(await request.body())
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(p) for p in first["loc"]) or None
            raise InvalidArgument(f"{param}: {first['msg']}" if param else first["msg"], field=param) from exc
        uploads = [
            documents.Upload(
                id=documents.check_document_id(d.id) if d.id else documents.new_document_id(),
                content=d.text,
                content_type=d.content_type,
                metadata=d.metadata,
            )
            for d in batch.documents
        ]
    else:
        raise UnsupportedMediaType("send application/json or multipart/form-data")
    written = await _write(session, retrieval, settings, limiter, principal, row, uploads)
    return DocumentWrittenList(data=[DocumentWritten(**w) for w in written])


async def _write(
    session: SessionDep,
    retrieval: RetrievalDep,
    settings: SettingsDep,
    limiter: LimiterDep,
    principal: CurrentPrincipal,
    row: Collection,
    uploads: list[documents.Upload],
) -> list[dict[str, Any]]:
    """Write `uploads`, their embedding billed under the embedder the collection was built with."""
    embedder = (await retrieval.describe(row.store_name)).embedder or metering.BUNDLED_EMBEDDER
    return await documents.write(
        session,
        retrieval,
        row,
        uploads,
        principal=principal,
        limiter=limiter,
        model=embedder,
        price=settings.price(embedder),
    )


@router.get("/{name}/documents", response_model=DocumentSummaryList)
async def list_documents(
    name: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    retrieval: RetrievalDep,
    limit: int = Query(100, ge=1, le=1000),
    after: str | None = Query(None, max_length=256),
) -> DocumentSummaryList:
    """Documents of a collection with their chunk counts, by id."""
    row = await access.get(session, principal, name)
    page = await retrieval.list_documents(row.store_name, limit, after or "")
    data = [DocumentSummaryOut(id=d.id, chunks=d.chunks, metadata=d.metadata) for d in page.documents]
    return DocumentSummaryList(
        data=data, has_more=bool(page.next_after), last_id=data[-1].id if data else None
    )


@router.get("/{name}/documents/{document_id:path}", response_model=DocumentOut)
async def get_document(
    name: str, document_id: str, principal: CurrentPrincipal, session: SessionDep, retrieval: RetrievalDep
) -> DocumentOut:
    """One document's chunks, in order."""
    row = await access.get(session, principal, name)
    doc = await retrieval.get_document(row.store_name, document_id)
    return DocumentOut(
        id=doc.id, metadata=doc.metadata, chunks=[ChunkOut(index=i, text=t) for i, t in doc.chunks]
    )


@router.put("/{name}/documents/{document_id:path}", response_model=DocumentWritten)
async def replace_document(
    name: str,
    document_id: str,
    body: DocumentReplace,
    principal: CurrentPrincipal,
    session: SessionDep,
    retrieval: RetrievalDep,
    settings: SettingsDep,
    limiter: LimiterDep,
) -> DocumentWritten:
    """Replace a document whole: none of its old chunks remain."""
    row = await access.get(session, principal, name, write=True)
    await metering.admit(limiter, principal)
    upload = documents.Upload(
        id=documents.check_document_id(document_id),
        content=body.text,
        content_type=body.content_type,
        metadata=body.metadata,
    )
    return DocumentWritten(
        **(await _write(session, retrieval, settings, limiter, principal, row, [upload]))[0]
    )


@router.delete("/{name}/documents/{document_id:path}", response_model=Deleted)
async def delete_document(
    name: str, document_id: str, principal: CurrentPrincipal, session: SessionDep, retrieval: RetrievalDep
) -> Deleted:
    """Delete a document and every one of its chunks."""
    row = await access.get(session, principal, name, write=True)
    await documents.remove(session, retrieval, row, document_id)
    return Deleted(id=document_id, object="document.deleted")


@router.post("/{name}/search", response_model=SearchOut)
async def search_collection(
    name: str,
    body: SearchIn,
    principal: CurrentPrincipal,
    session: SessionDep,
    retrieval: RetrievalDep,
    generation: GenerationDep,
    settings: SettingsDep,
    limiter: LimiterDep,
) -> SearchOut:
    """Best chunks for a query (hybrid by default), with optional metadata filter, minimum score,
    mode, fusion, reranker (the retrieval service's, or "llm": the served model) and index search
    parameters."""
    await metering.admit(limiter, principal)
    request = Search(
        stores=[name],
        queries=[body.query],
        top_k=body.top_k,
        tuning=body,
        filters=filters.from_collection_filter(body.filter),
        min_score=body.min_score,
        ranker=body.ranking_options.ranker if body.ranking_options else "auto",
        embedding_model=body.embedding_model,
        billed_as="collections.search",
        filter_field="filter",
    )
    _, chunks = await run_search(
        session, retrieval, principal, request, settings=settings, limiter=limiter, generation=generation
    )
    return SearchOut(data=[Citation(**c) for c in Sources(tuple(chunks)).citations()])
