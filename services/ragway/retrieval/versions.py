"""Replace-on-upsert without mixing: document locks and version visibility.

Every upsert writes a new *version* of a document next to the old one, then deletes the old one.
Neither step is atomic in a vector store (a 20 MB document is many writes), so while a rewrite is
in flight the service decides which version searches may see:

    writing  -> only the old version is visible (the new one is incomplete)
    switched -> only the new version is visible (the old one is being deleted)
    done     -> one version is left; nothing to hide

A per-(collection, document) lock serialises upserts and deletes of one document, so concurrent
upserts of one id end with exactly one complete version: the last to take the lock. Versions are
microsecond timestamps (strictly increasing in a process), so "delete versions below mine" also
leaves the newest version standing when several service replicas share one Qdrant or Milvus.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ragway.retrieval.stores.base import StoredChunk


@dataclass(frozen=True)
class _Rewrite:
    version: int
    switched: bool = False


@dataclass(frozen=True)
class Visibility:
    """Which chunks a read may return, as of the moment the read was issued. A read that runs
    while a rewrite moves on (switch, old version deleted) must still be judged by the state it
    started in: judged by a later state, a read that saw the old version would let it through."""

    rewrites: dict[str, _Rewrite]

    def hides_something(self) -> bool:
        return bool(self.rewrites)

    def visible(self, chunk: StoredChunk) -> bool:
        rewrite = self.rewrites.get(chunk.document_id)
        if rewrite is None:
            return True
        return (chunk.version == rewrite.version) == rewrite.switched


class DocumentVersions:
    """Locks and in-flight rewrites of documents, per collection."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._waiters: dict[tuple[str, str], int] = {}
        self._rewrites: dict[str, dict[str, _Rewrite]] = {}
        self._last = 0

    @asynccontextmanager
    async def locked(self, collection: str, document_ids: Iterable[str]) -> AsyncIterator[None]:
        """Hold the locks of these documents (taken in sorted order, so two batches never deadlock)."""
        keys = [(collection, doc) for doc in sorted(set(document_ids))]
        registered: list[tuple[str, str]] = []
        acquired: list[asyncio.Lock] = []
        try:
            for key in keys:
                self._waiters[key] = self._waiters.get(key, 0) + 1
                registered.append(key)
                lock = self._locks.setdefault(key, asyncio.Lock())
                await lock.acquire()
                acquired.append(lock)
            yield
        finally:
            for lock in reversed(acquired):
                lock.release()
            for key in registered:
                self._waiters[key] -= 1
                if not self._waiters[key]:  # Nobody else waits: drop the lock, keep the dict small.
                    del self._waiters[key], self._locks[key]

    def new_version(self) -> int:
        self._last = max(time.time_ns() // 1000, self._last + 1)
        return self._last

    def begin(self, collection: str, document_id: str, version: int) -> None:
        """Start writing `version` of a document (caller holds its lock); hidden for now."""
        self._rewrites.setdefault(collection, {})[document_id] = _Rewrite(version)

    def switch(self, collection: str, document_id: str) -> None:
        """The new version is complete: show it, hide every other."""
        rewrites = self._rewrites[collection]
        rewrites[document_id] = _Rewrite(rewrites[document_id].version, switched=True)

    def end(self, collection: str, document_id: str) -> None:
        rewrites = self._rewrites.get(collection, {})
        rewrites.pop(document_id, None)
        if not rewrites:
            self._rewrites.pop(collection, None)

    def visibility(self, collection: str) -> Visibility:
        """Take this before reading the store, and filter what the read returns with it."""
        return Visibility(dict(self._rewrites.get(collection, {})))
