"""Token-per-minute reservations, usage latency, metrics and draining, in process.

The limiter runs for real (the in-process one, and Redis at 127.0.0.1:6379); the model and the
retrieval service are the stated fakes of tests/utils/fakes.py (one token per word), plus one fake
below that fails after admission. The 50-concurrent TPM test against real gateways sharing Redis is
in tests/stack/test_shared_limits.py.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from ragway.core.errors import Unavailable
from ragway.gateway.accounts.limiter import Hold, Limiter, LocalLimiter, RedisLimiter, Refusal
from ragway.gateway.app import create_app
from ragway.gateway.core import deps
from ragway.gateway.core.config import GatewaySettings
from ragway.gateway.generation.service import GenerationService
from ragway.v1 import model_pb2
from tests.inprocess.conftest import ADMIN_KEY
from tests.utils.fakes import FAKE_MODEL, FakeModelClient, FakeRetrievalClient, fake_router, fake_tokens

REDIS_URL = "redis://127.0.0.1:6379/0"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
HI = [{"role": "user", "content": "hi"}]
# The fake model's prompt size for HI: one word plus the template's two role markers.
HI_TOKENS = fake_tokens("hi") + 2
ANSWER_TOKENS = len(FakeModelClient().answer.split())


# Redis runs beside every session and CI run (127.0.0.1:6379): a missing one fails, never skips.
BACKENDS = ["local", "redis"]


# -- the limiter itself ----------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
async def limiters(request: pytest.FixtureRequest) -> AsyncIterator[list[Limiter]]:
    """Two limiters sharing their counters: one process's twice, or two clients of one Redis
    (as two gateway replicas are)."""
    if request.param == "local":
        local = LocalLimiter()
        yield [local, local]
        return
    pair: list[Limiter] = [RedisLimiter(REDIS_URL), RedisLimiter(REDIS_URL)]
    yield pair
    for limiter in pair:
        await limiter.close()


def counter() -> str:
    return f"test-{uuid.uuid4().hex}:tpm"


async def test_a_reservation_is_admitted_only_when_it_fits(limiters: list[Limiter]) -> None:
    first, second = limiters
    name = counter()
    held = await first.reserve(name, 60, 100)
    assert isinstance(held, Hold) and held.amount == 60
    refused = await second.reserve(name, 41, 100)
    assert isinstance(refused, Refusal) and refused.used == 60 and 0 < refused.retry_after <= 60
    assert isinstance(await second.reserve(name, 40, 100), Hold)
    assert (await first.add(name, 0))[0] == 100


async def test_settling_gives_back_the_unused_part_and_counts_an_excess(limiters: list[Limiter]) -> None:
    first, second = limiters
    name = counter()
    held = await first.reserve(name, 80, 100)
    assert isinstance(held, Hold)
    await second.settle(held, 15)
    assert (await first.add(name, 0))[0] == 15
    again = await first.reserve(name, 10, 100)
    assert isinstance(again, Hold)
    await first.settle(again, 12)  # the model used two more than the estimate: they count
    assert (await second.add(name, 0))[0] == 27


async def test_settling_a_window_that_has_ended_changes_nothing(limiters: list[Limiter]) -> None:
    first, _ = limiters
    name = counter()
    held = await first.reserve(name, 50, 100)
    assert isinstance(held, Hold)
    old = Hold(name, held.window - 5, 50)  # a hold from five minutes ago, its counter expired
    await first.settle(old, 0)
    assert (await first.add(name, 0))[0] == 50
    if isinstance(first, RedisLimiter):
        client = redis.Redis.from_url(REDIS_URL)
        assert not client.exists(f"ragway:rl:{name}:{held.window - 5}"), "no counter without an expiry"


async def test_fifty_concurrent_reservations_never_pass_the_limit(limiters: list[Limiter]) -> None:
    name = counter()
    outcomes = await asyncio.gather(*(limiters[i % 2].reserve(name, 30, 200) for i in range(50)))
    held = [o for o in outcomes if isinstance(o, Hold)]
    assert len(held) == 6  # 6 x 30 = 180 fits in 200; a seventh would not
    assert (await limiters[0].add(name, 0))[0] == 180


# -- the gateway: holds around a generation --------------------------------------------------------


@dataclass
class FailsAfterAdmission(FakeModelClient):
    """A stated fake: while `failing`, admits the request (its prompt counted), then the model
    service goes away; otherwise answers as FakeModelClient does."""

    failing: bool = True

    async def generate(
        self, request: model_pb2.GenerateRequest, timeout: float
    ) -> AsyncGenerator[model_pb2.GenerateResponse, None]:
        if not self.failing:
            async for message in super().generate(request, timeout):
                yield message
            return
        self.requests.append(request)
        prompt = sum(fake_tokens(m.content) + 2 for m in request.chat.messages)
        yield model_pb2.GenerateResponse(request_id=request.request_id, prompt_tokens=prompt)
        raise Unavailable("the fake model service went away")


@dataclass
class Gateway:
    client: TestClient
    model: FakeModelClient
    limiter: Limiter

    def account(self, **key_fields: object) -> tuple[dict[str, str], str, str]:
        """A new user with a key: (its Authorization header, the user id, the key id)."""
        user = self.client.post(
            "/v1/admin/users", json={"name": f"u{uuid.uuid4().hex[:8]}", "credits": 100}, headers=ADMIN
        )
        assert user.status_code == 201, user.text
        key = self.client.post(
            "/v1/admin/keys", json={"user_id": user.json()["id"], **key_fields}, headers=ADMIN
        )
        assert key.status_code == 201, key.text
        return {"Authorization": f"Bearer {key.json()['key']}"}, user.json()["id"], key.json()["id"]

    def tokens_used(self, key_id: str) -> int:
        """This minute's TPM counter of a key, read from the gateway's own limiter."""
        used, _ = self.client.portal.call(self.limiter.add, f"{key_id}:tpm", 0)  # type: ignore[union-attr]
        return used

    def chat(self, headers: dict[str, str], max_tokens: int) -> tuple[int, dict[str, object], dict[str, str]]:
        reply = self.client.post(
            "/v1/chat/completions",
            json={"model": FAKE_MODEL, "messages": HI, "max_tokens": max_tokens},
            headers=headers,
        )
        return reply.status_code, reply.json(), dict(reply.headers)


def start(tmp_path: Path, model: FakeModelClient, redis_url: str | None) -> Iterator[Gateway]:
    settings = GatewaySettings(
        data_dir=tmp_path,
        admin_key=SecretStr(ADMIN_KEY),
        frontend_dir=tmp_path / "none",
        redis_url=SecretStr(redis_url) if redis_url else None,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        models = fake_router(settings, {model.address: model})
        generation = GenerationService(settings, app.state.sessions, models, app.state.limiter)
        app.dependency_overrides[deps.get_models] = lambda: models
        app.dependency_overrides[deps.get_retrieval_client] = FakeRetrievalClient
        app.dependency_overrides[deps.get_generation] = lambda: generation
        yield Gateway(client, model, app.state.limiter)


@pytest.fixture(params=BACKENDS)
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    yield from start(tmp_path, FakeModelClient(), REDIS_URL if request.param == "redis" else None)


@pytest.fixture(params=BACKENDS)
def failing_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    yield from start(tmp_path, FailsAfterAdmission(), REDIS_URL if request.param == "redis" else None)


def test_tpm_holds_prompt_plus_max_tokens_then_keeps_only_what_was_used(gateway: Gateway) -> None:
    headers, _, key_id = gateway.account(tpm_limit=100)
    # Held while it runs: 3 + 80 = 83 of 100. Without the settlement giving back the unused 75,
    # the second request (another 83) could not fit.
    status, body, _ = gateway.chat(headers, max_tokens=80)
    assert status == 200, body
    assert gateway.tokens_used(key_id) == HI_TOKENS + ANSWER_TOKENS
    status, body, _ = gateway.chat(headers, max_tokens=80)
    assert status == 200, body
    assert gateway.tokens_used(key_id) == 2 * (HI_TOKENS + ANSWER_TOKENS)


def test_a_reservation_that_does_not_fit_is_refused_with_retry_after(gateway: Gateway) -> None:
    headers, _, key_id = gateway.account(tpm_limit=100)
    gateway.client.portal.call(gateway.limiter.add, f"{key_id}:tpm", 60)  # type: ignore[union-attr]
    status, body, response_headers = gateway.chat(headers, max_tokens=50)  # 3 + 50 > 40 left
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert 1 <= int(response_headers["retry-after"]) <= 60
    assert gateway.model.requests == [], "refused before the model service"
    assert gateway.tokens_used(key_id) == 60, "a refused request holds nothing"
    status, _, _ = gateway.chat(headers, max_tokens=30)  # 3 + 30 fits in the 40 left
    assert status == 200


def test_a_request_larger_than_the_whole_limit_says_to_lower_max_tokens(gateway: Gateway) -> None:
    headers, _, key_id = gateway.account(tpm_limit=100)
    status, body, response_headers = gateway.chat(headers, max_tokens=200)
    assert status == 429 and "lower max_tokens" in body["error"]["message"]  # type: ignore[index]
    assert "retry-after" not in response_headers, "no minute will have room for it"
    assert gateway.tokens_used(key_id) == 0


def test_a_failed_generation_keeps_only_the_prompt_it_processed(failing_gateway: Gateway) -> None:
    headers, _, key_id = failing_gateway.account(tpm_limit=1000)
    status, _, _ = failing_gateway.chat(headers, max_tokens=500)
    assert status == 503
    assert failing_gateway.tokens_used(key_id) == HI_TOKENS


def test_a_request_refused_for_credits_releases_its_token_hold(gateway: Gateway) -> None:
    headers, _, key_id = gateway.account(tpm_limit=1000, budget=0.000001)
    status, body, _ = gateway.chat(headers, max_tokens=500)
    assert status == 429 and body["error"]["code"] == "insufficient_quota", body  # type: ignore[index]
    assert gateway.tokens_used(key_id) == 0


def test_embeddings_hold_and_settle_tokens_too(gateway: Gateway) -> None:
    headers, _, key_id = gateway.account(tpm_limit=100)
    # Held: len(text) + 2 per text (the worst case), kept: the embedder's count (one per word).
    reply = gateway.client.post(
        "/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": ["one two three"]}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    assert gateway.tokens_used(key_id) == 3
    too_long = gateway.client.post(
        "/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": ["x" * 120]}, headers=headers
    )
    assert too_long.status_code == 429


# -- usage with latency, per model and day ---------------------------------------------------------


@pytest.fixture
def local_gateway(tmp_path: Path) -> Iterator[Gateway]:
    """The in-process limiter, and a model that answers until told to fail."""
    yield from start(tmp_path, FailsAfterAdmission(failing=False), None)


def test_usage_reports_latency_and_errors_per_model_and_day(local_gateway: Gateway) -> None:
    gw = local_gateway
    headers, user_id, key_id = gw.account()
    other_headers, _, other_key = gw.account()
    for _ in range(3):
        assert gw.chat(headers, max_tokens=10)[0] == 200
    assert gw.chat(other_headers, max_tokens=10)[0] == 200
    # One failure: the model service goes away after admission.
    assert isinstance(gw.model, FailsAfterAdmission)
    gw.model.failing = True
    assert gw.chat(headers, max_tokens=10)[0] == 503
    gw.model.failing = False

    usage = gw.client.get("/v1/usage", headers=headers).json()
    (day,) = usage["data"]
    assert day["model"] == FAKE_MODEL and day["requests"] == 4 and day["errors"] == 1
    assert day["completion_tokens"] == 3 * ANSWER_TOKENS
    assert 0 <= day["ttft_p50_ms"] <= day["ttft_p95_ms"]
    assert day["output_tokens_per_second"] is None or day["output_tokens_per_second"] > 0
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", day["date"])

    by_key = gw.client.get("/v1/admin/usage", params={"key_id": key_id}, headers=ADMIN).json()
    by_user = gw.client.get("/v1/admin/usage", params={"user_id": user_id}, headers=ADMIN).json()
    assert by_key["data"] == by_user["data"] == usage["data"]
    other = gw.client.get("/v1/admin/usage", params={"key_id": other_key}, headers=ADMIN).json()
    assert other["data"][0]["requests"] == 1 and other["data"][0]["errors"] == 0
    everyone = gw.client.get("/v1/admin/usage", headers=ADMIN).json()
    assert everyone["data"][0]["requests"] == 5
    # A user's view of someone else's key is empty, never theirs.
    assert gw.client.get("/v1/usage", params={"key_id": other_key}, headers=headers).json()["data"] == []
    assert gw.client.get("/v1/admin/usage", headers=headers).status_code == 403


# -- metrics move by what was served ---------------------------------------------------------------


def scrape(client: TestClient, name: str, labels: str) -> float:
    """One sample of /metrics, 0 when it is not there yet."""
    text = client.get("/metrics").text
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_the_ttft_count_grows_by_requests_served_and_spend_by_the_amount_billed(
    local_gateway: Gateway,
) -> None:
    gw = local_gateway
    headers, _, _ = gw.account()
    ttft_before = scrape(gw.client, "ragway_gateway_ttft_seconds_count", f'model="{FAKE_MODEL}"')
    spend_before = scrape(gw.client, "ragway_gateway_spend_total", f'model="{FAKE_MODEL}"')
    served = 7
    for _ in range(served):
        assert gw.chat(headers, max_tokens=10)[0] == 200
    billed = gw.client.get("/v1/usage", headers=headers).json()["data"][0]["cost"]
    ttft_after = scrape(gw.client, "ragway_gateway_ttft_seconds_count", f'model="{FAKE_MODEL}"')
    spend_after = scrape(gw.client, "ragway_gateway_spend_total", f'model="{FAKE_MODEL}"')
    assert ttft_after - ttft_before == served
    assert spend_after - spend_before == pytest.approx(billed, rel=1e-9, abs=1e-12)
    assert billed > 0


def test_metrics_carry_no_user_or_key_labels(local_gateway: Gateway) -> None:
    gw = local_gateway
    headers, user_id, key_id = gw.account()
    assert gw.chat(headers, max_tokens=3)[0] == 200
    text = gw.client.get("/metrics").text
    assert user_id not in text and key_id not in text
    assert not re.search(r'\b(user|key|user_id|key_id)="', text)


# -- draining ----------------------------------------------------------------------------------------


def test_a_draining_gateway_refuses_new_work_with_503_and_retry_after(local_gateway: Gateway) -> None:
    gw = local_gateway
    headers, _, _ = gw.account()
    gw.client.app.state.drain.draining = True  # type: ignore[attr-defined]  # what SIGTERM sets
    reply = gw.client.post(
        "/v1/chat/completions", json={"model": FAKE_MODEL, "messages": HI}, headers=headers
    )
    assert reply.status_code == 503 and reply.json()["error"]["code"] == "service_unavailable"
    assert int(reply.headers["retry-after"]) >= 1
    assert gw.client.get("/readyz").status_code == 503, "readiness fails so routing stops"
    assert gw.client.get("/healthz").status_code == 200, "alive all the same"
    assert gw.model.requests == []


def test_an_unreachable_redis_is_a_503_not_a_hang_or_a_500(tmp_path: Path) -> None:
    # A stated fault: the limiter's Redis URL points at a port where nothing listens.
    for gateway in start(tmp_path, FakeModelClient(), "redis://127.0.0.1:9/0"):
        headers, _, _ = gateway.account(tpm_limit=1000)
        status, body, _ = gateway.chat(headers, max_tokens=10)
        assert status == 503, body
        assert "rate limiter's Redis is unavailable" in body["error"]["message"]  # type: ignore[index]
        assert gateway.model.requests == [], "refused before the model service"
        unlimited, _, _ = gateway.account()
        status, body, _ = gateway.chat(unlimited, max_tokens=10)
        assert status == 200, "a key without limits does not need the limiter"
