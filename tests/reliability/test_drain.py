"""SIGTERM to the gateway during 8 streams: they all finish, new requests are refused meanwhile
(503 with Retry-After while the streams run, so a client or load balancer knows to retry elsewhere;
a refused connection once the gateway has closed), and the process exits within its grace period.
(The model service's drain is the last test of test_faults.py, on the suite's own engine.)"""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest

from tests.conftest import MODEL_NAME, ModelService, RetrievalService, start_gateway
from tests.reliability.conftest import Figures
from tests.reliability.streams import StreamResult, stream_chat
from tests.utils.factories import make_account

pytestmark = pytest.mark.faults  # make test-faults

GRACE_SECONDS = 30  # generous: the 2-core machine may be shared with other test runs


async def test_sigterm_to_the_gateway_drains_8_streams(
    model_service: ModelService,
    retrieval_service: RetrievalService,
    tmp_path_factory: pytest.TempPathFactory,
    figures: Figures,
) -> None:
    gw = start_gateway(
        "rel-gateway-drain",
        tmp_path_factory.mktemp("rel-drain"),
        model_service.address,
        retrieval_service.address,
        extra_env={"RAGWAY_DRAIN_SECONDS": str(GRACE_SECONDS)},
    )
    try:
        account = make_account(gw.url, gw.admin_key)
        results = [StreamResult() for _ in range(8)]
        refused: list[str] = []
        retry_after: list[str | None] = []
        async with httpx.AsyncClient(base_url=gw.url, headers=account.headers, timeout=60) as http:
            tasks = [
                asyncio.create_task(stream_chat(http, f"Count from {i} to {i + 20}.", 24, r, temperature=0))
                for i, r in enumerate(results)
            ]
            await asyncio.wait_for(asyncio.gather(*(r.first_token.wait() for r in results)), 120)
            signalled = time.monotonic()
            gw.service.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            while not all(t.done() for t in tasks):
                # A new connection, as a new client (or a load balancer's retry) would open.
                try:
                    async with httpx.AsyncClient(
                        base_url=gw.url, headers=account.headers, timeout=5
                    ) as fresh:
                        late = await fresh.post(
                            "/v1/chat/completions",
                            json={"model": MODEL_NAME, "messages": [{"role": "user", "content": "hi"}]},
                        )
                    refused.append(str(late.status_code))
                    if late.status_code == 503:
                        retry_after.append(late.headers.get("retry-after"))
                except httpx.ConnectError:
                    refused.append("connection refused")
                await asyncio.sleep(0.2)
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
        exit_code = await asyncio.to_thread(gw.service.process.wait, GRACE_SECONDS + 20)
        exited = time.monotonic() - signalled
    finally:
        gw.service.stop()
    for r in results:
        assert r.done, f"a stream was cut by the drain: {r.events[-2:]} {r.error}"
    assert refused and all(outcome in ("connection refused", "503") for outcome in refused), refused
    assert "503" in refused, "the gateway keeps answering while its streams drain"
    assert all(value is not None and int(value) >= 1 for value in retry_after), retry_after
    assert exited <= GRACE_SECONDS + 3, f"the gateway took {exited:.1f} s to exit"
    figures.add(
        "drain",
        f"gateway SIGTERM under 8 streams: 8/8 finished with [DONE]; {len(refused)} new requests meanwhile: "
        f"{sorted(set(refused))}; exited (code {exit_code}) {exited:.1f} s after the signal "
        f"(grace {GRACE_SECONDS} s)",
    )
