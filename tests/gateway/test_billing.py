"""Metering, credits, rate limits and key lifecycle, against real databases."""

from __future__ import annotations

import asyncio
import math
import time
import uuid

import httpx
import openai
import pytest

from tests.conftest import MODEL_NAME, Gateway, ModelService
from tests.utils.db import money, rows
from tests.utils.factories import make_account
from tests.utils.metrics import metric
from tests.utils.minutes import wait_for_a_fresh_minute

# Default price: 0.5 credits per 1M prompt tokens, 1.5 per 1M completion tokens (micro-credits per token).
PROMPT_PRICE, COMPLETION_PRICE = 0.5, 1.5


def worst_case_credits(prompt_tokens: int, max_tokens: int) -> float:
    return (prompt_tokens * PROMPT_PRICE + max_tokens * COMPLETION_PRICE) / 1e6


async def test_concurrent_requests_never_overdraw(any_gateway: Gateway) -> None:
    # Credits for 5 worst-case requests; 30 arrive at once.
    account = make_account(any_gateway.url, any_gateway.admin_key, credits=worst_case_credits(40, 20) * 5)
    client = account.async_openai()

    async def one() -> str:
        try:
            await client.chat.completions.create(
                model=MODEL_NAME, messages=[{"role": "user", "content": "Tell me a fact."}], max_tokens=20
            )
            return "ok"
        except openai.RateLimitError as exc:
            assert exc.body["code"] == "insufficient_quota"  # type: ignore[index]
            return "refused"

    outcomes = await asyncio.gather(*(one() for _ in range(30)))
    assert outcomes.count("refused") > 0 and outcomes.count("ok") >= 5
    state = money(any_gateway.database_url, account.user_id)
    assert state["balance"] >= 0
    assert -state["ledger"] == state["billed"], "the ledger must explain every billed credit"
    assert state["topups"] + state["ledger"] == state["balance"]
    assert state["records"] == outcomes.count("ok")


def test_every_request_writes_one_usage_record(gateway: Gateway) -> None:
    account = make_account(gateway.url, gateway.admin_key)
    reply = account.openai().chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=5
    )
    records = rows(
        gateway.database_url,
        "SELECT prompt_tokens, completion_tokens, status, cost FROM usage_records WHERE request_id = :r",
        r=reply.id,
    )
    assert len(records) == 1
    prompt, completion, status, cost = records[0]
    assert (prompt, completion, status) == (reply.usage.prompt_tokens, reply.usage.completion_tokens, "ok")
    assert cost == math.ceil(prompt * PROMPT_PRICE + completion * COMPLETION_PRICE)
    usage = account.http().get("/v1/usage").json()
    assert usage["data"][0]["requests"] == 1 and usage["data"][0]["completion_tokens"] == completion


async def test_dropped_stream_is_billed_for_partial_tokens_and_aborted(
    gateway: Gateway, model_service: ModelService
) -> None:
    account = make_account(gateway.url, gateway.admin_key)
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "Write a very long story about a lighthouse."}],
        "max_tokens": 1000,
        "ignore_eos": True,  # forced long: still writing after the fifth chunk, on any machine
        "stream": True,
        "store": True,
    }
    chunk_count = 0
    async with httpx.AsyncClient(base_url=gateway.url, headers=account.headers, timeout=60) as http:
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                    chunk_count += 1
                    if chunk_count >= 5:
                        break
    deadline = time.monotonic() + 2
    while metric(model_service.metrics_url, "ragway_model_engine_unfinished_requests") > 0:
        assert time.monotonic() < deadline, "the engine kept generating after the client left"
        await asyncio.sleep(0.05)
    for _ in range(50):
        records = rows(
            gateway.database_url,
            "SELECT completion_tokens, status FROM usage_records WHERE user_id = :u",
            u=account.user_id,
        )
        if records:
            break
        await asyncio.sleep(0.1)
    assert len(records) == 1
    completion_tokens, status = records[0]
    assert status == "aborted" and 5 <= completion_tokens < 1000
    conversation = account.http().get("/v1/conversations").json()["data"][0]
    last = account.http().get(f"/v1/conversations/{conversation['id']}").json()["messages"][-1]
    assert last["status"] == "aborted" and last["content"]


