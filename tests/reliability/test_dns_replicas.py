"""Every pod a replica, against real model services: a real DNS server (dnslib) answers one name with
several loopback addresses, as a Kubernetes headless Service answers with its ready pods, and each
address is a real model service on port 50051. The gateway keeps one replica per address — a replica
still loading (NOT_SERVING) while another serves does not take the model down, a killed one's
requests go to the other before their first token, and the set follows the name as pods leave
and come. The same rules on fakes, fast: tests/inprocess/test_dns_replicas.py."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import MODEL_NAME, Gateway, start_gateway
from tests.reliability.conftest import OwnModel
from tests.utils.dns import Records, dns_server
from tests.utils.factories import Account, make_account
from tests.utils.processes import free_port

pytestmark = pytest.mark.engine  # its model services are real vLLM engines of its own

NAME = "model-headless.ragway.test"
PORT = 50051  # every pod listens on the same port; the address tells them apart
FOLLOWS_DNS = 60.0  # a change in DNS reaches the gateway's replica set (refresh 0.5 s, health watches)


@dataclass
class Pods:
    records: Records
    a: OwnModel
    b: OwnModel
    gateway: Gateway
    account: Account


@pytest.fixture(scope="module")
def pods(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pods]:
    a = OwnModel(PORT, free_port(), name="dns-model-a", host="127.0.0.2")
    b = OwnModel(PORT, free_port(), name="dns-model-b", host="127.0.0.3")
    with dns_server(NAME, ["127.0.0.2", "127.0.0.3"]) as (records, dns_port), a.running():
        gateway = start_gateway(
            "gateway-dns",
            tmp_path_factory.mktemp("gateway-dns"),
            f"dns://127.0.0.1:{dns_port}/{NAME}:{PORT}",
            f"127.0.0.1:{free_port()}",  # chat needs no retrieval service
            extra_env={"RAGWAY_DNS_REFRESH_SECONDS": "0.5"},
        )
        try:
            yield Pods(records, a, b, gateway, make_account(gateway.url, gateway.admin_key))
        finally:
            gateway.service.stop()
            b.stop()


def gauge(pods: Pods, name: str) -> float:
    text = httpx.get(f"{pods.gateway.url}/metrics", timeout=10).text
    found = re.search(rf'^{name}\{{model="{MODEL_NAME}"\}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else -1.0


def readyz(pods: Pods) -> int:
    return httpx.get(f"{pods.gateway.url}/readyz", timeout=10).status_code


def served(model: OwnModel) -> float:
    """Requests a model service finished (its end-to-end latency histogram's count)."""
    text = httpx.get(model.metrics_url, timeout=10).text
    found = re.search(r"^ragway_model_e2e_latency_seconds_count (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def wait_for(condition, timeout: float = FOLLOWS_DNS) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the gateway's replicas did not follow"
        await asyncio.sleep(0.25)


async def chats(pods: Pods, count: int) -> list[int]:
    """Statuses of `count` concurrent short chats."""
    gateway, headers = pods.gateway.url, pods.account.headers
    async with httpx.AsyncClient(base_url=gateway, headers=headers, timeout=120) as http:

        async def one(index: int) -> int:
            body = {
                "model": MODEL_NAME,
                "messages": [{"role": "user", "content": f"Say a number: {index}"}],
                "max_tokens": 4,
            }
            return (await http.post("/v1/chat/completions", json=body)).status_code

        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def test_a_replica_still_loading_leaves_the_model_serving_on_the_others(pods: Pods) -> None:
    await wait_for(lambda: gauge(pods, "ragway_gateway_replicas") == 2)
    assert gauge(pods, "ragway_gateway_replicas_serving") == 1  # B's address answers nothing yet
    pods.b.start()  # its engine loads: NOT_SERVING for a while
    assert await chats(pods, 4) == [200] * 4
    assert readyz(pods) == 200
    pods.b.wait_serving()
    await wait_for(lambda: gauge(pods, "ragway_gateway_replicas_serving") == 2)


async def test_calls_spread_over_every_pod_and_a_killed_one_fails_over_before_its_first_token(
    pods: Pods,
) -> None:
    before = served(pods.b)
    assert await chats(pods, 8) == [200] * 8
    assert served(pods.b) > before, "B is in DNS and SERVING yet took no request"

    assert pods.b.service is not None
    pods.b.service.stop(signal.SIGKILL)
    assert await chats(pods, 8) == [200] * 8  # whatever was sent to B went to A before a token
    await wait_for(lambda: gauge(pods, "ragway_gateway_replicas_serving") == 1)


async def test_the_replica_set_follows_pods_leaving_and_joining_dns(pods: Pods) -> None:
    pods.records.addresses = ["127.0.0.2"]  # B's pod is gone from the Service
    await wait_for(lambda: gauge(pods, "ragway_gateway_replicas") == 1)

    pods.b.host = "127.0.0.4"  # a new pod, at an address the gateway never saw
    pods.b.start()
    pods.b.wait_serving()
    pods.records.addresses = ["127.0.0.2", "127.0.0.4"]
    await wait_for(lambda: gauge(pods, "ragway_gateway_replicas_serving") == 2)
    before = served(pods.b)
    assert await chats(pods, 8) == [200] * 8
    assert served(pods.b) > before, "the new pod is in DNS and SERVING yet took no request"
