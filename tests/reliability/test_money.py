"""Money under concurrency: 100 requests at once against credits for 10 — and against a key's
budget for 10 — on SQLite, on PostgreSQL, and split over two gateway processes sharing one database.

The balance must never dip below zero and a key's period spend never pass its budget (sampled from
the database throughout), the ledger must explain every billed credit, and every request that got
past its reservation has exactly one usage record.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import MODEL_NAME, POSTGRES_URL, Gateway, ModelService, RetrievalService, start_gateway
from tests.reliability.conftest import Figures
from tests.utils.db import money, rows
from tests.utils.factories import make_account

PROMPT_PRICE, COMPLETION_PRICE = 0.5, 1.5  # micro-credits per token (the default prices)
MAX_TOKENS = 8
REQUESTS = 100
AFFORDABLE = 10
QUESTION = [{"role": "user", "content": "Name a colour."}]


@dataclass
class Setup:
    name: str
    urls: list[str]
    admin_key: str
    database_url: str


@pytest.fixture(scope="module")
def second_gateways(
    gateway: Gateway,
    gateway_pg: Gateway,
    model_service: ModelService,
    retrieval_service: RetrievalService,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Gateway]]:
    """A second gateway process on each of the shared gateways' databases."""
    sqlite_url = f"sqlite+aiosqlite:///{(gateway.data_dir / 'ragway.db').resolve()}"
    twins = {
        "sqlite": start_gateway(
            "rel-gateway-sqlite-twin",
            tmp_path_factory.mktemp("rel-twin-sqlite"),
            model_service.address,
            retrieval_service.address,
            database_url=sqlite_url,
        ),
        "postgres": start_gateway(
            "rel-gateway-pg-twin",
            tmp_path_factory.mktemp("rel-twin-pg"),
            model_service.address,
            retrieval_service.address,
            database_url=POSTGRES_URL,
        ),
    }
    yield twins
    for twin in twins.values():
        twin.service.stop()


def _setup(name: str, gateway: Gateway, gateway_pg: Gateway, twins: dict[str, Gateway] | None) -> Setup:
    base = gateway if name.startswith("sqlite") else gateway_pg
    urls = [base.url]
    if twins is not None:
        urls.append(twins["sqlite" if name.startswith("sqlite") else "postgres"].url)
    return Setup(name, urls, base.admin_key, base.database_url)


class BalanceSampler:
    """Reads the balance (or another one-value query) from the database in a loop while the storm
    runs; keeps the lowest and the highest."""

    def __init__(
        self, database_url: str, user_id: str, sql: str = "SELECT credits FROM users WHERE id = :u"
    ) -> None:
        self.database_url, self.user_id, self.sql = database_url, user_id, sql
        self.lowest: int | None = None
        self.highest: int | None = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rows(self.database_url, self.sql, u=self.user_id)[0][0]
            self.lowest = value if self.lowest is None else min(self.lowest, value)
            self.highest = value if self.highest is None else max(self.highest, value)
            self.samples += 1
            time.sleep(0.02)

    def __enter__(self) -> BalanceSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _prompt_tokens(setup: Setup) -> int:
    probe = make_account(setup.urls[0], setup.admin_key)
    reply = probe.openai().chat.completions.create(model=MODEL_NAME, messages=QUESTION, max_tokens=1)  # type: ignore[arg-type]
    return reply.usage.prompt_tokens  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["sqlite", "postgres", "sqlite-two-gateways", "postgres-two-gateways"])
