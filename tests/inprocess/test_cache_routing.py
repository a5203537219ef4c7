"""Routing by cache: a call's routing key decides its replica by consistent hashing with bounded
loads (clients/replicas.py), and a chat's key is its prompt_cache_key, its conversation, or its
leading part (generation/service.py). Pure logic on stated fake replicas; the benchmark over simulated
and real engines is bench/routing_bench.py."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from ragway.gateway.catalog.model_table import parse_model_table
from ragway.gateway.clients import model as model_client
from ragway.gateway.clients.model import ModelClient, Sampling
from ragway.gateway.clients.replicas import (
    AFFINITY_FLOOR,
    BLOCK_CHARS,
    PREFIX_GAIN_BLOCKS,
    REPLICA_BLOCKS,
    Replica,
    ReplicaSet,
    prompt_blocks,
)
from ragway.gateway.conversations.history import Turn
from ragway.gateway.core import deps, metrics
from ragway.gateway.core.config import GatewaySettings
from ragway.gateway.generation.service import ChatPlan, GenerationService, routing_key
from ragway.v1 import model_pb2
from tests.inprocess.conftest import ADMIN_KEY, InProcess
from tests.utils.fakes import FakeModelClient, fake_router

ADDRESSES = [f"10.0.0.{i}:50051" for i in range(1, 9)]


def test_a_key_stays_on_one_replica_and_keys_spread_over_all() -> None:
    replicas = ReplicaSet(ADDRESSES, backoff=1, backoff_max=8)
    for key in ("conversation:a", "prefix:b"):
        assert len({replicas.pick(key=key).client for _ in range(20)}) == 1  # type: ignore[union-attr]
    owners = Counter(replicas.pick(key=f"conversation:{i}").client for i in range(4000))  # type: ignore[union-attr]
    assert set(owners) == set(ADDRESSES)
    assert max(owners.values()) / (4000 / len(ADDRESSES)) < 1.5


def test_every_gateway_sends_a_key_to_the_same_replica() -> None:
    one = ReplicaSet(ADDRESSES, backoff=1, backoff_max=8)
    other = ReplicaSet(list(reversed(ADDRESSES)), backoff=1, backoff_max=8)
    for i in range(200):
        key = f"prefix:{i}"
        assert one.pick(key=key).client == other.pick(key=key).client  # type: ignore[union-attr]


def test_a_hot_key_overflows_past_the_load_bound_instead_of_piling_up() -> None:
    replicas = ReplicaSet(ADDRESSES[:4], backoff=1, backoff_max=8)
    picked = []
    for _ in range(40):  # 40 calls of one key, none finishing
        replica = replicas.pick(key="key:everyone")
        assert replica is not None
        replica.in_flight += 1
        picked.append(replica)
    loads = [r.in_flight for r in replicas.replicas]
    assert max(loads) <= 1.25 * (sum(loads) / len(loads)) + 1
    assert picked[:AFFINITY_FLOOR] == [picked[0]] * AFFINITY_FLOOR  # the owner first, until it is full


SOURCE = "".join(f"Shared source sentence {i} about leases and quorum reads. " for i in range(60))


def test_prompt_blocks_are_equal_exactly_as_far_as_the_text_is() -> None:
    one = prompt_blocks(SOURCE + "User 1: what does it say about leases? " * 10)
    other = prompt_blocks(SOURCE + "User 2: and about quorum reads? " * 10)
    shared = len(SOURCE) // BLOCK_CHARS
    assert one[:shared] == other[:shared]
    assert one[shared + 1 :] and not set(one[shared + 1 :]) & set(other)  # chained: apart once apart
    assert prompt_blocks("short") == []  # no full block: nothing to match on


def test_a_new_key_goes_where_its_shared_sources_already_are_within_the_load_bound() -> None:
    replicas = ReplicaSet(ADDRESSES, backoff=1, backoff_max=8)
    first = prompt_blocks(SOURCE + "User 1: what does it say about leases?")
    holder = replicas.pick(key="prefix:user-1", blocks=first)
    assert holder is not None
    holder.remember(first)
    # Another user's first turn over the same source: a new key, whose owner is (almost surely)
    # another replica, goes to the one holding the source.
    for user in range(2, 12):
        blocks = prompt_blocks(SOURCE + f"User {user}: a question of their own?")
        assert replicas.pick(key=f"prefix:user-{user}", blocks=blocks) is holder
    # ...unless that replica is loaded beyond the bound: then the key's owner, as without blocks.
    holder.in_flight = 40
    blocks = prompt_blocks(SOURCE + "User 99: busy?")
    assert replicas.pick(key="prefix:user-99", blocks=blocks) is replicas.pick(key="prefix:user-99")
    assert replicas.pick(key="prefix:user-99") is not holder


def test_a_small_shared_head_does_not_pull_keys_off_their_owners() -> None:
    replicas = ReplicaSet(ADDRESSES, backoff=1, backoff_max=8)
    head = SOURCE[: BLOCK_CHARS * (PREFIX_GAIN_BLOCKS - 1)]  # a common system prompt, say
    holder = replicas.replicas[0]
    holder.remember(prompt_blocks(head + "x" * 1000))
    owners = {replicas.pick(key=f"prefix:{i}").client for i in range(50)}
    chosen = {
        replicas.pick(key=f"prefix:{i}", blocks=prompt_blocks(head + f"{i}" * 500)).client for i in range(50)
    }
    assert chosen == owners and len(chosen) > 1


def test_a_replica_remembers_only_its_most_recent_blocks() -> None:
    replica: Replica[str] = Replica("10.0.0.1:50051")
    old = prompt_blocks(SOURCE)
    replica.remember(old)
    replica.remember(list(range(REPLICA_BLOCKS)))
    assert replica.holds(old) == 0 and len(replica.sent) == REPLICA_BLOCKS


def test_a_replica_that_leaves_takes_only_its_own_keys_away() -> None:
    replicas = ReplicaSet(ADDRESSES, backoff=1, backoff_max=8)
    keys = [f"conversation:{i}" for i in range(500)]
    before = {k: replicas.owner(k) for k in keys}
    leaving = replicas.replicas[3]
    replicas.remove(leaving)
    moved = [k for k in keys if replicas.owner(k) is not before[k]]
    assert moved and all(before[k] is leaving for k in moved)


def test_a_key_whose_replica_is_down_goes_to_another() -> None:
    replicas = ReplicaSet(ADDRESSES[:2], backoff=1, backoff_max=8)
    owner = replicas.owner("key:x")
    assert owner is not None
    replicas.reported(owner, serving=False)
    assert replicas.pick(key="key:x") is not owner


def _messages(*pairs: tuple[str, str]) -> list[Turn]:
    return [Turn(role, content) for role, content in pairs]


def _plan(**fields: object) -> ChatPlan:
    return ChatPlan(
        id="x",
        endpoint="chat.completions",
        system=[],
        turns=[],
        sampling=Sampling(),
        **fields,
    )  # type: ignore[arg-type]


def test_a_chat_routes_by_its_cache_key_then_its_conversation_then_its_leading_turns() -> None:
    turn1 = _messages(("system", "You are helpful."), ("user", "What is a lease?"))
    turn3 = [
        *turn1,
        *_messages(("assistant", "A claim with an expiry."), ("user", "And a fence?"), ("assistant", "..")),
        *_messages(("user", "Thanks")),
    ]
    other = _messages(("system", "You are helpful."), ("user", "What is a ring?"))
    assert routing_key(_plan(), turn1) == routing_key(_plan(), turn3)
    assert routing_key(_plan(), turn1) != routing_key(_plan(), other)  # not the system prompt alone
    assert routing_key(_plan(conversation_id="conv_1"), other) == "conversation:conv_1"
    assert routing_key(_plan(cache_key="tenant-7", conversation_id="conv_1"), other) == "key:tenant-7"


@pytest.mark.parametrize(
    ("value", "reason"), [(7, "string"), ("", "at least 1"), ("k" * 1025, "at most 1024")]
)
def test_a_prompt_cache_key_of_the_wrong_type_or_length_is_a_400_naming_it(
    inprocess: InProcess, value: object, reason: str
) -> None:
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "prompt_cache_key": value}
    reply = inprocess.client.post("/v1/chat/completions", json=body, headers=inprocess.account())
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == "prompt_cache_key" and reason in error["message"]


def test_cached_prompt_tokens_are_reported_and_billed_at_the_cached_price(
    inprocess: InProcess, tmp_path: Path
) -> None:
    prices = {"prompt_per_1k": 0.01, "completion_per_1k": 0.02, "cached_prompt_per_1k": 0.001}
    table = parse_model_table({"models": [{"name": "cheap", "replicas": ["a:1"], "prices": prices}]}, "t")
    settings = GatewaySettings(data_dir=tmp_path, admin_key=SecretStr(ADMIN_KEY))
    replica = FakeModelClient(cached=12)
    models = fake_router(settings, {"a:1": replica}, table)
    app = inprocess.client.app
    generation = GenerationService(settings, app.state.sessions, models, app.state.limiter)  # type: ignore[attr-defined]
    app.dependency_overrides[deps.get_models] = lambda: models  # type: ignore[attr-defined]
    app.dependency_overrides[deps.get_generation] = lambda: generation  # type: ignore[attr-defined]
    headers = inprocess.account()
    body = {"model": "cheap", "messages": [{"role": "user", "content": "a question long enough " * 3}]}
    reply = inprocess.client.post("/v1/chat/completions", json=body, headers=headers).json()
    usage = reply["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 12 < usage["prompt_tokens"]
    uncached = usage["prompt_tokens"] - 12
    expected = (uncached * 0.01 + 12 * 0.001 + usage["completion_tokens"] * 0.02) / 1000
    [day] = inprocess.client.get("/v1/usage", headers=headers).json()["data"]
    assert day["cached_tokens"] == 12
    assert day["cost"] == pytest.approx(expected, abs=1e-6)


def test_a_chat_is_sized_as_sent_on_the_replica_its_generation_goes_to(
    inprocess: InProcess, tmp_path: Path
) -> None:
    """The gateway sizes a chat (Tokenize) before it generates; the model service keeps that render
    for the Generate that follows only on the replica that sized it, and sizes tools too."""
    fakes = {address: FakeModelClient(address=address) for address in ADDRESSES}
    table = parse_model_table({"models": [{"name": "pool", "replicas": ADDRESSES}]}, "t")
    settings = GatewaySettings(data_dir=tmp_path, admin_key=SecretStr(ADMIN_KEY), routing="cache")
    models = fake_router(settings, fakes, table)
    app = inprocess.client.app
    generation = GenerationService(settings, app.state.sessions, models, app.state.limiter)  # type: ignore[attr-defined]
    app.dependency_overrides[deps.get_models] = lambda: models  # type: ignore[attr-defined]
    app.dependency_overrides[deps.get_generation] = lambda: generation  # type: ignore[attr-defined]
    headers = inprocess.account()
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    for i in range(24):
        body = {
            "model": "pool",
            "messages": [{"role": "user", "content": f"question {i} " + SOURCE}],
            "tools": [tool],
        }
        assert inprocess.client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
    for fake in fakes.values():
        assert [c.SerializeToString() for c in fake.measured] == [
            r.chat.SerializeToString() for r in fake.requests
        ]
    assert sum(1 for fake in fakes.values() if fake.requests) >= 4  # and the chats spread out


def _gauge(gauge: Any, model: str) -> float:
    return float(gauge.labels(model)._value.get())


def _replica(address: str, running: int, waiting: int, kv: float, hits: int) -> FakeModelClient:
    load = model_pb2.Load(
        running_requests=running,
        waiting_requests=waiting,
        kv_cache_usage=kv,
        prefix_cache_queries=100,
        prefix_cache_hits=hits,
    )
    return FakeModelClient(address=address, reported_load=load)


async def _until(gauge: Any, value: float) -> float:
    """The gauge of model "summed", once it reads `value` (or after 5 s, whatever it reads)."""
    for _ in range(100):
        if _gauge(gauge, "summed") == pytest.approx(value):
            break
        await asyncio.sleep(0.05)
    return _gauge(gauge, "summed")


async def test_the_gateway_sums_its_replicas_load_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_client, "LOAD_POLL_SECONDS", 0.05)
    a, b = _replica("a:1", 3, 2, 0.5, 80), _replica("b:1", 1, 5, 0.1, 20)
    client = ModelClient([a, b], name="summed")  # type: ignore[list-item]
    client.start()
    try:
        assert await _until(metrics.MODEL_WAITING, 7) == 7
        assert _gauge(metrics.MODEL_RUNNING, "summed") == 4
        assert _gauge(metrics.MODEL_KV_CACHE_USAGE, "summed") == pytest.approx(0.3)
        # The hit rate is over the tokens looked up since the last read: 50 more, 45 of them hits.
        a.reported_load.prefix_cache_queries += 50
        a.reported_load.prefix_cache_hits += 45
        assert await _until(metrics.MODEL_PREFIX_CACHE_HIT_RATE, 0.9) == pytest.approx(0.9)
    finally:
        await client.close()
