"""Two gateway replicas sharing PostgreSQL and Redis enforce one rate limit and one balance."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import psycopg
import pytest

from tests.conftest import MODEL_NAME, Gateway, ModelService, RetrievalService, start_gateway
from tests.utils.db import money
from tests.utils.factories import Account, make_account

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

    results = await asyncio.gather(*(one(i) for i in range(30)))
    state = money(first.database_url, account.user_id)
    assert not all(results) and any(results)
    assert state["balance"] >= 0 and -state["ledger"] == state["billed"]
    assert state["records"] == sum(results)
