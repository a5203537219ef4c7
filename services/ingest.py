"""`ragway ingest`: send a folder of documents to a collection through the gateway's API.

Each file is one upload (so one bad file fails alone); the gateway skips files whose content hash
it already has, so re-running on an unchanged folder writes nothing, and a changed file replaces
its old version whole.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

SUFFIXES = {".txt", ".text", ".md", ".markdown", ".html", ".htm", ".pdf"}


@dataclass
class IngestReport:
    files: int = 0
    written: int = 0
    unchanged: int = 0
    chunks: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def find_files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES))
        elif path.is_file():
            found.append(path)
    return found


def ingest(base_url: str, api_key: str, collection: str, paths: list[Path]) -> IngestReport:
    files = find_files(paths)
    report = IngestReport(files=len(files))
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=600) as http:
        existing = http.get(f"/v1/collections/{collection}")
        if existing.status_code == 404:
            http.post("/v1/collections", json={"name": collection}).raise_for_status()
        else:
            existing.raise_for_status()
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
            for path in files:
                with path.open("rb") as handle:
                    response = http.post(
                        f"/v1/collections/{collection}/documents", files={"files": (path.name, handle)}
                    )
                if response.status_code >= 400:
                    report.failed[str(path)] = response.json().get("error", {}).get("message", response.text)
                else:
                    for doc in response.json()["data"]:
                        if doc["status"] == "unchanged":
                            report.unchanged += 1
                        else:
                            report.written += 1
                            report.chunks += doc["chunks"]
                elapsed = max(time.monotonic() - started, 1e-6)
                progress.update(task, advance=1, chunks=report.chunks, rate=report.chunks / elapsed)
    return report
