"""input_file parts of a Responses request: the document's text, given to the model inside the
message that carried it.

A file comes by `file_id` (the caller's own upload to /v1/files; anyone else's is not found) or
as `file_data` (a base64 data URL, or bare base64, with a `filename`). Its type is the data URL's
media type when that is one ragway parses, else the filename's suffix, by the table the vector
store ingestion uses (`rag.ingestion.content_type`), so a file that can go into a vector store can
also go into a message. The text comes from the retrieval service's own parser
(`retrieval.parsing`, pure Python with bs4 and pypdf, which the gateway already installs), run in a
thread since a PDF can take a while.

The text is fenced in a `<file name="...">` block that its content cannot close, as the sources
of `rag.grounding` are. It is part of the prompt, so the model service counts it and billing
charges it as input tokens like any other text of the message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re

from sqlalchemy.ext.asyncio import AsyncSession

from ragway.core.errors import InvalidArgument, NotFound
from ragway.gateway.accounts.auth import Principal
from ragway.gateway.files import storage as files
from ragway.gateway.files.storage import FileStorage
from ragway.gateway.responses.protocol import CreateResponseRequest, InputFile, InputImage, MessageItem
from ragway.gateway.vector_stores.ingestion import content_type
from ragway.retrieval import parsing

OPEN, CLOSE = "<file name=", "</file>"
DATA_URL = re.compile(r"data:(?P<type>[^;,]*)(?:;[^,]*)?;base64,(?P<data>.*)", re.DOTALL)
# A whole file block as `block` writes it (the text cannot hold CLOSE).
BLOCK = re.compile(r'<file name="[^"\n]*">\n.*?\n</file>', re.DOTALL)
READS = "PDF, plain text, Markdown and HTML"

# Where each document goes: (input item, content part) -> its block.
Documents = dict[tuple[int, int], str]


def block(filename: str, text: str) -> str:
    """The document as the model reads it, fenced; its text cannot close (or reopen) the fence."""
    name = filename.replace('"', "'").replace("\n", " ")
    quoted = text.replace(CLOSE, "</ file>").replace(OPEN, "<file  name=")
    return f'<file name="{name}">\n{quoted}\n{CLOSE}'


def without_files(text: str) -> str:
    """A message's own words, its file blocks left out (what a search should look for)."""
    return " ".join(BLOCK.sub(" ", text).split())


def _decoded(part: InputFile, where: str) -> tuple[str | None, bytes]:
    """The media type a data URL names (None for bare base64) and the bytes."""
    assert part.file_data is not None
    url = DATA_URL.fullmatch(part.file_data.strip())
    media, payload = (url["type"] or None, url["data"]) if url else (None, part.file_data)
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(
            f"{where}: file_data is not base64 (send a data URL: data:application/pdf;base64,...)",
            field=f"{where}.file_data",
        ) from None
    return media, data


def _kind(filename: str, media: str | None, where: str) -> str:
    bare = (media or "").split(";", 1)[0].strip().lower()
    try:
        if bare:
            return parsing.normalize_content_type(bare, None)
    except InvalidArgument:
        pass  # a generic type (application/octet-stream): the name decides
    kind = content_type(filename)
    if kind is None:
        shown = f"{filename!r}" + (f" ({bare})" if bare else "")
        raise InvalidArgument(f"{where}: ragway reads {READS} files, not {shown}", field=where)
    return kind


def extract(filename: str, kind: str, data: bytes, where: str) -> str:
    """The document's text, headings kept as lines of their own; a 400 naming the part when it
    has none or cannot be read."""
    try:
        sections = parsing.parse(data, kind)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: {filename!r}: {exc.message}", field=where) from None
    return "\n\n".join(f"{s.heading}\n{s.text}" if s.heading else s.text for s in sections)


def _check(part: InputFile, where: str) -> None:
    if part.file_url is not None:
        raise InvalidArgument(
            f"{where}: file_url is not supported: the gateway fetches nothing from the network; "
            "upload the file to /v1/files and send its file_id, or send file_data",
            field=f"{where}.file_url",
        )
    if part.detail not in (None, "auto"):
        raise InvalidArgument(
            f"{where}: detail takes only auto: ragway reads a file's text and renders no pages",
            field=f"{where}.detail",
        )
    if (part.file_id is None) == (part.file_data is None):
        raise InvalidArgument(f"{where}: an input_file takes one of file_id or file_data", field=where)
    if part.file_data is not None and part.filename is None:
        raise InvalidArgument(
            f"{where}: file_data needs a filename (its type is read from it)", field=f"{where}.filename"
        )


async def _file(
    session: AsyncSession, storage: FileStorage, principal: Principal, part: InputFile, where: str
) -> tuple[str, str | None, bytes]:
    _check(part, where)
    if part.file_data is not None:
        assert part.filename is not None  # _check
        media, data = _decoded(part, where)
        return part.filename, media, data
    assert part.file_id is not None
    try:
        row = await files.get(session, principal, part.file_id)
        data = await storage.get(session, row.id)
    except NotFound:
        raise NotFound(f"{where}: no file {part.file_id!r}", field=f"{where}.file_id") from None
    return part.filename or row.filename, None, data


async def read(
    session: AsyncSession, storage: FileStorage, principal: Principal, req: CreateResponseRequest
) -> Documents:
    """The text of every input_file of the request, fenced, by where it is; images refused."""
    found: Documents = {}
    for i, item in enumerate(req.input):
        if not isinstance(item, MessageItem) or isinstance(item.content, str):
            continue
        for j, part in enumerate(item.content):
            where = f"input.{i}.content.{j}"
            if isinstance(part, InputImage):
                raise InvalidArgument(
                    f"{where}: model {req.model!r} reads text only, so input_image is not supported; "
                    "describe the image in text, or send a document as input_file",
                    field=where,
                )
            if isinstance(part, InputFile):
                filename, media, data = await _file(session, storage, principal, part, where)
                kind = _kind(filename, media, where)
                text = await asyncio.to_thread(extract, filename, kind, data, where)
                found[i, j] = block(filename, text)
    return found
