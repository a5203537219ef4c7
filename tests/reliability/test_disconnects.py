"""Clients that walk away: 50 streams dropped at random points, in rounds of 10 at once.

Each dropped stream must still be billed — one usage record with the tokens generated before the
drop — and the engine must stop working for it at once: its unfinished-request count is back to 0
within 2 s of the last drop of every round.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

import httpx

from tests.conftest import MODEL_NAME, Gateway, ModelService
from tests.reliability.conftest import Figures
from tests.utils.db import rows
from tests.utils.factories import make_account
from tests.utils.metrics import metric

ROUNDS, PER_ROUND = 5, 10
MAX_TOKENS = 400
UNFINISHED = "ragway_model_engine_unfinished_requests"


async def _drop_after(http: httpx.AsyncClient, point: int, prompt: str) -> tuple[str, int, bool]:
    """Stream, and close the connection after `point` content chunks; (id, chunks seen, finished)."""
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS,
        "stream": True,
    }
    gen_id, chunks = "", 0
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                return gen_id, chunks, True
            payload = json.loads(line[len("data: ") :])
            gen_id = payload["id"]
            if any(c.get("delta", {}).get("content") for c in payload.get("choices", [])):
                chunks += 1
            if chunks >= point:
                break
    return gen_id, chunks, False


async def test_fifty_dropped_streams_are_billed_and_aborted_at_once(
    gateway: Gateway, model_service: ModelService, figures: Figures
) -> None:
    account = make_account(gateway.url, gateway.admin_key)
    rng = random.Random(20240608)
    seen: dict[str, int] = {}
    finished: set[str] = set()
    settle_times: list[float] = []
    async with httpx.AsyncClient(base_url=gateway.url, headers=account.headers, timeout=120) as http:
        for round_ in range(ROUNDS):
            points = [rng.randint(0, 25) for _ in range(PER_ROUND)]
            prompts = [
                f"Write a very long story about lighthouse number {round_ * PER_ROUND + i}."
                for i in range(10)
            ]
            results = await asyncio.gather(
                *(_drop_after(http, p, q) for p, q in zip(points, prompts, strict=True))
            )
            last_drop = time.monotonic()
            for gen_id, chunks, done in results:
                seen[gen_id] = chunks
                if done:
                    finished.add(gen_id)
            while metric(model_service.metrics_url, UNFINISHED) > 0:
                assert time.monotonic() - last_drop < 2.0, (
                    f"round {round_}: the engine still runs requests 2 s after the clients left"
                )
                await asyncio.sleep(0.02)
            settle_times.append(time.monotonic() - last_drop)

    deadline = time.monotonic() + 15
    while True:
        records = rows(
            gateway.database_url,
            "SELECT request_id, prompt_tokens, completion_tokens, status FROM usage_records "
            "WHERE user_id = :u",
            u=account.user_id,
        )
        if len(records) >= len(seen) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    by_id = {r[0]: r for r in records}
    assert len(seen) == ROUNDS * PER_ROUND
    assert len(records) == len(seen), "one usage record per dropped stream"
    for gen_id, chunks in seen.items():
        _, prompt_tokens, completion_tokens, status = by_id[gen_id]
        assert prompt_tokens > 0
        if gen_id in finished:
            assert status == "ok"
            continue
        assert status == "aborted", (gen_id, status)
        assert chunks <= completion_tokens < MAX_TOKENS, (gen_id, chunks, completion_tokens)
    billed = [by_id[g][2] for g in seen]
    figures.add(
        "disconnects",
        f"{len(seen)} streams dropped after 0-25 chunks ({len(finished)} finished first): "
        f"{len(records)} usage records, completion tokens billed min/median/max "
        f"{min(billed)}/{sorted(billed)[len(billed) // 2]}/{max(billed)}; engine idle again "
        f"{max(settle_times) * 1000:.0f} ms at worst after a round's last drop",
    )
