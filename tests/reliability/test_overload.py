"""Overload: more concurrent requests than the model service admits (16 running + 16 waiting).

The excess must be refused at once — 429/503 with Retry-After, before any stream starts — rather
than queue into a timeout; the admitted requests must finish; memory must stay bounded.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter

import httpx
import pytest

from tests.conftest import MODEL_MAX_RUNNING, MODEL_MAX_WAITING, Gateway, ModelService
from tests.reliability.conftest import Figures, rss_bytes
from tests.reliability.streams import StreamResult, stream_chat
from tests.utils.factories import make_account

pytestmark = pytest.mark.faults  # make test-faults

CAPACITY = MODEL_MAX_RUNNING + MODEL_MAX_WAITING
WAVE = CAPACITY + 24
MAX_TOKENS = 48
REFUSED_WITHIN = 5.0  # seconds from sending to the refusal, on a 2-core machine that may be shared


async def _wave(gateway: Gateway, key_headers: dict[str, str], stream: bool) -> list[StreamResult]:
    results = [StreamResult() for _ in range(WAVE)]
    limits = httpx.Limits(max_connections=WAVE + 8, max_keepalive_connections=WAVE + 8)
    async with httpx.AsyncClient(
        base_url=gateway.url, headers=key_headers, timeout=300, limits=limits
    ) as http:
        if stream:
            await asyncio.gather(
                *(
                    stream_chat(http, f"Tell me about city number {i}.", MAX_TOKENS, r)
                    for i, r in enumerate(results)
                )
            )
        else:

            async def one(i: int, r: StreamResult) -> None:
                r.started_at = time.monotonic()
                response = await http.post(
                    "/v1/chat/completions",
                    json={
                        "model": "SmolLM2-135M-Instruct",
                        "messages": [{"role": "user", "content": f"Tell me about city number {i}."}],
                        "max_tokens": MAX_TOKENS,
                    },
                )
                r.headers_at = r.ended_at = time.monotonic()
                r.status, r.retry_after = response.status_code, response.headers.get("retry-after")
                r.events.append(response.json())
                if response.status_code == 200:
                    r.events.append("[DONE]")

            await asyncio.gather(*(one(i, r) for i, r in enumerate(results)))
    return results


def _check(results: list[StreamResult], label: str) -> tuple[Counter[str], float, float]:
    outcomes: Counter[str] = Counter()
    slowest_refusal = 0.0
    admitted: list[float] = []
    for r in results:
        if r.status == 200:
            assert r.done, f"{label}: an admitted request did not finish: {r.events[-1:]} {r.error}"
            outcomes["finished"] += 1
            admitted.append(r.ended_at - r.started_at)
            continue
        assert r.status in (429, 503), f"{label}: {r.status} {r.events[-1:]}"
        assert r.retry_after is not None and int(r.retry_after) >= 1, f"{label}: no Retry-After"
        error = r.events[-1]["error"]
        assert error["message"] and error["code"]
        seconds = r.headers_at - r.started_at
        slowest_refusal = max(slowest_refusal, seconds)
        assert seconds < REFUSED_WITHIN, f"{label}: refused only after {seconds:.1f} s"
        outcomes[f"{r.status} {error['code']}"] += 1
    assert outcomes["finished"] >= MODEL_MAX_RUNNING, f"{label}: {outcomes}"
    assert sum(n for k, n in outcomes.items() if k != "finished") > 0, f"{label}: nothing was refused"
    # Refused on arrival, not after queueing: faster than the typical admitted request runs.
    median_admitted = statistics.median(admitted)
    assert slowest_refusal < median_admitted, f"{label}: {slowest_refusal:.1f} s vs {median_admitted:.1f} s"
    return outcomes, slowest_refusal, median_admitted


async def test_excess_requests_are_refused_at_once_with_retry_after(
    gateway: Gateway, model_service: ModelService, figures: Figures
) -> None:
    account = make_account(gateway.url, gateway.admin_key, credits=1000)
    gateway_rss = [rss_bytes(gateway.service.process.pid)]
    model_rss = [rss_bytes(model_service.service.process.pid)]
    lines = []
    for stream in (True, False):
        label = "streaming" if stream else "non-streaming"
        started = time.monotonic()
        outcomes, slowest, median = _check(await _wave(gateway, account.headers, stream), label)
        gateway_rss.append(rss_bytes(gateway.service.process.pid))
        model_rss.append(rss_bytes(model_service.service.process.pid))
        lines.append(
            f"{label} wave of {WAVE} (capacity {CAPACITY}): {dict(outcomes)} "
            f"in {time.monotonic() - started:.1f} s; slowest refusal {slowest * 1000:.0f} ms, "
            f"median admitted request {median:.1f} s"
        )
    mib = [f"{b / 2**20:.0f}" for b in gateway_rss], [f"{b / 2**20:.0f}" for b in model_rss]
    figures.add("overload", "; ".join(lines))
    figures.add("overload", f"RSS MiB before/after each wave: gateway {mib[0]}, model service {mib[1]}")
    # Bounded: the second wave leaves memory where the first one did (no growth per wave).
    assert gateway_rss[-1] <= gateway_rss[1] * 1.10 + 20 * 2**20
    assert model_rss[-1] <= model_rss[1] * 1.10 + 50 * 2**20
