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
with exponential backoff (at most a minute) for as long as it stays unreachable, so a file
survives an outage or a network partition of any length; a write that fails otherwise (times out,
is refused as overloaded, breaks) fails the file (`server_error`) after `ingest_max_attempts`
tries. When a row was deleted or cancelled while its file was being written, the written chunks
are removed again.
Embedding tokens are metered like /v1/embeddings (`metering`: the payer key's TPM hold and the
credit reservation before each write, settled after it); a payer key whose TPM window is full makes
its files wait for the next window, not fail.

Every gateway replica runs a worker, so a worker *claims* the rows it writes with a lease: one
conditional UPDATE sets `lease_owner` and `lease_until` on rows whose lease is free or ran out, so
two workers never hold the same row, on SQLite or PostgreSQL alike. The worker renews its leases
while it writes; when it dies they run out (`ingest_lease_seconds`) and another worker takes the
rows over. A file is marked completed and its embedding tokens billed in one transaction, and only
by the worker that still holds its lease: whatever dies when, each file is billed exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ragway.core.errors import DeadlineExceeded, InvalidArgument, NotFound, RagwayError, Unavailable
from ragway.gateway.accounts import metering
from ragway.gateway.accounts.auth import Principal
from ragway.gateway.accounts.billing import Outcome, Reservation
from ragway.gateway.accounts.limiter import Limiter
from ragway.gateway.clients.retrieval import Chunking, DocumentUpload, RetrievalClient
from ragway.gateway.collections.documents import CONTENT_TYPES, worst_tokens, written_tokens
from ragway.gateway.core.config import GatewaySettings
from ragway.gateway.core.errors import Overloaded, QuotaExceeded, RateLimited, UpstreamError
from ragway.gateway.core.tables import ApiKey, Collection, IngestedFile, now
from ragway.gateway.files.storage import FileStorage
from ragway.gateway.vector_stores.serving import EMBEDDING_MODEL

log = logging.getLogger(__name__)

# Plain-text formats OpenAI's file search takes that the retrieval service reads as text.
TEXT_SUFFIXES = (
    ".json .csv .tsv .py .js .ts .java .c .cc .cpp .h .hpp .cs .go .rs .rb .php .sh .tex .css .xml "
    ".yaml .yml .toml .ini .log .sql .rst"
).split()
TRANSIENT = (Unavailable, DeadlineExceeded, Overloaded, UpstreamError)
MAX_BACKOFF_SECONDS = 60


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


