"""The ingestion worker: writes vector store files to the retrieval service in the background.

Its only input is SQL: every `documents` row with `status = in_progress` is work. So a restarted
gateway resumes what a killed one was doing, and an API replica that recorded a file need not be
the one that ingests it. Each file is one retrieval document whose id is the file id and whose
metadata is its attributes plus `file_id` and `filename`; the retrieval service's versioned
upserts make a second write of the same file idempotent and never leave half a document
searchable, so re-running a file that a crash interrupted is always safe.

Files of one store and one payer go to the retrieval service together (`ingest_batch_files` per
upsert), so the embedder sees large batches. A file the retrieval service refuses fails alone
(`invalid_file` / `unsupported_file`); while the retrieval service is unreachable a file waits
with exponential backoff and fails (`server_error`) after `ingest_max_attempts` tries. When a row
was deleted or cancelled while its file was being written, the written chunks are removed again.
Embedding tokens are reserved before and settled after each write, like /v1/embeddings.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ragway.core.errors import DeadlineExceeded, InvalidArgument, NotFound, RagwayError, Unavailable
from ragway.gateway import billing
from ragway.gateway.auth import Principal
from ragway.gateway.billing import Outcome
from ragway.gateway.clients.retrieval import Chunking, DocumentUpload, RetrievalClient
from ragway.gateway.config import GatewaySettings
from ragway.gateway.errors import Overloaded, QuotaExceeded, UpstreamError
from ragway.gateway.files import FileStorage
from ragway.gateway.models import Collection, IngestedFile, now
from ragway.gateway.rag.documents import CONTENT_TYPES
from ragway.gateway.rag.tokens import embedding_tokens
from ragway.gateway.rag.vector_stores import EMBEDDING_MODEL

log = logging.getLogger(__name__)

# Plain-text formats OpenAI's file search takes that the retrieval service reads as text.
TEXT_SUFFIXES = (
    ".json .csv .tsv .py .js .ts .java .c .cc .cpp .h .hpp .cs .go .rs .rb .php .sh .tex .css .xml "
    ".yaml .yml .toml .ini .log .sql .rst"
).split()
TRANSIENT = (Unavailable, DeadlineExceeded, Overloaded, UpstreamError)
MAX_BACKOFF_SECONDS = 60
# Worst case of embedding tokens per byte of a file: WordPiece makes at most one token per byte,
# and overlapping chunks read at most half of each chunk twice (overlap <= half the chunk).
WORST_TOKENS_PER_BYTE = 2


def content_type(filename: str) -> str | None:
    suffix = PurePath(filename).suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    return "text/plain" if suffix in TEXT_SUFFIXES else None


def backoff(attempts: int) -> int:
    return 0 if attempts == 0 else min(MAX_BACKOFF_SECONDS, 2**attempts)


@dataclass
class Job:
    """One file being written: its row's id and what was sent for it."""

    row_id: int
    document_id: str
    upload: DocumentUpload
    bytes: int
    chunks: int = 0
    tokens: int = 0


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message[:1000]}