async def test_dropped_non_streaming_request_aborts_in_the_engine_and_is_billed(
    gateway: Gateway, model_service: ModelService
) -> None:
    account = make_account(gateway.url, gateway.admin_key)
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "Write a very long story about a lighthouse."}],
        "max_tokens": 1000,
        "ignore_eos": True,  # forced long: still writing when the client leaves, on any machine
    }
    first_tokens = metric(model_service.metrics_url, "ragway_model_ttft_seconds_count")
    async with httpx.AsyncClient(base_url=gateway.url, headers=account.headers, timeout=120) as http:
        request = asyncio.create_task(http.post("/v1/chat/completions", json=body))
        # Leave once the engine has written this answer's first token (not after a guessed time).
        while metric(model_service.metrics_url, "ragway_model_ttft_seconds_count") == first_tokens:
            assert not request.done(), request.result().text
            await asyncio.sleep(0.05)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    # The client hung up: within 2 s nothing of it runs in the engine any more.
    deadline = time.monotonic() + 2
    while metric(model_service.metrics_url, "ragway_model_engine_unfinished_requests") > 0:
        assert time.monotonic() < deadline, "the engine kept generating after the client left"
        await asyncio.sleep(0.05)
    for _ in range(50):
        records = rows(
            gateway.database_url,
            "SELECT completion_tokens, status FROM usage_records WHERE user_id = :u",
            u=account.user_id,
        )
        if records:
            break
        await asyncio.sleep(0.1)
    [(completion_tokens, status)] = records
    assert status == "aborted" and 0 < completion_tokens < 1000, "billed for the tokens it generated"


def test_rpm_limit_is_rate_limit_error_with_retry_after(gateway: Gateway) -> None:
    account = make_account(gateway.url, gateway.admin_key, rpm_limit=2)
    client = account.openai()
    time.sleep(wait_for_a_fresh_minute(20))
    for _ in range(2):
        client.chat.completions.create(
            model=MODEL_NAME, messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(
            model=MODEL_NAME, messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    assert 1 <= int(info.value.response.headers["retry-after"]) <= 60
    assert info.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]


def test_budget_per_key_is_enforced(gateway: Gateway) -> None:
    account = make_account(
        gateway.url, gateway.admin_key, budget=worst_case_credits(40, 10) * 1.5, budget_period="day"
    )
    client = account.openai()
    client.chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "hi"}], max_tokens=10
    )
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(
            model=MODEL_NAME, messages=[{"role": "user", "content": "hi"}], max_tokens=400
        )
    assert "budget" in info.value.message


def test_top_up_is_idempotent(any_gateway: Gateway) -> None:
    account = make_account(any_gateway.url, any_gateway.admin_key, credits=1)
    admin = {"Authorization": f"Bearer {any_gateway.admin_key}", "Idempotency-Key": uuid.uuid4().hex}
    url = f"{any_gateway.url}/v1/admin/users/{account.user_id}/credits"
    first = httpx.post(url, json={"amount": 2.5}, headers=admin).json()
    again = httpx.post(url, json={"amount": 2.5}, headers=admin).json()
    assert first == again and first["balance"] == 3.5
    assert account.http().get("/v1/me").json()["credits"] == 3.5


def test_revoked_and_expired_keys_are_rejected(gateway: Gateway) -> None:
    admin = {"Authorization": f"Bearer {gateway.admin_key}"}
    revoked = make_account(gateway.url, gateway.admin_key)
    assert (
        httpx.delete(f"{gateway.url}/v1/admin/keys/{revoked.key_id}", headers=admin).json()["revoked"] is True
    )
    expired = make_account(gateway.url, gateway.admin_key, expires_at=int(time.time()) - 1)
    for account in (revoked, expired):
        with pytest.raises(openai.AuthenticationError):
            account.openai().models.list()


def test_keys_are_listed_without_the_secret(gateway: Gateway) -> None:
    account = make_account(gateway.url, gateway.admin_key)
    listed = httpx.get(
        f"{gateway.url}/v1/admin/keys",
        params={"user_id": account.user_id},
        headers={"Authorization": f"Bearer {gateway.admin_key}"},
    ).json()["data"]
    assert len(listed) == 1
    shown = listed[0]["display"]
    assert shown.startswith("rgw_") and shown.endswith(account.key[-4:]) and account.key not in str(listed)
    stored = rows(gateway.database_url, "SELECT hash FROM api_keys WHERE id = :k", k=account.key_id)[0][0]
    assert account.key not in stored


def test_user_key_on_admin_routes_is_forbidden(gateway: Gateway) -> None:
    account = make_account(gateway.url, gateway.admin_key)
    with pytest.raises(openai.PermissionDeniedError):
        account.openai().get("/admin/users", cast_to=object)
