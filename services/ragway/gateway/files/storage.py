"""Uploaded files (`/v1/files`): rows in SQL, bytes behind a small `FileStorage` interface.

Two storages: `LocalFileStorage` keeps bytes under `<data_dir>/files/` (the embedded default, one
gateway); `DatabaseFileStorage` keeps them in SQL (`file_blobs`), written in the same transaction
as the file's row, so bytes and metadata never disagree, every gateway replica reads them, and they
outlive any pod. The database was chosen over S3-compatible storage because a multi-replica
deployment already runs PostgreSQL, files are capped at `max_file_bytes` (50 MB by default,
well within bytea), and a transaction spanning row and bytes leaves no orphan to clean up.
`RAGWAY_FILE_STORE=auto` picks the database whenever the database is not SQLite.

A file belongs to the user who uploaded it: anyone else gets NotFound, exactly as for a file that
does not exist. Size and a per-user stored-bytes quota are checked before anything is kept (413 /
429). Deleting a file removes it from every vector store it was attached to (chunks and vectors in
the retrieval service), then its row, then its bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ragway.core.errors import InvalidArgument, NotFound
from ragway.gateway.accounts.auth import Principal
from ragway.gateway.clients.retrieval import RetrievalClient
from ragway.gateway.core.errors import PayloadTooLarge, StorageQuotaExceeded
from ragway.gateway.core.tables import Collection, FileBlob, IngestedFile, StoredFile

PURPOSES = ("assistants", "user_data")
FILE_ID = "file-"


class FileStorage(ABC):
    """Where file bytes live, by file id. Each call gets the caller's session: a storage in the
    database stages its writes in the caller's transaction; one outside it ignores the session."""

    @abstractmethod
    async def put(self, session: AsyncSession, file_id: str, data: bytes) -> None:
        """Keep the bytes; they are durable once the caller commits."""

    @abstractmethod
    async def get(self, session: AsyncSession, file_id: str) -> bytes:
        """The bytes; NotFound when they are gone."""

    @abstractmethod
    async def discard(self, file_id: str) -> None:
        """Remove the bytes of a file whose row was deleted and committed; no error when gone."""


class LocalFileStorage(FileStorage):
    """Bytes as files in one folder; written to a temporary name and renamed, so a crash never
    leaves half a file under a file's id. Written before the row is committed: a crash in between
    leaves unreferenced bytes, never a row without them."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, file_id: str) -> Path:
        if not file_id.startswith(FILE_ID) or not file_id[len(FILE_ID) :].isalnum():
            raise NotFound(f"no file {file_id!r}")
        return self.root / file_id

    def _write(self, path: Path, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        with partial.open("wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(path)

    async def put(self, session: AsyncSession, file_id: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, self._path(file_id), data)

    async def get(self, session: AsyncSession, file_id: str) -> bytes:
        try:
            return await asyncio.to_thread(self._path(file_id).read_bytes)
        except FileNotFoundError as exc:
            raise NotFound(f"the bytes of file {file_id!r} are gone") from exc

    async def discard(self, file_id: str) -> None:
        await asyncio.to_thread(self._path(file_id).unlink, True)


class DatabaseFileStorage(FileStorage):
    """Bytes in the `file_blobs` table, one row per file, deleted with the file's row (cascade)."""

    async def put(self, session: AsyncSession, file_id: str, data: bytes) -> None:
        session.add(FileBlob(file_id=file_id, data=data))

    async def get(self, session: AsyncSession, file_id: str) -> bytes:
        data = (
            await session.execute(select(FileBlob.data).where(FileBlob.file_id == file_id))
        ).scalar_one_or_none()
        if data is None:
            raise NotFound(f"the bytes of file {file_id!r} are gone")
        return bytes(data)

    async def discard(self, file_id: str) -> None:
        pass  # the row's deletion took its blob along (ON DELETE CASCADE)


