"""/v1/files — OpenAI's Files API: upload, list, retrieve, download, delete the caller's files."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from ragway.core.errors import InvalidArgument
from ragway.gateway.core.deps import CurrentPrincipal, FileStorageDep, RetrievalDep, SessionDep, SettingsDep
from ragway.gateway.core.errors import PayloadTooLarge, UnsupportedMediaType
from ragway.gateway.core.json_route import StrictJsonRoute
from ragway.gateway.core.tables import StoredFile
from ragway.gateway.files import storage as files
from ragway.gateway.files.protocol import FileDeleted, FileList, FileObject

router = APIRouter(prefix="/v1/files", tags=["files"], route_class=StrictJsonRoute)


def file_out(row: StoredFile) -> FileObject:
    return FileObject(
        id=row.id, bytes=row.bytes, created_at=row.created_at, filename=row.filename, purpose=row.purpose
    )


@router.post(
    "",
    response_model=FileObject,
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "purpose"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "purpose": {"type": "string", "enum": list(files.PURPOSES)},
                        },
                    }
                }
            }
        }
    },
)
async def create_file(
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    storage: FileStorageDep,
    settings: SettingsDep,
) -> FileObject:
    """Upload a file (multipart `file` and `purpose` "assistants" or "user_data")."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UnsupportedMediaType("send multipart/form-data with a 'file' and a 'purpose'")
    form = await request.form(max_files=1, max_fields=8)
    upload, purpose = form.get("file"), form.get("purpose")
    if not isinstance(upload, UploadFile):
        raise InvalidArgument("'file' is required (a multipart file field)", field="file")
    if not isinstance(purpose, str):
        raise InvalidArgument("'purpose' is required: 'assistants' or 'user_data'", field="purpose")
    files.check_purpose(purpose)
    data = await upload.read(settings.max_file_bytes + 1)
    if len(data) > settings.max_file_bytes:
        raise PayloadTooLarge(
            f"{upload.filename!r} is larger than the file size limit of {settings.max_file_bytes} bytes"
        )
    row = await files.create(
        session,
        storage,
        principal,
        filename=upload.filename or "upload.txt",
        purpose=purpose,
        data=data,
        max_bytes=settings.max_file_bytes,
        quota_bytes=settings.file_quota_bytes,
    )
    return file_out(row)


@router.get("", response_model=FileList)
async def list_files(
    principal: CurrentPrincipal,
    session: SessionDep,
    purpose: str | None = Query(None, max_length=32),
    limit: int = Query(10000, ge=1, le=10000),
    order: Literal["asc", "desc"] = "desc",
    after: str | None = Query(None, max_length=64),
) -> FileList:
    """The caller's files, newest first by default; `after` is the last id of the previous page."""
    rows, more = await files.listing(
        session, principal, purpose=purpose, limit=limit, order=order, after=after
    )
    data = [file_out(r) for r in rows]
    return FileList(
        data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None, has_more=more
    )


@router.get("/{file_id}", response_model=FileObject)
async def get_file(file_id: str, principal: CurrentPrincipal, session: SessionDep) -> FileObject:
    """One of the caller's files."""
    return file_out(await files.get(session, principal, file_id))


@router.get("/{file_id}/content", response_class=Response)
async def get_file_content(
    file_id: str, principal: CurrentPrincipal, session: SessionDep, storage: FileStorageDep
) -> Response:
    """The file's bytes, as uploaded."""
    row = await files.get(session, principal, file_id)
    return Response(
        await storage.get(session, row.id),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{row.id}"'},
    )


@router.delete("/{file_id}", response_model=FileDeleted)
async def delete_file(
    file_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    storage: FileStorageDep,
    retrieval: RetrievalDep,
) -> FileDeleted:
    """Delete a file: its bytes, and its chunks in every vector store it was attached to."""
    await files.remove(session, storage, retrieval, principal, file_id)
    return FileDeleted(id=file_id)
