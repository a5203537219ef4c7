"""`ragway ingest`: send folders of documents to a collection through the gateway's API.

- A document's id is its path relative to the folder given (`guide/index.md`), so two files with
  the same name in different sub-folders stay two documents; a file given by itself is its name.
- Each file's SHA-256 is kept in its document's metadata (`sha256`, with `source`, the folder's
  absolute path). The collection's document list is read first, and a file whose hash is already
  there is not uploaded at all; a changed file replaces its old version whole.
- `--prune` deletes the documents that came from the same folder (same `source`) whose files
  are gone. Documents uploaded any other way are never pruned.
- Each file is one upload, so one bad file fails alone. PDFs are turned into text here, with the
  retrieval service's own parser, because the JSON upload that carries metadata takes text.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ragway.core.content_types import CONTENT_TYPES

SUFFIXES = set(CONTENT_TYPES)
PAGE = 1000


@dataclass
class IngestReport:
    files: int = 0
    written: int = 0
    unchanged: int = 0
    chunks: int = 0
    pruned: int = 0
    uploads: int = 0  # files sent; the others' hashes matched
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceFile:
    path: Path
    document_id: str  # path relative to the folder given, with '/' separators
    source: str  # the folder given (absolute), or the file's own folder


def find_files(paths: list[Path]) -> list[SourceFile]:
    found: list[SourceFile] = []
    for path in paths:
        if path.is_dir():
            root = path.resolve()
            for file in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES):
                found.append(SourceFile(file, file.relative_to(root).as_posix(), str(root)))
        elif path.is_file():
            found.append(SourceFile(path, path.name, str(path.resolve().parent)))
    return found


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _text(file: SourceFile) -> tuple[str, str]:
    """(text, content type) for the JSON upload."""
    content_type = CONTENT_TYPES[file.path.suffix.lower()]
    data = file.path.read_bytes()
    if content_type == "application/pdf":
        from ragway.retrieval.parsing import parse

        return "\n\n".join(s.text for s in parse(data, content_type)), "text/plain"
    return data.decode("utf-8", errors="replace"), content_type


def _error(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", {}).get("message", response.text))
    except ValueError:
        return response.text


def existing_documents(http: httpx.Client, collection: str) -> dict[str, dict[str, Any]]:
    """Every document of the collection: id -> metadata."""
    documents: dict[str, dict[str, Any]] = {}
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": PAGE} | ({"after": after} if after else {})
        response = http.get(f"/v1/collections/{collection}/documents", params=params)
        response.raise_for_status()
        body = response.json()
        documents.update({d["id"]: d.get("metadata") or {} for d in body["data"]})
        if not body.get("has_more"):
            return documents
        after = body["last_id"]


def ingest(
    base_url: str, api_key: str, collection: str, paths: list[Path], *, prune: bool = False
) -> IngestReport:
    files = find_files(paths)
    report = IngestReport(files=len(files))
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=600) as http:
        existing = http.get(f"/v1/collections/{collection}")
        if existing.status_code == 404:
            http.post("/v1/collections", json={"name": collection}).raise_for_status()
        else:
            existing.raise_for_status()
        stored = existing_documents(http, collection)
        started = time.monotonic()
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[chunks]} chunks · {task.fields[rate]:.1f} chunks/s"),
            TimeElapsedColumn(),
        )
        with Progress(*columns) as progress:
            task = progress.add_task("ingesting", total=len(files), chunks=0, rate=0.0)
            for file in files:
                _send(http, collection, file, stored.get(file.document_id), report)
                elapsed = max(time.monotonic() - started, 1e-6)
                progress.update(task, advance=1, chunks=report.chunks, rate=report.chunks / elapsed)
        if prune:
            present = {f.document_id for f in files}
            sources = {f.source for f in files} | {str(p.resolve()) for p in paths if p.is_dir()}
            for document_id, metadata in stored.items():
                if metadata.get("source") in sources and document_id not in present:
                    response = http.delete(f"/v1/collections/{collection}/documents/{quote(document_id)}")
                    if response.status_code >= 400 and response.status_code != 404:
                        report.failed[document_id] = f"prune: {_error(response)}"
                    else:
                        report.pruned += 1
    return report


def _send(
    http: httpx.Client, collection: str, file: SourceFile, stored: dict[str, Any] | None, report: IngestReport
) -> None:
    digest = sha256(file.path)
    if stored is not None and stored.get("sha256") == digest and stored.get("source") == file.source:
        report.unchanged += 1
        return
    try:
        text, content_type = _text(file)
    except Exception as exc:  # an unreadable file fails alone, with the reason shown
        report.failed[str(file.path)] = f"{type(exc).__name__}: {exc}"
        return
    metadata = {
        "filename": file.path.name,
        "path": file.document_id,
        "source": file.source,
        "sha256": digest,
    }
    document = {"id": file.document_id, "text": text, "content_type": content_type, "metadata": metadata}
    response = http.post(f"/v1/collections/{collection}/documents", json={"documents": [document]})
    report.uploads += 1
    if response.status_code >= 400:
        report.failed[str(file.path)] = _error(response)
        return
    for doc in response.json()["data"]:
        if doc["status"] == "unchanged":
            report.unchanged += 1
        else:
            report.written += 1
            report.chunks += doc["chunks"]
