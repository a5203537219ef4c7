"""Replicas found in DNS, against a real DNS server (dnslib) and stated fake model replicas: each
address a name resolves to is a replica of its own, and the set follows the name. The same with
real model services on several loopback addresses is tests/reliability/test_dns_replicas.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from ragway.gateway.clients.discovery import DnsTarget
from ragway.gateway.clients.model import GenerationRequest, ModelClient, Sampling
from ragway.gateway.core import metrics
from tests.utils.dns import dns_server
from tests.utils.fakes import FakeModelClient
from tests.utils.processes import free_port

NAME = "model-headless.ragway.test"


@dataclass
class Pod(FakeModelClient):
    """A fake replica that reports SERVING and notes when its channel is closed."""

    closed: bool = False
    calls: list[str] = field(default_factory=list)

    async def watch(self) -> AsyncIterator[bool]:
        yield True
        await asyncio.Event().wait()

    async def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("dns:///model-headless:50051", DnsTarget("model-headless", 50051)),
        ("dns:model:7000", DnsTarget("model", 7000)),
        ("dns:///model", DnsTarget("model", 50051)),
        ("dns://127.0.0.1:5353/model.test:50051", DnsTarget("model.test", 50051, ("127.0.0.1", 5353))),
        ("dns://10.0.0.10/model", DnsTarget("model", 50051, ("10.0.0.10", 53))),
        ("10.0.0.5:50051", None),
    ],
)
def test_addresses_follow_grpc_naming(address: str, target: DnsTarget | None) -> None:
    assert DnsTarget.parse(address) == target


async def test_a_name_resolves_to_every_address_it_has_and_to_none_once_it_has_none() -> None:
    with dns_server(NAME, ["127.0.0.3", "127.0.0.2"]) as (records, port):
        target = DnsTarget(NAME, 50051, ("127.0.0.1", port))
        assert await target.resolve() == ["127.0.0.2:50051", "127.0.0.3:50051"]
        records.addresses = []
        assert await target.resolve() == []


async def test_a_dns_server_that_does_not_answer_keeps_the_replicas_known() -> None:
    silent = DnsTarget(NAME, 50051, ("127.0.0.1", free_port()))  # nothing listens there
    assert await silent.resolve(timeout=0.5) is None


async def _answered_by(client: ModelClient, pods: dict[str, Pod]) -> str:
    request = GenerationRequest("r", "hi", Sampling())
    before = {a: len(p.requests) for a, p in pods.items()}
    async for _ in client.generate(request, 5):
        pass
    [address] = [a for a, p in pods.items() if len(p.requests) > before[a]]
    return address


async def _until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the replica set did not follow DNS"
        await asyncio.sleep(0.05)


async def test_every_pod_is_a_replica_and_the_set_follows_the_name() -> None:
    pods: dict[str, Pod] = {}

    def connect(address: str) -> Pod:
        pods[address] = Pod(address=address)
        return pods[address]

    with dns_server(NAME, ["127.0.0.2", "127.0.0.3"]) as (records, port):
        client = ModelClient(
            [],
            name="dns-model",
            discover=[DnsTarget(NAME, 50051, ("127.0.0.1", port))],
            connect=connect,  # type: ignore[arg-type]
            dns_refresh=0.1,
        )
        client.start()
        try:
            await _until(lambda: client.replicas.serving == 2)
            assert {await _answered_by(client, pods) for _ in range(4)} == {
                "127.0.0.2:50051",
                "127.0.0.3:50051",
            }
            # A pod leaves and another comes: the one gone is never picked again and its channel closes.
            records.addresses = ["127.0.0.3", "127.0.0.4"]
            await _until(lambda: "127.0.0.4:50051" in pods and client.replicas.serving == 2)
            await _until(lambda: pods["127.0.0.2:50051"].closed)
            assert {await _answered_by(client, pods) for _ in range(4)} == {
                "127.0.0.3:50051",
                "127.0.0.4:50051",
            }
            assert metrics.REPLICAS.labels("dns-model")._value.get() == 2
        finally:
            await client.close()
