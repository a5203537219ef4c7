"""Two model services behind one gateway through a model table, against the real engine.

The bundled model is served by two model services, A (the suite's own) and B (this module's), and
the table lists it under three names: "smol" (alias "smol-alias") on both replicas, "smol-solo" on
A only, allowed to one user, at a price of its own, and "smol-b" on B only. In order: routing by name
and alias, /v1/models, per-model prices in usage, forbidden and unknown models; then B is killed
with SIGKILL under 16 concurrent streams — the requests not yet streaming complete on A, the streams
B was writing end with an error event, /readyz names "smol-b" — and B, restarted, takes requests
again.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import Gateway, start_gateway
from tests.reliability.conftest import Figures, OwnModel, kill_hard
from tests.reliability.streams import StreamResult, stream_chat
from tests.utils.factories import Account, make_account
from tests.utils.processes import free_port

PRICES = {"smol": (0.001, 0.002), "smol-solo": (0.01, 0.03)}  # credits per 1k prompt / completion tokens
BACK_IN_ROTATION = 300.0  # a restart of B (eager engine, 2 shared cores) and the gateway noticing it


def models_file(path: Path, a: str, b: str, allowed: list[str]) -> Path:
    def prices(name: str) -> dict[str, float]:
        return {"prompt_per_1k": PRICES[name][0], "completion_per_1k": PRICES[name][1]}

    solo = {"name": "smol-solo", "replicas": [a], "prices": prices("smol-solo")}
    if allowed:
        solo["allow"] = allowed
    models = [
        {"name": "smol", "aliases": ["smol-alias"], "replicas": [a, b], "prices": prices("smol")},
        solo,
        {"name": "smol-b", "replicas": [b]},
    ]
    path.write_text(yaml.safe_dump({"models": models}))
    return path


@dataclass
class Routed:
    gateway: Gateway
    a: OwnModel
    b: OwnModel
    allowed: Account  # may use smol-solo
    other: Account  # may not


@pytest.fixture(scope="module")
def replica_b() -> Iterator[OwnModel]:
    with OwnModel(free_port(), free_port(), name="rel-model-b").running() as model:
        yield model


@pytest.fixture(scope="module")
def routed(
    own_model: OwnModel, replica_b: OwnModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Routed]:
    own_model.ensure_running()
    data_dir = tmp_path_factory.mktemp("gw-routed")
    table = data_dir / "models.yaml"
    nowhere = f"127.0.0.1:{free_port()}"  # chat needs no retrieval service
    # The allow-list names a user id, which exists once the gateway made the user: a first start
    # makes the users, a second serves the table that names one of them.
    first = start_gateway(
        "gateway-routed-setup",
        data_dir,
        own_model.address,
        nowhere,
        extra_env={"RAGWAY_MODELS_FILE": str(models_file(table, own_model.address, replica_b.address, []))},
    )
    allowed, other = make_account(first.url, first.admin_key), make_account(first.url, first.admin_key)
    first.service.stop()
    models_file(table, own_model.address, replica_b.address, [allowed.user_id])
    gateway = start_gateway(
        "gateway-routed", data_dir, own_model.address, nowhere, extra_env={"RAGWAY_MODELS_FILE": str(table)}
    )
    # The users live in the database both gateways share; the keys now go to the second one.
    yield Routed(
        gateway,
        own_model,
        replica_b,
        replace(allowed, base_url=gateway.url),
        replace(other, base_url=gateway.url),
    )
    gateway.service.stop()


def metric(url: str, name: str) -> float:
    """A metric's value (summed over its label sets) from a Prometheus endpoint; 0 when absent."""
    text = httpx.get(url, timeout=5).text
    return sum(float(m) for m in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def served(model: OwnModel) -> float:
    """Requests the model service finished (its end-to-end latency histogram's count)."""
    return metric(model.metrics_url, "ragway_model_e2e_latency_seconds_count")


def chat(account: Account, model: str, content: str = "Say hi.", max_tokens: int = 4) -> httpx.Response:
    with account.http() as http:
        return http.post(
            "/v1/chat/completions",
            json={
                "model": model,
                "messages": [{"role": "user", "content": content}],
                "max_tokens": max_tokens,
            },
        )


def test_models_lists_every_name_and_alias_the_caller_may_use(routed: Routed) -> None:
    def ids(account: Account) -> dict[str, tuple[str, int]]:
        with account.http() as http:
            cards = http.get("/v1/models").json()["data"]
        return {c["id"]: (c["root"], c["max_model_len"]) for c in cards}

    allowed = ids(routed.allowed)
    assert set(allowed) == {"smol", "smol-alias", "smol-solo", "smol-b"}
    assert allowed["smol-alias"][0] == "smol" and allowed["smol-solo"][1] > 0  # from GetModelInfo
    assert set(ids(routed.other)) == {"smol", "smol-alias", "smol-b"}


def test_requests_route_by_name_and_alias_and_are_billed_at_each_models_price(routed: Routed) -> None:
    a_before, b_before = served(routed.a), served(routed.b)
    for i in range(4):
        reply = chat(routed.allowed, "smol-alias" if i % 2 else "smol", f"Say hi, number {i}.")
        assert reply.status_code == 200 and reply.json()["model"] == "smol", reply.text
    solo = chat(routed.allowed, "smol-solo")
    assert solo.status_code == 200 and solo.json()["model"] == "smol-solo", solo.text
    # smol spread over both replicas; smol-solo only ever reaches A.
    assert served(routed.b) - b_before >= 1 and served(routed.a) - a_before >= 2
    with routed.allowed.http() as http:
        usage = {day["model"]: day for day in http.get("/v1/usage").json()["data"]}
    assert set(usage) == {"smol", "smol-solo"} and usage["smol"]["requests"] == 4
    for name, (prompt_price, completion_price) in PRICES.items():
        day = usage[name]
        expected = (day["prompt_tokens"] * prompt_price + day["completion_tokens"] * completion_price) / 1000
        assert day["cost"] == pytest.approx(expected, abs=1e-5), name


def test_a_forbidden_or_unknown_model_is_404_model_not_found(routed: Routed) -> None:
    for model in ("smol-solo", "no-such-model"):
        reply = chat(routed.other, model)
        assert reply.status_code == 404, reply.text
        assert (
            reply.json()["error"]["code"] == "model_not_found" and reply.json()["error"]["param"] == "model"
        )


def _pending_on(model: OwnModel) -> float:
    """Requests B admitted that have no first token yet."""
    running = metric(model.metrics_url, "ragway_model_running_requests")
    started = metric(model.metrics_url, "ragway_model_ttft_seconds_count")
    finished = served(model)
    return running - (started - finished)


@pytest.mark.faults  # make test-faults
async def test_killing_a_replica_under_16_streams_fails_over_what_had_not_started(
    routed: Routed, figures: Figures
) -> None:
    retries_url = f"{routed.gateway.url}/metrics"
    retries_before = metric(retries_url, "ragway_gateway_model_retries_total")
    async with httpx.AsyncClient(
        base_url=routed.gateway.url, headers=routed.allowed.headers, timeout=300
    ) as http:
        # Wave 1: 8 long answers, streaming on both replicas.
        wave1 = [StreamResult() for _ in range(8)]
        tasks = [
            # ignore_eos: still streaming when B is killed, however short the model would answer.
            asyncio.create_task(
                stream_chat(http, f"Tell a long story about ship {i}.", 200, r, model="smol", ignore_eos=True)
            )
            for i, r in enumerate(wave1)
        ]
        for r in wave1:
            await asyncio.wait_for(r.first_token.wait(), 240)
        # Wave 2: 8 long prompts (a long prefill, so they sit admitted without a token for a while).
        filler = " ".join(["the harbour was quiet that morning and the gulls circled the masts"] * 60)
        wave2 = [StreamResult() for _ in range(8)]
        tasks += [
            asyncio.create_task(
                stream_chat(http, f"{uuid.uuid4().hex} {filler} Summarise in one line.", 32, r, model="smol")
            )
            for r in wave2
        ]
        deadline = time.monotonic() + 120
        while _pending_on(routed.b) < 1:  # B holds a request that has not started streaming
            assert time.monotonic() < deadline, "no request waited on B"
            await asyncio.sleep(0.02)
        had_tokens = [bool(r.content) for r in wave1 + wave2]
        kill_hard(routed.b.service)  # type: ignore[arg-type]
        killed_at = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*tasks), 300)
    results = wave1 + wave2
    for result, streaming in zip(results, had_tokens, strict=True):
        assert result.status == 200 and result.error is None, result  # never a broken connection
        if not streaming:
            assert result.done and result.error_event is None, result  # completed on A
        else:
            assert result.done or result.error_event is not None, result
    cut = [r for r in results if r.error_event is not None]
    assert cut, "the streams B was writing end with an error event"
    assert all(streaming for r, streaming in zip(results, had_tokens, strict=True) if r.error_event)
    retried = metric(retries_url, "ragway_gateway_model_retries_total") - retries_before
    assert retried >= 1
    with routed.allowed.http() as http:
        ready = http.get("/readyz").json()
    assert ready["unavailable_models"] == ["smol-b"] and ready["checks"]["model"] is True
    figures.add(
        "model failover",
        f"B killed under 16 streams: {retried:.0f} retried on A before their first token, "
        f"{len(cut)} started streams ended with an error event, "
        f"{sum(r.done for r in results)} completed; load {os.getloadavg()[0]:.1f}",
    )

    # B restarted at the same address: the health watch sees it SERVING and it takes requests again.
    routed.b.start()
    routed.b.wait_serving()
    deadline = killed_at + BACK_IN_ROTATION
    while True:
        with routed.allowed.http() as http:
            if http.get("/readyz").json()["unavailable_models"] == []:
                break
        assert time.monotonic() < deadline, "the gateway never saw B serving again"
        await asyncio.sleep(0.5)
    figures.add("model failover", f"B back in rotation {time.monotonic() - killed_at:.0f} s after the kill")
    for i in range(4):
        assert chat(routed.allowed, "smol", f"Say hello {i}.").status_code == 200
    assert served(routed.b) >= 1  # the restarted B (its metrics start from zero) served some of them
