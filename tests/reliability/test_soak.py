"""Soak (`make test-load`): steady mixed load for RAGWAY_SOAK_SECONDS (default 600) — chat, RAG
chat, history reads and ingestion from a small asyncio driver — with its figures: requests,
errors by status, p50/p95 latency and time to first token, and the memory of every service at the
start and the end (no growth beyond 10%)."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections import Counter, defaultdict

import httpx
import pytest

from tests.conftest import MODEL_NAME, Gateway, ModelService, RetrievalService
from tests.reliability.conftest import Figures, rss_bytes, soak_seconds
from tests.utils.factories import make_account

pytestmark = pytest.mark.load

TOPICS = ["lighthouses", "volcanoes", "bees", "glaciers", "trains", "tea", "owls", "bridges"]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


class Driver:
    def __init__(self, http: httpx.AsyncClient, until: float) -> None:
        self.http, self.until = http, until
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.ttft: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.errors: list[str] = []
        self.conversations: list[str] = []
        self.rng = random.Random(7)

    def _record(self, kind: str, status: int, seconds: float, text: str = "") -> None:
        self.statuses[f"{kind} {status}"] += 1
        self.latency[kind].append(seconds)
        if status >= 400:
            self.errors.append(f"{kind} {status} {text[:200]}")

    async def _stream(self, kind: str, body: dict[str, object]) -> None:
        started = time.monotonic()
        first: float | None = None
        async with self.http.stream(
            "POST", "/v1/chat/completions", json={**body, "stream": True, "store": True}
        ) as response:
            if response.status_code != 200:
                self._record(
                    kind, response.status_code, time.monotonic() - started, (await response.aread()).decode()
                )
                return
            conversation = response.headers.get("x-conversation-id")
            async for line in response.aiter_lines():
                if first is None and '"content":"' in line and '"content":""' not in line:
                    first = time.monotonic() - started
                if line.startswith('data: {"error"'):
                    self._record(kind, 599, time.monotonic() - started, line)
                    return
        if first is not None:
            self.ttft.append(first)
        if conversation and len(self.conversations) < 200:
            self.conversations.append(conversation)
        self._record(kind, 200, time.monotonic() - started)

    async def chat(self) -> None:
        while time.monotonic() < self.until:
            topic = self.rng.choice(TOPICS)
            await self._stream(
                "chat",
                {
                    "model": MODEL_NAME,
                    "messages": [{"role": "user", "content": f"One fact about {topic}."}],
                    "max_tokens": 32,
                },
            )

    async def rag_chat(self) -> None:
        while time.monotonic() < self.until:
            topic = self.rng.choice(TOPICS)
            await self._stream(
                "rag",
                {
                    "model": MODEL_NAME,
                    "messages": [{"role": "user", "content": f"What do the notes say about {topic}?"}],
                    "max_tokens": 32,
                    "rag": {"collections": ["notes"], "top_k": 3},
                },
            )

    async def history(self) -> None:
        while time.monotonic() < self.until:
            started = time.monotonic()
            listing = await self.http.get("/v1/conversations", params={"limit": 20})
            self._record("history", listing.status_code, time.monotonic() - started, listing.text)
            if self.conversations:
                started = time.monotonic()
                one = await self.http.get(f"/v1/conversations/{self.rng.choice(self.conversations)}")
                self._record("history", one.status_code, time.monotonic() - started, one.text)
            await asyncio.sleep(0.5)

    async def ingest(self) -> None:
        n = 0
        while time.monotonic() < self.until:
            # Rotating ids: documents are replaced, so the stored data stays the same size.
            topic = TOPICS[n % len(TOPICS)]
            text = " ".join(f"Note {n}: {topic} are remarkable, fact number {i}." for i in range(40))
            started = time.monotonic()
            response = await self.http.post(
                "/v1/collections/notes/documents",
                json={"documents": [{"id": f"note-{n % 16}", "text": text, "metadata": {"topic": topic}}]},
            )
            self._record("ingest", response.status_code, time.monotonic() - started, response.text)
            n += 1
            await asyncio.sleep(1.0)


async def test_soak_mixed_load(
    gateway: Gateway, model_service: ModelService, retrieval_service: RetrievalService, figures: Figures
) -> None:
    duration = soak_seconds()
    account = make_account(gateway.url, gateway.admin_key, credits=10_000)
    services = {
        "gateway": gateway.service,
        "model": model_service.service,
        "retrieval": retrieval_service.service,
    }
    async with httpx.AsyncClient(base_url=gateway.url, headers=account.headers, timeout=120) as http:
        assert (await http.post("/v1/collections", json={"name": "notes"})).status_code == 201
        warmup = min(30.0, duration / 5)
        driver = Driver(http, time.monotonic() + warmup)
        await asyncio.gather(driver.chat(), driver.rag_chat(), driver.history(), driver.ingest())
        rss_start = {name: rss_bytes(s.process.pid) for name, s in services.items()}
        driver = Driver(http, time.monotonic() + duration)
        started = time.monotonic()
        await asyncio.gather(
            driver.chat(), driver.chat(), driver.rag_chat(), driver.history(), driver.ingest()
        )
        elapsed = time.monotonic() - started
    rss_end = {name: rss_bytes(s.process.pid) for name, s in services.items()}
    total = sum(driver.statuses.values())
    errors = Counter(k for k in driver.statuses.elements() if not k.endswith(" 200"))
    figures.add(
        "soak", f"{total} requests in {elapsed:.0f} s ({total / elapsed:.1f}/s): {dict(driver.statuses)}"
    )
    figures.add("soak", f"errors by status: {dict(errors) or 'none'}")
    for kind, values in sorted(driver.latency.items()):
        figures.add(
            "soak",
            f"{kind}: p50 {_pct(values, 50) * 1000:.0f} ms, p95 {_pct(values, 95) * 1000:.0f} ms "
            f"(n={len(values)})",
        )
    figures.add(
        "soak", f"TTFT: p50 {_pct(driver.ttft, 50) * 1000:.0f} ms, p95 {_pct(driver.ttft, 95) * 1000:.0f} ms"
    )
    for name in services:
        figures.add(
            "soak",
            f"RSS {name}: {rss_start[name] / 2**20:.0f} MiB -> {rss_end[name] / 2**20:.0f} MiB "
            f"({(rss_end[name] / rss_start[name] - 1) * 100:+.1f}%)",
        )
    assert not driver.errors, json.dumps(driver.errors[:10], indent=1)
    for name in services:
        assert rss_end[name] <= rss_start[name] * 1.10, (
            f"{name} grew from {rss_start[name]} to {rss_end[name]}"
        )
