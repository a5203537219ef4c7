"""Documents in a user's collection: upload, replace, list, read, delete — through the retrieval
service, with a content hash per document so re-sending an unchanged file writes nothing.
A write's embedding tokens are metered (`metering`) like /v1/embeddings; an unchanged document
costs nothing."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from google.protobuf import json_format
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ragway.core.content_types import CONTENT_TYPES
from ragway.core.errors import InvalidArgument
from ragway.core.limits import MAX_DOCUMENT_ID
from ragway.gateway.accounts import metering
from ragway.gateway.accounts.auth import Principal
from ragway.gateway.accounts.limiter import Limiter
from ragway.gateway.catalog.model_table import Price
from ragway.gateway.clients.retrieval import DocumentUpload, RetrievalClient, metadata_struct
from ragway.gateway.core.errors import UnsupportedMediaType
from ragway.gateway.core.tables import Collection, IngestedFile, now
from ragway.gateway.rag.tokens import embedding_tokens

# Worst case of embedding tokens per byte of a document: WordPiece makes at most one token per
# byte, and overlapping chunks read at most half of each chunk twice (overlap <= half the chunk).
WORST_TOKENS_PER_BYTE = 2


def worst_tokens(size: int) -> int:
    """The most embedding tokens a document of `size` bytes may cost (what is reserved for it)."""
    return WORST_TOKENS_PER_BYTE * size + 16


@dataclass(frozen=True)
class Upload(DocumentUpload):
    """One document to write, plus the file name it came from."""

    filename: str | None = None

    @property
    def sha256(self) -> str:
        raw = _raw(self.content)
        meta = json_format.MessageToJson(metadata_struct(self.metadata), sort_keys=True)
        return hashlib.sha256(raw + b"\0" + self.content_type.encode() + b"\0" + meta.encode()).hexdigest()


def _raw(content: str | bytes) -> bytes:
    return content.encode() if isinstance(content, str) else content


def content_type_for(filename: str) -> str:
    suffix = PurePath(filename).suffix.lower()
    if suffix not in CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"{filename!r}: unsupported file type; upload one of {', '.join(sorted(CONTENT_TYPES))}"
        )
    return CONTENT_TYPES[suffix]


def check_document_id(document_id: str) -> str:
    if not document_id or len(document_id) > MAX_DOCUMENT_ID or any(ord(c) < 32 for c in document_id):
        raise InvalidArgument(f"document ids are 1-{MAX_DOCUMENT_ID} printable characters", field="id")
    return document_id


def new_document_id() -> str:
    return f"doc_{uuid.uuid4().hex}"


async def written_tokens(retrieval: RetrievalClient, store_name: str, document_id: str) -> int:
    """The embedding tokens a written document cost: its stored chunks counted with the bundled
    embedder's tokenizer (`rag.tokens`; the retrieval service reports no count for writes)."""
    doc = await retrieval.get_document(store_name, document_id)
    return embedding_tokens().count([text for _, text in doc.chunks])


async def write(
    session: AsyncSession,
    retrieval: RetrievalClient,
    collection: Collection,
    uploads: list[Upload],
    *,
    principal: Principal,
    limiter: Limiter,
    model: str,
    price: Price,
) -> list[dict[str, Any]]:
    """Write documents whose content changed, their embedding tokens billed to `principal` at
    `model`'s `price`; report created / updated / unchanged per document."""
    known = {
        row.document_id: row
        for row in (
            await session.execute(
                select(IngestedFile).where(
                    IngestedFile.collection_id == collection.id,
                    IngestedFile.document_id.in_([u.id for u in uploads]),
                )
            )
        ).scalars()
    }
    results: dict[str, dict[str, Any]] = {}
    changed = []
    for upload in uploads:
        row = known.get(upload.id)
        if row is not None and row.sha256 == upload.sha256:
            results[upload.id] = {
                "id": upload.id,
                "filename": upload.filename,
                "chunks": row.chunks,
                "status": "unchanged",
            }
        else:
            changed.append(upload)
    if not changed:
        return [results[u.id] for u in uploads]
    async with metering.metered(
        session,
        limiter,
        principal,
        request_id=f"doc-{uuid.uuid4().hex}",
        model=model,
        endpoint="collections.documents",
        price=price,
        prompt_tokens=sum(worst_tokens(len(_raw(u.content))) for u in changed),
        window_hold=True,
    ) as outcome:
        written = await retrieval.upsert(collection.store_name, changed)
        tokens = 0
        for upload in changed:
            if written.get(upload.id):
                tokens += await written_tokens(retrieval, collection.store_name, upload.id)
        outcome.prompt_tokens, outcome.status = tokens, "ok"
        # Staged once counted, and committed with the bill as the block ends.
        for upload in changed:
            row = known.get(upload.id)
            if row is None:
                session.add(
                    IngestedFile(
                        collection_id=collection.id,
                        document_id=upload.id,
                        filename=upload.filename,
                        sha256=upload.sha256,
                        chunks=written[upload.id],
                    )
                )
            else:
                row.sha256, row.chunks, row.filename, row.updated_at = (
                    upload.sha256,
                    written[upload.id],
                    upload.filename,
                    now(),
                )
            results[upload.id] = {
                "id": upload.id,
                "filename": upload.filename,
                "chunks": written[upload.id],
                "status": "updated" if row is not None else "created",
            }
    return [results[u.id] for u in uploads]


async def remove(
    session: AsyncSession, retrieval: RetrievalClient, collection: Collection, document_id: str
) -> int:
    """Delete a document's every chunk; NotFound when it has none."""
    await retrieval.get_document(collection.store_name, document_id)  # NotFound when it has no chunks
    deleted = await retrieval.delete(collection.store_name, [document_id])
    await session.execute(
        delete(IngestedFile).where(
            IngestedFile.collection_id == collection.id, IngestedFile.document_id == document_id
        )
    )
    await session.commit()
    return deleted
