"""Faults of the services behind the gateway, on the suite's own model and retrieval services.

In order: the retrieval service stops (RAG is 503, plain chat unaffected) and comes back on the
same data with every vector; the model service is killed with SIGKILL under 16 streams and
restarted; and finally the model service gets SIGTERM under 8 streams and drains them (the drain
of the model service lives here, last, so the suite starts its own engine only twice).
"""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest

from tests.conftest import MODEL_NAME, Gateway
from tests.reliability.conftest import MODEL_DRAIN_SECONDS, Figures, OwnModel, OwnRetrieval, kill_hard
from tests.reliability.streams import StreamResult, stream_chat
from tests.utils.db import rows
from tests.utils.factories import make_account

pytestmark = pytest.mark.faults  # make test-faults

READY_AFTER_RESTART = 60.0
DOCS = 12


def _readyz(url: str) -> httpx.Response | None:
    try:
        return httpx.get(f"{url}/readyz", timeout=5)
    except httpx.HTTPError:
        return None


async def _wait_ready(url: str, ready: bool, timeout: float, check: str = "model") -> float:
    """Seconds until /readyz reports `check` as `ready`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        response = _readyz(url)
        if response is not None and response.json()["checks"][check] is ready:
            if check == "model":
                assert (response.status_code == 200) is ready
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    raise AssertionError(f"/readyz did not report {check}={ready} within {timeout} s")


async def test_retrieval_stopped_is_503_for_rag_only_and_restarts_with_every_vector(
    own_model: OwnModel, own_retrieval: OwnRetrieval, own_gateway: Gateway, figures: Figures
) -> None:
    own_model.ensure_running()
    own_retrieval.ensure_running()
    account = make_account(own_gateway.url, own_gateway.admin_key)
    with account.http() as http:
        assert http.post("/v1/collections", json={"name": "kb"}).status_code == 201
        docs = [
            {"id": f"doc-{i}", "text": f"Fact {i}: the secret word of document {i} is zebra{i}x{i * 7}."}
            for i in range(DOCS)
        ]
        assert http.post("/v1/collections/kb/documents", json={"documents": docs}).status_code == 200
        before = http.get("/v1/collections/kb").json()
        assert before["document_count"] == DOCS and before["vector_count"] >= DOCS

        own_retrieval.stop()
        rag = http.post(
            "/v1/chat/completions",
            json={
                "model": MODEL_NAME,
                "messages": [{"role": "user", "content": "What is the secret word of document 3?"}],
                "max_tokens": 5,
                "rag": {"collections": ["kb"]},
            },
        )
        assert rag.status_code == 503, rag.text
        assert "retrieval service" in rag.json()["error"]["message"]
        search = http.post("/v1/collections/kb/search", json={"query": "zebra"})
        assert search.status_code == 503 and search.json()["error"]["code"]
        plain = http.post(
            "/v1/chat/completions",
            json={"model": MODEL_NAME, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 5},
        )
        assert plain.status_code == 200, plain.text
        assert _readyz(own_gateway.url).status_code == 200, "retrieval is not needed to be ready"  # type: ignore[union-attr]

        restarted = time.monotonic()
        own_retrieval.start()
        await _wait_ready(own_gateway.url, True, 60, check="retrieval")
        back = time.monotonic() - restarted
        after = http.get("/v1/collections/kb").json()
        assert (after["document_count"], after["vector_count"]) == (
            before["document_count"],
            before["vector_count"],
        )
        for i in range(DOCS):
            hits = http.post(
                "/v1/collections/kb/search", json={"query": f"zebra{i}x{i * 7}", "top_k": 1}
            ).json()
            assert hits["data"][0]["document_id"] == f"doc-{i}"
    figures.add(
        "faults",
        f"retrieval stopped: RAG 503, search 503, plain chat 200; restarted and reachable in {back:.1f} s "
        f"with {after['vector_count']}/{before['vector_count']} vectors of {DOCS} documents, all searchable",
    )


async def test_model_service_killed_under_16_streams(
    own_model: OwnModel, own_gateway: Gateway, figures: Figures
) -> None:
    own_model.ensure_running()
    await _wait_ready(own_gateway.url, True, 60)
    account = make_account(own_gateway.url, own_gateway.admin_key)
    results = [StreamResult() for _ in range(16)]
    async with httpx.AsyncClient(
        base_url=own_gateway.url, headers=account.headers, timeout=httpx.Timeout(120, connect=10)
    ) as http:
        tasks = [
            asyncio.create_task(
                stream_chat(  # ignore_eos: every stream is still writing when the model dies
                    http,
                    f"Write a very long story about the planet number {i}.",
                    1000,
                    r,
                    store=True,
                    ignore_eos=True,
                )
            )
            for i, r in enumerate(results)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.first_token.wait() for r in results)), 120)
        assert all(r.content for r in results), "every stream got tokens before the kill"
        killed = time.monotonic()
        kill_hard(own_model.service)  # type: ignore[arg-type]
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        not_ready_after = await _wait_ready(own_gateway.url, False, 30)
    ends = [r.ended_at - killed for r in results]
    for r in results:
        assert r.status == 200 and r.error is None, r.error
        assert not r.done, "a killed stream must not claim it finished"
        error = r.error_event
        assert error is not None, f"the stream ended without an error event: {r.events[-2:]}"
        assert error["type"] == "server_error" and error["message"] and "model service" in error["message"]
        assert r.conversation_id
    # History keeps every partial answer, marked failed; billing has one failed record each.
    with account.http() as http:
        for r in results:
            last = http.get(f"/v1/conversations/{r.conversation_id}").json()["messages"][-1]
            assert last["role"] == "assistant" and last["status"] == "failed"
            common = min(len(last["content"]), len(r.content))
            assert common and last["content"][:common] == r.content[:common]
    statuses = rows(
        own_gateway.database_url,
        "SELECT status, COUNT(*) FROM usage_records WHERE user_id = :u GROUP BY status",
        u=account.user_id,
    )
    assert dict((s, n) for s, n in statuses) == {"failed": 16}

    restarted = time.monotonic()
    own_model.start()
    own_model.wait_serving()
    serving_after = time.monotonic() - restarted
    ready_after_serving = await _wait_ready(own_gateway.url, True, READY_AFTER_RESTART)
    with account.http() as http:
        again = http.post(
            "/v1/chat/completions",
            json={"model": MODEL_NAME, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 3},
        )
        assert again.status_code == 200, again.text
    figures.add(
        "faults",
        f"model SIGKILLed under 16 streams: all 16 ended with an SSE error event within "
        f"{max(ends):.2f} s (no hang), history 16 partial answers marked failed, 16 failed usage records; "
        f"/readyz not ready {not_ready_after:.1f} s after the kill; the restarted engine served after "
        f"{serving_after:.0f} s and /readyz was ready {ready_after_serving:.1f} s later",
    )


async def test_sigterm_to_the_model_service_drains_8_streams(
    own_model: OwnModel, own_gateway: Gateway, figures: Figures
) -> None:
    own_model.ensure_running()
    await _wait_ready(own_gateway.url, True, 60)
    account = make_account(own_gateway.url, own_gateway.admin_key)
    results = [StreamResult() for _ in range(8)]
    refused: list[tuple[int, float, str | None]] = []
    async with httpx.AsyncClient(base_url=own_gateway.url, headers=account.headers, timeout=120) as http:
        tasks = [
            asyncio.create_task(stream_chat(http, f"Count from {i} to {i + 20}.", 24, r, temperature=0))
            for i, r in enumerate(results)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.first_token.wait() for r in results)), 120)
        service = own_model.service
        assert service is not None
        signalled = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        while not all(t.done() for t in tasks) and len(refused) < 5:
            asked = time.monotonic()
            late = await http.post(
                "/v1/chat/completions",
                json={"model": MODEL_NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
            )
            refused.append((late.status_code, time.monotonic() - asked, late.headers.get("retry-after")))
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    exit_code = await asyncio.to_thread(service.process.wait, 30)
    exited = time.monotonic() - signalled
    for r in results:
        assert r.done, f"a stream was cut by the drain: {r.events[-2:]} {r.error}"
    assert refused, "no request was tried during the drain"
    assert all(status == 503 and seconds < 2 for status, seconds, _ in refused), refused
    assert exited <= MODEL_DRAIN_SECONDS + 5, f"the model service took {exited:.1f} s to exit"
    figures.add(
        "drain",
        f"model SIGTERM under 8 streams: 8/8 finished; {len(refused)} new requests refused with "
        f"{sorted({s for s, _, _ in refused})} in <= {max(s for _, s, _ in refused) * 1000:.0f} ms; "
        f"exited (code {exit_code}) {exited:.1f} s after the signal",
    )
