"""Two gateway replicas sharing PostgreSQL and Redis enforce one rate limit, one token limit and one
balance."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import openai
import psycopg
import pytest
import redis

from tests.conftest import MODEL_NAME, Gateway, ModelService, RetrievalService, start_gateway
from tests.utils.db import money, rows
from tests.utils.factories import Account, make_account
from tests.utils.minutes import wait_for_a_fresh_minute

DATABASE = "ragway_replicas"
REDIS_URL = "redis://127.0.0.1:6379/0"
HI = [{"role": "user", "content": "hi"}]


def fresh_database() -> str:
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{DATABASE}"


@pytest.fixture(scope="module")
def replicas(
    model_service: ModelService, retrieval_service: RetrievalService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Gateway]]:
    url = fresh_database()
    gateways: list[Gateway] = []
    try:
        for index in range(2):
            gateways.append(
                start_gateway(
                    f"gateway-replica-{index}",
                    tmp_path_factory.mktemp(f"replica-{index}"),
                    model_service.address,
                    retrieval_service.address,
                    database_url=url,
                    extra_env={"RAGWAY_REDIS_URL": REDIS_URL},
                )
            )
        yield gateways
    finally:
        for gateway in gateways:
            gateway.service.stop()


def on(gateway: Gateway, account: Account) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=account.key, max_retries=0)


def test_one_rpm_limit_across_two_gateways(replicas: list[Gateway]) -> None:
    first, second = replicas
    account = make_account(first.url, first.admin_key, rpm_limit=4)
    clients = [on(first, account), on(second, account)]
    time.sleep(wait_for_a_fresh_minute(30))
    for index in range(4):
        clients[index % 2].chat.completions.create(model=MODEL_NAME, messages=HI, max_tokens=1)
    for client in clients:
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(
                model=MODEL_NAME, messages=[{"role": "user", "content": "hi"}], max_tokens=1
            )


async def test_one_balance_across_two_gateways(replicas: list[Gateway]) -> None:
    first, second = replicas
    # Enough for about 5 worst-case requests (40 prompt tokens at 0.5, 20 completion at 1.5 per 1M).
    account = make_account(first.url, first.admin_key, credits=5 * (40 * 0.5 + 20 * 1.5) / 1e6)
    clients = [
        openai.AsyncOpenAI(base_url=f"{g.url}/v1", api_key=account.key, max_retries=0)
        for g in (first, second)
    ]

    async def one(index: int) -> bool:
        try:
            await clients[index % 2].chat.completions.create(
                model=MODEL_NAME, messages=[{"role": "user", "content": "Tell me a fact."}], max_tokens=20
            )
            return True
        except openai.RateLimitError:
            return False

    try:
        results = await asyncio.gather(*(one(i) for i in range(30)))
    finally:
        # Closed in this test's event loop: left to the garbage collector, their connections were
        # closed from the next test's loop, in the middle of its requests.
        for client in clients:
            await client.close()
    state = money(first.database_url, account.user_id)
    assert not all(results) and any(results)
    assert state["balance"] >= 0 and -state["ledger"] == state["billed"]
    assert state["records"] == sum(results)


async def test_fifty_concurrent_requests_stay_within_one_tpm_limit_across_two_gateways(
    replicas: list[Gateway],
) -> None:
    first, second = replicas
    max_tokens = 16
    probe = make_account(first.url, first.admin_key)
    prompt = on(first, probe).chat.completions.create(model=MODEL_NAME, messages=HI, max_tokens=1)  # type: ignore[arg-type]
    reservation = prompt.usage.prompt_tokens + max_tokens  # type: ignore[union-attr]
    limit = 5 * reservation + reservation // 2  # five requests' worst case fit at once, not six
    account = make_account(first.url, first.admin_key, tpm_limit=limit)
    await asyncio.sleep(wait_for_a_fresh_minute(40))
    window = int(time.time() // 60)
    outcomes: Counter[str] = Counter()
    unexpected: list[str] = []
    seconds: list[tuple[float, str]] = []  # how long each request took, and how it ended

    async def one(index: int) -> None:
        http = clients[index % 2]
        request_id = f"storm-{account.key_id}-{index}"
        started = time.monotonic()
        try:
            response = await http.post(
                "/v1/chat/completions",
                json={"model": MODEL_NAME, "messages": HI, "max_tokens": max_tokens, "temperature": 0},
                headers={"X-Request-Id": request_id},
            )
        except httpx.TimeoutException:
            # Say which gateway, after how long and what its log knows of the request, with the rest
            # of the storm's outcomes: a bare timeout tells the next person nothing.
            outcomes["timeout"] += 1
            logged = [line for line in replicas[index % 2].service.log().splitlines() if request_id in line]
            unexpected.append(
                f"no answer from {http.base_url} after {time.monotonic() - started:.0f} s; "
                f"its log on {request_id}: {logged or 'nothing (the request never reached it)'}"
            )
            return
        code = response.json().get("error", {}).get("code") if response.status_code != 200 else "ok"
        outcomes[f"{response.status_code} {code}"] += 1
        seconds.append((time.monotonic() - started, f"{response.status_code} {code} from {http.base_url}"))
        if response.status_code == 429 and code == "rate_limit_exceeded":
            if not 1 <= int(response.headers.get("retry-after", "0")) <= 60:
                unexpected.append(f"429 without a usable Retry-After: {response.headers}")
        elif response.status_code != 200:
            unexpected.append(f"{response.status_code} {response.text[:300]}")

    clients = [
        httpx.AsyncClient(base_url=g.url, headers=account.headers, timeout=120) for g in (first, second)
    ]
    try:
        await asyncio.gather(*(one(i) for i in range(50)))
    finally:
        for client in clients:
            await client.aclose()
    assert not unexpected, (unexpected[:5], outcomes)
    slowest = sorted(seconds, reverse=True)[:5]
    assert int(time.time() // 60) == window, f"the storm straddled two minutes; slowest {slowest}, {outcomes}"
    ok = outcomes["200 ok"]
    deadline = time.monotonic() + 30  # settlement runs detached from the response
    while True:
        records = _usage(first, account.key_id)
        if len(records) >= ok or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    used = sum(prompt_tokens + completion_tokens for prompt_tokens, completion_tokens in records)
    counted = int(redis.Redis.from_url(REDIS_URL).get(f"ragway:rl:{account.key_id}:tpm:{window}") or 0)
    assert len(records) == ok, "a request refused by its limit never reached the model"
    assert ok >= 5 and outcomes["429 rate_limit_exceeded"] > 0, outcomes
    assert used <= limit + reservation, f"{used} tokens under a limit of {limit} ({outcomes})"
    assert counted == used, "the shared counter holds the real count once every hold is settled"


def _usage(gateway: Gateway, key_id: str) -> list[tuple[int, int]]:
    return [
        (r[0], r[1])
        for r in rows(
            gateway.database_url,
            "SELECT prompt_tokens, completion_tokens FROM usage_records WHERE key_id = :k",
            k=key_id,
        )
    ]
