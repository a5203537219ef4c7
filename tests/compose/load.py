"""Steady mixed load for the compose fault test, and how each request is counted.

Four loops run side by side until told to stop (and never past a request budget): streamed chat,
RAG chat, ingestion (a file uploaded and added to a vector store) and history reads. Every request
ends as one of: succeeded; failed with a clean error (429/502/503/504 with an OpenAI-shaped JSON
error, or a stream that ends with an SSE error event); any other failure (a 500, any other 4xx,
a body that is not such an error, a broken connection, a stream cut without an error event). What
succeeded is kept, so records can be checked for after the fault (Tally.lost)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import MODEL_NAME
from tests.reliability.streams import StreamResult, stream_chat

MAX_REQUESTS_PER_LOOP = 200


def clean_error(status: int, text: str) -> bool:
    """An error a client can act on by retrying (429, 502, 503, 504) in the OpenAI error shape. The
    load's requests are all valid, so any other 4xx is a failure, not a clean error."""
    if status not in (429, 502, 503, 504):
        return False
    try:
        error = json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error, dict) and bool(error.get("message")) and bool(error.get("type"))


@dataclass
class Tally:
    sent: int = 0
    ok: int = 0
    clean: int = 0
    other: int = 0
    lost: int = 0
    failures: list[str] = field(default_factory=list)  # what the "other" ones were
    statuses: dict[int, int] = field(default_factory=dict)
    retry_after: int = 0  # 503s that said when to retry
    chats: list[tuple[str, str]] = field(default_factory=list)  # (conversation id, answer) that succeeded
    files: list[tuple[str, str]] = field(default_factory=list)  # (vector store id, file id) accepted
    completed_calls: int = 0  # chat calls that got an answer (each must have one usage record)

    def count(self, status: int, text: str, retry_after: str | None, what: str) -> bool:
        self.sent += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if 200 <= status < 300:
            self.ok += 1
            return True
        if clean_error(status, text):
            self.clean += 1
            self.retry_after += status == 503 and retry_after is not None
        else:
            self.other += 1
            self.failures.append(f"{what}: {status} {text[:200]}")
        return False

    def broken(self, what: str, error: str) -> None:
        self.sent += 1
        self.other += 1
        self.failures.append(f"{what}: {error}")

    def stream(self, result: StreamResult, what: str) -> None:
        if result.error is not None:
            self.broken(what, result.error)
        elif result.status != 200:
            self.count(
                result.status,
                json.dumps(result.events[-1]) if result.events else "",
                result.retry_after,
                what,
            )
        elif result.done:
            self.sent += 1
            self.ok += 1
            self.completed_calls += 1
            if result.conversation_id:
                self.chats.append((result.conversation_id, result.content))
        elif result.error_event is not None and result.error_event.get("message"):
            self.sent += 1
            self.clean += 1
            self.completed_calls += 1  # a stream that started is metered however it ends
        else:
            self.broken(what, f"stream cut without an error event after {len(result.events)} events")

    def row(self, name: str) -> dict[str, Any]:
        return {
            "fault": name,
            "sent": self.sent,
            "succeeded": self.ok,
            "clean error": self.clean,
            "other failure": self.other,
            "records lost": self.lost,
        }