async def test_a_hundred_concurrent_requests_never_overdraw(
    name: str, request: pytest.FixtureRequest, gateway: Gateway, gateway_pg: Gateway, figures: Figures
) -> None:
    twins = request.getfixturevalue("second_gateways") if name.endswith("two-gateways") else None
    setup = _setup(name, gateway, gateway_pg, twins)
    worst = math.ceil(_prompt_tokens(setup) * PROMPT_PRICE + MAX_TOKENS * COMPLETION_PRICE)
    account = make_account(setup.urls[0], setup.admin_key, credits=worst * AFFORDABLE / 1e6)
    outcomes: Counter[str] = Counter()
    reply_ids: list[str] = []
    unexpected: list[str] = []

    async def one(http: httpx.AsyncClient) -> None:
        response = await http.post(
            "/v1/chat/completions",
            json={"model": MODEL_NAME, "messages": QUESTION, "max_tokens": MAX_TOKENS, "store": False},
        )
        if response.status_code == 200:
            outcomes["ok"] += 1
            reply_ids.append(response.json()["id"])
            return
        error = response.json().get("error", {})
        outcomes[f"{response.status_code} {error.get('code')}"] += 1
        if (response.status_code, error.get("code")) not in (
            (429, "insufficient_quota"),
            (503, "overloaded"),
        ):
            unexpected.append(f"{response.status_code} {response.text[:300]}")

    clients = [
        httpx.AsyncClient(
            base_url=url, headers=account.headers, timeout=120, limits=httpx.Limits(max_connections=200)
        )
        for url in setup.urls
    ]
    started = time.monotonic()
    try:
        with BalanceSampler(setup.database_url, account.user_id) as sampler:
            await asyncio.gather(*(one(clients[i % len(clients)]) for i in range(REQUESTS)))
            # Settlement runs detached from the response: let it land.
            deadline = time.monotonic() + 30
            while True:
                state = money(setup.database_url, account.user_id)
                if -state["ledger"] == state["billed"] or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
    finally:
        for client in clients:
            await client.aclose()
    elapsed = time.monotonic() - started
    assert not unexpected, unexpected[:5]
    state = money(setup.database_url, account.user_id)
    per_request = rows(
        setup.database_url,
        "SELECT request_id, COUNT(*) FROM usage_records WHERE user_id = :u GROUP BY request_id",
        u=account.user_id,
    )
    counts = dict((r[0], r[1]) for r in per_request)
    figures.add(
        "money",
        f"{name}: {REQUESTS} requests in {elapsed:.1f} s -> {dict(outcomes)}; lowest balance "
        f"{sampler.lowest} micro ({sampler.samples} samples), final {state['balance']}; "
        f"ledger {state['ledger']} = -billed {state['billed']}; {state['records']} usage records",
    )
    assert sampler.lowest is not None and sampler.lowest >= 0
    assert state["balance"] >= 0
    assert -state["ledger"] == state["billed"], "the ledger must explain every billed credit"
    assert state["topups"] + state["ledger"] == state["balance"]
    assert outcomes["ok"] >= AFFORDABLE
    assert all(count == 1 for count in counts.values()), "one usage record per request"
    assert set(reply_ids) <= set(counts), "every answered request has its usage record"
    overloaded = outcomes["503 overloaded"]
    assert outcomes["ok"] <= state["records"] <= outcomes["ok"] + overloaded


@pytest.mark.parametrize("name", ["sqlite", "postgres", "sqlite-two-gateways", "postgres-two-gateways"])
async def test_a_hundred_concurrent_requests_never_pass_a_key_budget(
    name: str, request: pytest.FixtureRequest, gateway: Gateway, gateway_pg: Gateway, figures: Figures
) -> None:
    twins = request.getfixturevalue("second_gateways") if name.endswith("two-gateways") else None
    setup = _setup(name, gateway, gateway_pg, twins)
    worst = math.ceil(_prompt_tokens(setup) * PROMPT_PRICE + MAX_TOKENS * COMPLETION_PRICE)
    budget = worst * AFFORDABLE
    # Credits to spare: the key's daily budget is what runs out.
    account = make_account(
        setup.urls[0], setup.admin_key, credits=100.0, budget=budget / 1e6, budget_period="day"
    )
    outcomes: Counter[str] = Counter()
    unexpected: list[str] = []

    async def one(http: httpx.AsyncClient) -> None:
        response = await http.post(
            "/v1/chat/completions",
            json={"model": MODEL_NAME, "messages": QUESTION, "max_tokens": MAX_TOKENS, "store": False},
        )
        if response.status_code == 200:
            outcomes["ok"] += 1
            return
        error = response.json().get("error", {})
        outcomes[f"{response.status_code} {error.get('code')}"] += 1
        refused_by_budget = response.status_code == 429 and "budget" in error.get("message", "")
        if not refused_by_budget and (response.status_code, error.get("code")) != (503, "overloaded"):
            unexpected.append(f"{response.status_code} {response.text[:300]}")

    clients = [
        httpx.AsyncClient(
            base_url=url, headers=account.headers, timeout=120, limits=httpx.Limits(max_connections=200)
        )
        for url in setup.urls
    ]
    spend_sql = f"SELECT period_spend FROM api_keys WHERE id = '{account.key_id}' AND user_id = :u"
    try:
        with BalanceSampler(setup.database_url, account.user_id, spend_sql) as sampler:
            await asyncio.gather(*(one(clients[i % len(clients)]) for i in range(REQUESTS)))
            deadline = time.monotonic() + 30  # settlement runs detached from the response
            while True:
                state = money(setup.database_url, account.user_id)
                if -state["ledger"] == state["billed"] or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
    finally:
        for client in clients:
            await client.aclose()
    assert not unexpected, unexpected[:5]
    spend = rows(setup.database_url, spend_sql, u=account.user_id)[0][0]
    state = money(setup.database_url, account.user_id)
    figures.add(
        "money",
        f"{name}: {REQUESTS} requests against a key budget for {AFFORDABLE} -> {dict(outcomes)}; highest "
        f"period spend {sampler.highest} of {budget} micro ({sampler.samples} samples); final spend {spend} "
        f"= billed {state['billed']}",
    )
    assert sampler.highest is not None and sampler.highest <= budget
    assert spend == state["billed"] <= budget, "the key's spend is what its requests were billed"
    assert -state["ledger"] == state["billed"]
    assert outcomes["ok"] >= AFFORDABLE
    assert any(k.startswith("429") for k in outcomes), "the budget ran out"
    assert outcomes["ok"] <= state["records"] <= outcomes["ok"] + outcomes["503 overloaded"]