async def _payer(session: AsyncSession, row: IngestedFile, store: Collection) -> Principal:
    """Who pays for a row's embedding: the user and key that attached it, with that key's limits
    and budget (none when the key is gone: its user still pays)."""
    key = await session.get(ApiKey, row.key_id) if row.key_id else None
    user_id = row.user_id or store.user_id
    if key is None:
        return Principal(user_id, "", "user", "", None, None, None, "month")
    return Principal(user_id, "", "user", key.id, key.rpm_limit, key.tpm_limit, key.budget, key.budget_period)


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
        limiter: Limiter,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.retrieval = retrieval
        self.storage = storage
        self.limiter = limiter
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Who holds a lease: this process, and which of its claims (a claim is one group of rows).
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._claims = itertools.count(1)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ingestion-worker")

    def wake(self) -> None:
        """New work was recorded: look now instead of at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop writing and hand back this worker's leases, so another replica resumes its rows now
        rather than when the leases run out."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        try:
            async with self.sessions() as session:
                await session.execute(
                    update(IngestedFile)
                    .where(IngestedFile.lease_owner.startswith(f"{self.owner}/"))
                    .values(lease_owner=None, lease_until=None)
                )
                await session.commit()
        except Exception:
            log.exception("ingestion: handing back leases failed; they run out on their own")

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
        """Lease the next group of due files (one store, one payer) and start writing it; whether
        there was one (or another worker won it, so it is worth looking again at once)."""
        stamp = time.time()
        free = or_(IngestedFile.lease_until.is_(None), IngestedFile.lease_until < stamp)
        async with self.sessions() as session:
            rows = (
                (
                    await session.execute(
                        select(IngestedFile)
                        .where(IngestedFile.status == "in_progress", free)
                        .order_by(IngestedFile.id)
                        .limit(self.settings.ingest_batch_files * 8)
                    )
                )
                .scalars()
                .all()
            )
            due = [r for r in rows if now() >= r.updated_at + backoff(r.attempts)]
            if not due:
                return False
            first = due[0]
            payer = (first.collection_id, first.user_id, first.key_id)
            ids = [r.id for r in due if (r.collection_id, r.user_id, r.key_id) == payer]
            ids = ids[: self.settings.ingest_batch_files]
            token = f"{self.owner}/{next(self._claims)}"
            # Conditional on the lease still being free: of two workers racing, each row goes to one.
            await session.execute(
                update(IngestedFile)
                .where(IngestedFile.id.in_(ids), IngestedFile.status == "in_progress", free)
                .values(lease_owner=token, lease_until=stamp + self.settings.ingest_lease_seconds)
            )
            await session.commit()
            claimed = list(
                (await session.execute(select(IngestedFile.id).where(IngestedFile.lease_owner == token)))
                .scalars()
                .all()
            )
        if claimed:
            task = asyncio.create_task(self._group(first.collection_id, token, claimed))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return True

    async def _renew(self, token: str) -> None:
        """Keep a claim's leases from running out while its files are written."""
        period = self.settings.ingest_lease_seconds / 3
        while True:
            await asyncio.sleep(period)
            try:
                async with self.sessions() as session:
                    await session.execute(
                        update(IngestedFile)
                        .where(IngestedFile.lease_owner == token)
                        .values(lease_until=time.time() + self.settings.ingest_lease_seconds)
                    )
                    await session.commit()
            except Exception:
                log.exception("ingestion: renewing the lease of %s failed; trying again", token)

    async def _group(self, collection_id: str, token: str, ids: list[int]) -> None:
        renew = asyncio.create_task(self._renew(token))
        try:
            async with self.sessions() as session:
                store = await session.get(Collection, collection_id)
                rows = [r for r in [await session.get(IngestedFile, i) for i in ids] if r is not None]
                rows = [r for r in rows if r.status == "in_progress" and r.lease_owner == token]
                if store is not None and rows:
                    await self._ingest(session, store, token, rows)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("ingestion of %d files failed", len(ids))
            async with self.sessions() as session:
                jobs = [Job(i, "", DocumentUpload("", b"", "", {}), 0) for i in ids]
                await self._retry_later(
                    session, token, jobs, UpstreamError(f"ingestion failed: {type(exc).__name__}")
                )
        finally:
            renew.cancel()
            await asyncio.gather(renew, return_exceptions=True)
            await self._release(token)

    async def _release(self, token: str) -> None:
        """Hand back what is left of a claim: rows still in progress (retrying later, or changed
        while written) are claimed again at their time, by whichever worker comes first."""
        try:
            async with self.sessions() as session:
                await session.execute(
                    update(IngestedFile)
                    .where(IngestedFile.lease_owner == token)
                    .values(lease_owner=None, lease_until=None)
                )
                await session.commit()
        except Exception:
            log.exception("ingestion: releasing %s failed; its leases run out on their own", token)

    async def _fail(self, session: AsyncSession, token: str, ids: list[int], code: str, message: str) -> None:
        for row_id in ids:
            row = await session.get(IngestedFile, row_id)
            if row is not None and row.status == "in_progress" and row.lease_owner == token:
                row.status, row.last_error, row.updated_at = "failed", _error(code, message), now()
        await session.commit()

    async def _ingest(
        self, session: AsyncSession, store: Collection, token: str, rows: list[IngestedFile]
    ) -> None:
        jobs: list[Job] = []
        for row in rows:
            kind = content_type(row.filename or "")
            if kind is None:
                await self._fail(
                    session,
                    token,
                    [row.id],
                    "unsupported_file",
                    f"{row.filename!r}: unsupported file type; use {', '.join(sorted(CONTENT_TYPES))} "
                    "or a plain-text format",
                )
                continue
            try:
                data = await self.storage.get(session, row.file_id or row.document_id)
            except NotFound:
                await self._fail(session, token, [row.id], "invalid_file", "the file's bytes are gone")
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
        payer = await _payer(session, rows[0], store)
        try:
            reservation = await metering.reserve(
                session,
                self.limiter,
                payer,
                request_id=f"vsi-{uuid.uuid4().hex}",
                model=EMBEDDING_MODEL,
                endpoint="vector_stores.ingest",
                price=self.settings.price(EMBEDDING_MODEL),
                prompt_tokens=sum(worst_tokens(j.bytes) for j in jobs),
                window_hold=True,
            )
        except QuotaExceeded as exc:
            await self._fail(session, token, [j.row_id for j in jobs], "server_error", exc.message)
            return
        except RateLimited as exc:
            await self._retry_later(session, token, jobs, exc)
            return
        try:
            written = await self._write(session, store, token, jobs)
            for job in written:
                if job.chunks:
                    job.tokens = await written_tokens(self.retrieval, store.store_name, job.document_id)
        except BaseException:
            # Nothing is marked completed, so nothing is billed: the rows are written (and billed)
            # again when they are claimed next. The hold goes back now.
            await asyncio.shield(self._refund(session, reservation))
            raise
        outcome = Outcome(prompt_tokens=sum(j.tokens for j in written), status="ok" if written else "failed")
        await self._finish(session, store, token, written, reservation, outcome)

    async def _refund(self, session: AsyncSession, reservation: Reservation) -> None:
        await session.rollback()
        await metering.settle(session, self.limiter, reservation, Outcome(status="failed"))
        await session.commit()

    async def _write(
        self, session: AsyncSession, store: Collection, token: str, jobs: list[Job]
    ) -> list[Job]:
        """Upsert the jobs' documents; the ones written. A refused document fails alone."""
        try:
            counts = await self.retrieval.upsert(store.store_name, [j.upload for j in jobs])
        except InvalidArgument as exc:
            if len(jobs) > 1:
                return [w for job in jobs for w in await self._write(session, store, token, [job])]
            await self._fail(session, token, [jobs[0].row_id], "invalid_file", exc.message)
            return []
        except NotFound:
            return []  # the store was deleted meanwhile; its rows went with it
        except TRANSIENT as exc:
            await self._retry_later(session, token, jobs, exc)
            return []
        for job in jobs:
            job.chunks = counts.get(job.document_id, 0)
        return jobs

    async def _retry_later(
        self, session: AsyncSession, token: str, jobs: list[Job], exc: RagwayError
    ) -> None:
        log.warning("ingestion retries %d files later: %s", len(jobs), exc.message)
        for job in jobs:
            row = await session.get(IngestedFile, job.row_id)
            if row is None or row.status != "in_progress" or row.lease_owner != token:
                continue
            row.attempts += 1
            row.updated_at = now()
            # Unreachable is not the file's fault, nor a full TPM window: it waits either out
            # (backoff capped).
            if row.attempts >= self.settings.ingest_max_attempts and not isinstance(
                exc, Unavailable | RateLimited
            ):
                row.status = "failed"
                row.last_error = _error(
                    "server_error", f"ingestion failed {row.attempts} times, last: {exc.message}"
                )
        await session.commit()

    async def _finish(
        self,
        session: AsyncSession,
        store: Collection,
        token: str,
        written: list[Job],
        reservation: Reservation,
        outcome: Outcome,
    ) -> None:
        """Mark written files completed — unless their row changed or went away meanwhile — and
        settle their bill, in one transaction: a file is completed and billed, or neither."""
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
            if row.status != "in_progress" or row.lease_owner != token:
                continue
            if {
                **(row.attributes or {}),
                "file_id": row.document_id,
                "filename": row.filename or row.document_id,
            } != sent:
                continue  # attributes changed while writing: the row stays in_progress and runs again
            row.status, row.chunks, row.usage_bytes = "completed", job.chunks, job.bytes
            row.last_error, row.updated_at = None, now()
        await metering.settle(session, self.limiter, reservation, outcome)
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