@dataclass
class MixedLoad:
    http: httpx.AsyncClient
    vector_store: tuple[str, str]  # (id, name); RAG names the store by its id
    tally: Tally = field(default_factory=Tally)
    streams: bool = True
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        loops = [self._rag, self._ingest, self._history] + ([self._stream] if self.streams else [self._chat])
        self.tasks = [asyncio.create_task(loop()) for loop in loops]

    async def finish(self) -> Tally:
        self.stop.set()
        await asyncio.gather(*self.tasks)
        return self.tally

    async def _loop(self, step: Any) -> None:
        for _ in range(MAX_REQUESTS_PER_LOOP):
            if self.stop.is_set():
                return
            try:
                await step()
            except httpx.HTTPError as exc:
                self.tally.broken(step.__name__, f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(0.3)

    async def _stream(self) -> None:
        async def step() -> None:
            result = StreamResult()
            await stream_chat(self.http, f"Name a colour. ({uuid.uuid4().hex[:6]})", 12, result, store=True)
            self.tally.stream(result, "stream")

        await self._loop(step)

    async def _chat(self) -> None:
        async def chat() -> None:
            await self._complete({"messages": [{"role": "user", "content": "Name a fruit."}]}, "chat")

        await self._loop(chat)

    async def _rag(self) -> None:
        async def rag() -> None:
            await self._complete(
                {
                    "messages": [{"role": "user", "content": "What is the ragway test code word?"}],
                    "rag": {"collections": [self.vector_store[0]], "top_k": 2},
                },
                "rag",
            )

        await self._loop(rag)

    async def _complete(self, body: dict[str, Any], what: str) -> None:
        response = await self.http.post(
            "/v1/chat/completions", json={"model": MODEL_NAME, "max_tokens": 8, "store": True, **body}
        )
        if self.tally.count(response.status_code, response.text, response.headers.get("retry-after"), what):
            self.tally.completed_calls += 1
            conversation = response.headers.get("x-conversation-id")
            if conversation:
                self.tally.chats.append((conversation, response.json()["choices"][0]["message"]["content"]))

    async def _ingest(self) -> None:
        async def ingest() -> None:
            tag = uuid.uuid4().hex[:10]
            upload = await self.http.post(
                "/v1/files",
                files={
                    "file": (
                        f"note-{tag}.txt",
                        f"Note {tag}: the load test wrote this at {time.time()}.".encode(),
                    )
                },
                data={"purpose": "assistants"},
            )
            if not self.tally.count(
                upload.status_code, upload.text, upload.headers.get("retry-after"), "upload"
            ):
                return
            file_id = upload.json()["id"]
            added = await self.http.post(
                f"/v1/vector_stores/{self.vector_store[0]}/files", json={"file_id": file_id}
            )
            if self.tally.count(added.status_code, added.text, added.headers.get("retry-after"), "add file"):
                self.tally.files.append((self.vector_store[0], file_id))

        await self._loop(ingest)

    async def _history(self) -> None:
        async def history() -> None:
            if not self.tally.chats:
                response = await self.http.get("/v1/conversations")
            else:
                conversation = self.tally.chats[len(self.tally.chats) // 2][0]
                response = await self.http.get(f"/v1/conversations/{conversation}")
            self.tally.count(
                response.status_code, response.text, response.headers.get("retry-after"), "history"
            )

        await self._loop(history)


async def records_lost(http: httpx.AsyncClient, tally: Tally, settle_s: float = 180) -> list[str]:
    """What succeeded but is gone: a stored answer missing from its conversation, an accepted file
    that did not end `completed` (waiting up to `settle_s` for the ingestion to catch up)."""
    lost = []
    for conversation, answer in tally.chats:
        response = await http.get(f"/v1/conversations/{conversation}")
        messages = response.json().get("messages", []) if response.status_code == 200 else []
        if not any(m["role"] == "assistant" and m["content"] == answer for m in messages):
            lost.append(
                f"conversation {conversation}: answer {answer!r} not in history ({response.status_code})"
            )
    deadline = time.monotonic() + settle_s
    pending = list(tally.files)
    while pending and time.monotonic() < deadline:
        still = []
        for store, file_id in pending:
            response = await http.get(f"/v1/vector_stores/{store}/files/{file_id}")
            status = (
                response.json().get("status")
                if response.status_code == 200
                else f"http {response.status_code}"
            )
            if status == "in_progress":
                still.append((store, file_id))
            elif status != "completed":
                why = (
                    response.json().get("last_error") if response.status_code == 200 else response.text[:200]
                )
                lost.append(f"file {file_id}: {status}: {why}")
        pending = still
        if pending:
            await asyncio.sleep(2)
    lost += [f"file {file_id}: still in_progress after {settle_s} s" for _, file_id in pending]
    return lost