class IngestionWorker:
    """One asyncio task in the gateway process (started in the app lifespan)."""

    def __init__(
        self,
        settings: GatewaySettings,
        sessions: async_sessionmaker[AsyncSession],
        retrieval: RetrievalClient,
        storage: FileStorage,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.retrieval = retrieval
        self.storage = storage
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[int] = set()  # row ids a group in flight is writing

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ingestion-worker")

    def wake(self) -> None:
        """New work was recorded: look now instead of at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        # Up to `ingest_concurrency` groups in flight: while one group's chunks are embedded, the
        # next one is parsed and chunked, and the finished one is read back and marked done, so
        # the retrieval service's embedder never waits on the gateway.
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                claimed = False
                if len(tasks) < self.settings.ingest_concurrency:
                    try:
                        claimed = await self._claim(tasks)
                    except Exception:
                        log.exception("ingestion: looking for work failed; retrying at the next poll")
                if claimed:
                    continue
                wake = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    {wake, *tasks},
                    timeout=self.settings.ingest_poll_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                wake.cancel()
                self._wake.clear()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _claim(self, tasks: set[asyncio.Task[None]]) -> bool:
        """Start writing the next group of due files (one store, one payer); whether there was one."""
        async with self.sessions() as session:
            query = select(IngestedFile).where(IngestedFile.status == "in_progress")
            if self._inflight:
                query = query.where(IngestedFile.id.not_in(self._inflight))
            rows = (
                (
                    await session.execute(
                        query.order_by(IngestedFile.id).limit(self.settings.ingest_batch_files * 8)
                    )
                )
                .scalars()
                .all()
            )
        stamp = now()
        due = [r for r in rows if stamp >= r.updated_at + backoff(r.attempts)]
        if not due:
            return False
        first = due[0]
        ids = [
            r.id
            for r in due
            if (r.collection_id, r.user_id, r.key_id) == (first.collection_id, first.user_id, first.key_id)
        ][: self.settings.ingest_batch_files]
        self._inflight.update(ids)
        task = asyncio.create_task(self._group(first.collection_id, ids))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return True

    async def _group(self, collection_id: str, ids: list[int]) -> None:
        try:
            async with self.sessions() as session:
                store = await session.get(Collection, collection_id)
                rows = [r for r in [await session.get(IngestedFile, i) for i in ids] if r is not None]
                rows = [r for r in rows if r.status == "in_progress"]
                if store is not None and rows:
                    await self._ingest(session, store, rows)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("ingestion of %d files failed", len(ids))
            async with self.sessions() as session:
                jobs = [Job(i, "", DocumentUpload("", b"", "", {}), 0) for i in ids]
                await self._retry_later(
                    session, jobs, UpstreamError(f"ingestion failed: {type(exc).__name__}")
                )
        finally:
            self._inflight.difference_update(ids)

    async def _fail(self, session: AsyncSession, ids: list[int], code: str, message: str) -> None:
        for row_id in ids:
            row = await session.get(IngestedFile, row_id)
            if row is not None and row.status == "in_progress":
                row.status, row.last_error, row.updated_at = "failed", _error(code, message), now()
        await session.commit()

    async def _ingest(self, session: AsyncSession, store: Collection, rows: list[IngestedFile]) -> None:
        jobs: list[Job] = []
        for row in rows:
            kind = content_type(row.filename or "")
            if kind is None:
                await self._fail(
                    session,
                    [row.id],
                    "unsupported_file",
                    f"{row.filename!r}: unsupported file type; use {', '.join(sorted(CONTENT_TYPES))} "
                    "or a plain-text format",
                )
                continue
            try:
                data = await self.storage.get(row.file_id or row.document_id)
            except NotFound:
                await self._fail(session, [row.id], "invalid_file", "the file's bytes are gone")
                continue
            static = (row.chunking or {}).get("static") or {}
            chunking = (
                Chunking(int(static["max_chunk_size_tokens"]), int(static["chunk_overlap_tokens"]))
                if static
                else None
            )
            metadata: dict[str, Any] = {
                **(row.attributes or {}),
                "file_id": row.document_id,
                "filename": row.filename or row.document_id,
            }
            jobs.append(
                Job(
                    row.id,
                    row.document_id,
                    DocumentUpload(row.document_id, data, kind, metadata, chunking),
                    len(data),
                )
            )
        if not jobs:
            return
        first = rows[0]
        payer = Principal(first.user_id or store.user_id, "", "user", first.key_id or "", None, None)
        try:
            reservation = await billing.reserve(
                session,
                payer,
                request_id=f"vsi-{uuid.uuid4().hex}",
                model=EMBEDDING_MODEL,
                endpoint="vector_stores.ingest",
                price=self.settings.price(EMBEDDING_MODEL),
                prompt_tokens=sum(WORST_TOKENS_PER_BYTE * j.bytes + 16 for j in jobs),
                max_completion_tokens=0,
            )
        except QuotaExceeded as exc:
            await self._fail(session, [j.row_id for j in jobs], "server_error", exc.message)
            return
        written: list[Job] = []
        outcome = Outcome(status="failed")
        try:
            written = await self._write(session, store, jobs)
            for job in written:
                if job.chunks:
                    doc = await self.retrieval.get_document(store.store_name, job.document_id)
                    job.tokens = embedding_tokens().count([text for _, text in doc.chunks])
            outcome = Outcome(
                prompt_tokens=sum(j.tokens for j in written), status="ok" if written else "failed"
            )
        finally:
            await billing.settle(session, reservation, outcome)
            await session.commit()
        await self._finish(session, store, written)

    async def _write(self, session: AsyncSession, store: Collection, jobs: list[Job]) -> list[Job]:
        """Upsert the jobs' documents; the ones written. A refused document fails alone."""
        try:
            counts = await self.retrieval.upsert(store.store_name, [j.upload for j in jobs])
        except InvalidArgument as exc:
            if len(jobs) > 1:
                return [w for job in jobs for w in await self._write(session, store, [job])]
            await self._fail(session, [jobs[0].row_id], "invalid_file", exc.message)
            return []
        except NotFound:
            return []  # the store was deleted meanwhile; its rows went with it
        except TRANSIENT as exc:
            await self._retry_later(session, jobs, exc)
            return []
        for job in jobs:
            job.chunks = counts.get(job.document_id, 0)
        return jobs

    async def _retry_later(self, session: AsyncSession, jobs: list[Job], exc: RagwayError) -> None:
        log.warning("ingestion retries %d files later: %s", len(jobs), exc.message)
        for job in jobs:
            row = await session.get(IngestedFile, job.row_id)
            if row is None or row.status != "in_progress":
                continue
            row.attempts += 1
            row.updated_at = now()
            if row.attempts >= self.settings.ingest_max_attempts:
                row.status = "failed"
                row.last_error = _error(
                    "server_error", f"ingestion failed {row.attempts} times, last: {exc.message}"
                )
        await session.commit()

    async def _finish(self, session: AsyncSession, store: Collection, written: list[Job]) -> None:
        """Mark written files completed — unless their row changed or went away meanwhile."""
        stale = []
        # Read every row afresh (a cancel or an attribute update may have landed meanwhile) once,
        # before changing any: expiring after a change would discard it unflushed, leaving that
        # file in_progress to be written (and billed) again.
        session.expire_all()
        for job in written:
            row = await session.get(IngestedFile, job.row_id)
            sent = job.upload.metadata
            if row is None or row.status == "cancelled":
                stale.append(job.document_id)
                continue
            if row.status != "in_progress":
                continue
            if {
                **(row.attributes or {}),
                "file_id": row.document_id,
                "filename": row.filename or row.document_id,
            } != sent:
                continue  # attributes changed while writing: the row stays in_progress and runs again
            row.status, row.chunks, row.usage_bytes = "completed", job.chunks, job.bytes
            row.last_error, row.updated_at = None, now()
        await session.commit()
        if stale:
            still = set(
                (
                    await session.execute(
                        select(IngestedFile.document_id).where(
                            IngestedFile.collection_id == store.id,
                            IngestedFile.document_id.in_(stale),
                            IngestedFile.status != "cancelled",
                        )
                    )
                ).scalars()
            )
            gone = [d for d in stale if d not in still]
            if gone:
                try:
                    await self.retrieval.delete(store.store_name, gone)
                except NotFound:
                    pass