def create_file_storage(kind: str, database_url: str, root: Path) -> FileStorage:
    """The storage `RAGWAY_FILE_STORE` names; `auto`: the database unless it is SQLite (one
    machine, where the local folder is as shared as the database file)."""
    if kind == "auto":
        kind = "local" if database_url.startswith("sqlite") else "database"
    return DatabaseFileStorage() if kind == "database" else LocalFileStorage(root)


def check_purpose(purpose: str) -> str:
    if purpose not in PURPOSES:
        raise InvalidArgument(f"purpose must be one of {', '.join(PURPOSES)}", field="purpose")
    return purpose


async def stored_bytes(session: AsyncSession, user_id: str) -> int:
    total = await session.execute(
        select(func.coalesce(func.sum(StoredFile.bytes), 0)).where(StoredFile.user_id == user_id)
    )
    return int(total.scalar_one())


async def create(
    session: AsyncSession,
    storage: FileStorage,
    principal: Principal,
    *,
    filename: str,
    purpose: str,
    data: bytes,
    max_bytes: int,
    quota_bytes: int,
) -> StoredFile:
    """Keep an uploaded file: 413 over the size limit, 429 over the user's stored-bytes quota."""
    check_purpose(purpose)
    if not filename or len(filename) > 512 or any(ord(c) < 32 for c in filename):
        raise InvalidArgument("file names are 1-512 printable characters", field="file")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"{filename!r} is larger than the file size limit of {max_bytes} bytes")
    if not data:
        raise InvalidArgument(f"{filename!r} is empty", field="file")
    used = await stored_bytes(session, principal.user_id)
    if used + len(data) > quota_bytes:
        raise StorageQuotaExceeded(
            f"storing {filename!r} ({len(data)} bytes) would pass your quota of {quota_bytes} bytes "
            f"({used} in use); delete files you no longer need"
        )
    row = StoredFile(
        user_id=principal.user_id,
        filename=filename,
        purpose=purpose,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    session.add(row)
    await session.flush()
    await storage.put(session, row.id, data)
    await session.commit()
    return row


async def get(session: AsyncSession, principal: Principal, file_id: str) -> StoredFile:
    row = await session.get(StoredFile, file_id)
    if row is None or row.user_id != principal.user_id:
        raise NotFound(f"no file {file_id!r}")
    return row


async def listing(
    session: AsyncSession,
    principal: Principal,
    *,
    purpose: str | None,
    limit: int,
    order: str,
    after: str | None,
) -> tuple[Sequence[StoredFile], bool]:
    """One page of the caller's files by creation time; whether more follow."""
    query = select(StoredFile).where(StoredFile.user_id == principal.user_id)
    if purpose:
        query = query.where(StoredFile.purpose == check_purpose(purpose))
    if after:
        cursor = await get(session, principal, after)
        query = query.where(StoredFile.seq > cursor.seq if order == "asc" else StoredFile.seq < cursor.seq)
    query = query.order_by(StoredFile.seq.asc() if order == "asc" else StoredFile.seq.desc()).limit(limit + 1)
    rows = (await session.execute(query)).scalars().all()
    return rows[:limit], len(rows) > limit


async def remove(
    session: AsyncSession,
    storage: FileStorage,
    retrieval: RetrievalClient,
    principal: Principal,
    file_id: str,
) -> None:
    """Delete a file and everything made from it: its chunks in every vector store, then its row
    and its bytes. The retrieval deletes come first so a failure leaves the file (and a retry)."""
    row = await get(session, principal, file_id)
    attached = (
        await session.execute(
            select(Collection.store_name, IngestedFile.id)
            .join(Collection, Collection.id == IngestedFile.collection_id)
            .where(IngestedFile.file_id == file_id)
        )
    ).all()
    for store_name, _ in attached:
        await retrieval.delete(store_name, [file_id])
    await session.execute(delete(IngestedFile).where(IngestedFile.file_id == file_id))
    await session.delete(row)
    await session.commit()
    await storage.discard(file_id)
