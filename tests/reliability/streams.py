"""A streaming chat client for the fault and drain tests: it records every SSE event, when the
first token came, and how the stream ended."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import MODEL_NAME


@dataclass
class StreamResult:
    status: int = 0
    started_at: float = 0.0
    headers_at: float = 0.0
    retry_after: str | None = None
    conversation_id: str | None = None
    events: list[Any] = field(default_factory=list)  # parsed JSON payloads, or "[DONE]"
    content: str = ""
    ended_at: float = 0.0
    error: str | None = None  # a transport error, if the connection broke instead of ending
    first_token: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1] == "[DONE]"

    @property
    def error_event(self) -> dict[str, Any] | None:
        last = self.events[-1] if self.events else None
        return last["error"] if isinstance(last, dict) and "error" in last else None


async def stream_chat(
    http: httpx.AsyncClient, prompt: str, max_tokens: int, result: StreamResult, **extra: Any
) -> StreamResult:
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": True,
        **extra,
    }
    result.started_at = time.monotonic()
    try:
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            result.headers_at = time.monotonic()
            result.status = response.status_code
            result.retry_after = response.headers.get("retry-after")
            result.conversation_id = response.headers.get("x-conversation-id")
            if response.status_code != 200:
                result.events.append(json.loads(await response.aread()))
                return result
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: ") :]
                payload: Any = data if data == "[DONE]" else json.loads(data)
                result.events.append(payload)
                if isinstance(payload, dict):
                    for choice in payload.get("choices", []):
                        text = choice.get("delta", {}).get("content")
                        if text:
                            result.content += text
                            result.first_token.set()
    except httpx.HTTPError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.ended_at = time.monotonic()
        result.first_token.set()  # never leave a waiter hanging
    return result
