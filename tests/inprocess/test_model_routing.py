"""The model table, replica choice, failover and fallbacks, on the real gateway with stated fake
replicas (tests/utils/fakes.py). The same behaviours against real model services, with a replica
killed under load, are in tests/gateway/test_model_routing.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from ragway.cli import settings_error_lines
from ragway.core.errors import Unavailable
from ragway.core.grpc_server import create_server, set_serving
from ragway.gateway.catalog.model_table import ModelTable, ModelTableError, parse_model_table
from ragway.gateway.catalog.model_table import Price as PerMillion
from ragway.gateway.clients.model import GenerationRequest, ModelClient, ModelReplica, Sampling
from ragway.gateway.clients.replicas import ReplicaSet
from ragway.gateway.core import deps, metrics
from ragway.gateway.core.config import GatewaySettings
from ragway.gateway.core.errors import Overloaded
from ragway.gateway.generation.service import GenerationService
from tests.inprocess.conftest import ADMIN_KEY, InProcess
from tests.utils.fakes import FakeModelClient, FlakyModelClient, fake_router

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
HI = [{"role": "user", "content": "hi"}]


# -- the table -------------------------------------------------------------------------------------


def _table(**overrides: object) -> dict[str, object]:
    small = {
        "name": "small",
        "aliases": ["tiny"],
        "replicas": ["a:1", "b:1"],
        "prices": {"prompt_per_1k": 0.0005, "completion_per_1k": 0.0015},
    }
    big = {"name": "big", "replicas": ["c:1"], **overrides}
    return {"models": [small, big]}


def test_a_valid_table_reads_prices_per_thousand_tokens() -> None:
    table = parse_model_table(_table(fallbacks=["small"]), "models.yaml")
    [small, big] = table.models
    assert small.prices is not None and small.prices.per_million() == PerMillion(prompt=0.5, completion=1.5)
    assert big.prices is None and big.fallbacks == ["small"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"models": []}, "models: List should have at least 1 item"),
        (_table(replicas=[]), "models[1].replicas: List should have at least 1 item"),
        (_table(pricez={}), "models[1].pricez: Extra inputs are not permitted"),
        (_table(prices={"prompt_per_1k": -1, "completion_per_1k": 0}), "models[1].prices.prompt_per_1k"),
        (_table(aliases=["tiny"]), "the name 'tiny' is given twice"),
        (_table(name="small"), "the name 'small' is given twice"),
        (_table(fallbacks=["huge"]), "fallback 'huge' is not another model"),
        (_table(fallbacks=["big"]), "fallback 'big' is not another model"),
        (_table(name=None), "every model needs a name"),
        ([{"name": "x"}], "models.yaml: (top level): Input should be a valid dictionary"),
    ],
)
def test_a_bad_table_is_one_line_naming_the_field(data: object, message: str) -> None:
    with pytest.raises(ModelTableError) as caught:
        parse_model_table(data, "models.yaml")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_price_has_one_source() -> None:
    with pytest.raises(ModelTableError, match=r"models\[0\].prices: 'small' is priced in RAGWAY_PRICES too"):
        parse_model_table(_table(), "models.yaml", {"small": PerMillion(prompt=1, completion=1)})


def test_a_bad_models_file_stops_start_up_with_one_line_naming_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  - name: small\n    replicas: []\n")
    with pytest.raises(ValidationError) as caught:
        GatewaySettings(models_file=path)
    [line] = settings_error_lines(caught.value)
    assert line.startswith(
        f"RAGWAY_MODELS_FILE: {path}: models[0].replicas: List should have at least 1 item"
    )
    path.write_text("models: [unclosed\n")
    with pytest.raises(ValidationError) as caught:
        GatewaySettings(models_file=path)
    assert "not YAML" in settings_error_lines(caught.value)[0]


def test_without_a_file_the_table_is_the_one_model_service() -> None:
    table = GatewaySettings(model_service_addr="10.0.0.9:50051").model_table()
    assert table == ModelTable.model_validate({"models": [{"replicas": ["10.0.0.9:50051"]}]})


# -- choosing a replica ----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_least_busy_replica_wins_and_ties_go_in_turn() -> None:
    replicas = ReplicaSet(["a", "b", "c"], backoff=1, backoff_max=8)
    assert [replicas.pick().client for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]  # type: ignore[union-attr]
    # A short call (tokenize) goes where the next generation will and leaves the turn alone.
    assert [replicas.pick(rotate=False).client for _ in range(2)] == ["a", "a"]  # type: ignore[union-attr]
    replicas.replicas[0].in_flight = 2
    replicas.replicas[1].in_flight = 1
    assert replicas.pick().client == "c"  # type: ignore[union-attr]
    replicas.replicas[2].in_flight = 3
    assert replicas.pick().client == "b"  # type: ignore[union-attr]


def test_a_replica_that_is_not_serving_is_never_picked_and_unknown_ones_are() -> None:
    replicas = ReplicaSet(["a", "b"], backoff=1, backoff_max=8)
    replicas.reported(replicas.replicas[0], False)
    assert {replicas.pick().client for _ in range(4)} == {"b"}  # type: ignore[union-attr]
    replicas.reported(replicas.replicas[1], False)
    assert replicas.pick() is None


def test_a_failing_replica_backs_off_doubling_and_a_restart_brings_it_back() -> None:
    clock = Clock()
    replicas = ReplicaSet(["a", "b"], backoff=1, backoff_max=4, clock=clock)
    a, b = replicas.replicas
    for _, delay in zip(range(4), [1, 2, 4, 4], strict=True):  # doubles, capped at backoff_max
        replicas.failed(a)
        assert a.out_until == clock.now + delay
    assert {replicas.pick().client for _ in range(4)} == {"b"}  # type: ignore[union-attr]
    clock.now += 4
    assert {replicas.pick().client for _ in range(4)} == {"a", "b"}  # type: ignore[union-attr]
    replicas.failed(a)
    assert a.out_until == clock.now + 4  # still failing in a row: the longest wait
    replicas.reported(a, False)
    replicas.reported(a, True)  # restarted: SERVING again ends the backoff
    assert a.failures == 0 and replicas.pick([b]) is a


def test_when_every_replica_backs_off_the_one_back_soonest_is_tried() -> None:
    clock = Clock()
    replicas = ReplicaSet(["a", "b"], backoff=1, backoff_max=8, clock=clock)
    a, b = replicas.replicas
    replicas.failed(a)
    replicas.failed(a)
    replicas.failed(b)
    assert replicas.pick() is b


# -- failover before the first token ---------------------------------------------------------------


def _client(*replicas: FakeModelClient) -> ModelClient:
    return ModelClient(replicas, name="small")  # type: ignore[arg-type]


async def _answer(client: ModelClient) -> str:
    request = GenerationRequest("r", "hi", Sampling())
    return "".join([d.text async for m in client.generate(request, 5) for d in m.choices])


def _retries(reason: str) -> float:
    return metrics.MODEL_RETRIES.labels("small", reason)._value.get()


@pytest.mark.parametrize("refusal", [Unavailable("gone"), Overloaded("full")])
async def test_a_call_refused_before_its_first_token_is_answered_by_another_replica(
    refusal: Unavailable | Overloaded,
) -> None:
    down, up = FlakyModelClient(refuse=refusal), FakeModelClient()
    client = _client(down, up)
    reason = "unavailable" if isinstance(refusal, Unavailable) else "overloaded"
    before = _retries(reason)
    assert await _answer(client) == "Hello from the fake model"
    assert len(down.requests) == 1 and len(up.requests) == 1
    assert _retries(reason) == before + 1
    a = client.replicas.replicas[0]
    # Down is a failure that takes the replica out; full is not (it is alive, just busy).
    assert (a.failures, a.out_until > 0) == ((1, True) if reason == "unavailable" else (0, False))
    assert all(r.in_flight == 0 for r in client.replicas.replicas)


async def test_a_call_that_fails_after_its_first_token_is_never_retried() -> None:
    dying, other = FlakyModelClient(fail_after_tokens=2), FakeModelClient()
    client = _client(dying, other)
    words: list[str] = []
    with pytest.raises(Unavailable):
        async for message in client.generate(GenerationRequest("r", "hi", Sampling()), 5):
            words += [d.text for d in message.choices]
    assert "".join(words) == "Hello from"  # what the client already had stays the answer's start
    assert other.requests == []
    assert client.replicas.replicas[0].failures == 1


async def test_a_call_is_retried_once_only() -> None:
    replicas = [FlakyModelClient(refuse=Unavailable("gone")) for _ in range(3)]
    client = _client(*replicas)
    with pytest.raises(Unavailable):
        await _answer(client)
    assert [len(r.requests) for r in replicas] == [1, 1, 0]


async def test_unary_calls_fail_over_too() -> None:
    class Down(FakeModelClient):
        async def count_text_tokens(self, text: str) -> int:
            raise Unavailable("gone")

    client = _client(Down(), FakeModelClient())
    assert await client.count_text_tokens("three words here") == 3


async def test_the_health_watch_takes_a_replica_out_and_brings_it_back() -> None:
    reports: asyncio.Queue[bool] = asyncio.Queue()
    applied = asyncio.Event()

    class Watched(FakeModelClient):
        async def watch(self):  # type: ignore[no-untyped-def]
            while True:
                yield await reports.get()
                applied.set()  # the watcher asks for the next report once it acted on this one

    async def report(serving: bool) -> None:
        applied.clear()
        await reports.put(serving)
        await reports.put(serving)
        await applied.wait()  # the first report is acted on
        assert a.serving is serving

    watched, other = Watched(), FakeModelClient()
    client = _client(watched, other)
    a = client.replicas.replicas[0]
    client.start()
    try:
        await report(False)
        await _answer(client)
        await _answer(client)
        assert watched.requests == [] and len(other.requests) == 2
        await report(True)
        await _answer(client)
        await _answer(client)
        assert len(watched.requests) == 1
    finally:
        await client.close()


async def test_a_replica_watch_follows_a_ragway_grpc_servers_health() -> None:
    """Against a real gRPC server built as every ragway service is (create_server: its interceptors
    and health servicer), not a fake: the Watch stream reports each change and ends when the server
    goes away."""
    server, port, health = create_server(lambda _: None, [], "127.0.0.1", 0)
    await server.start()
    await set_serving(health, [], False)  # as the model service starts: NOT_SERVING until its engine is up
    replica = ModelReplica(f"127.0.0.1:{port}", 5.0)
    try:
        reports = replica.watch()
        assert await anext(reports) is False
        await set_serving(health, [], True)
        assert await anext(reports) is True
        await set_serving(health, [], False)
        assert await anext(reports) is False
        await server.stop(0)
        with pytest.raises(StopAsyncIteration):
            await anext(reports)
    finally:
        await server.stop(0)
        await replica.close()


# -- routing through the gateway ---------------------------------------------------------------------


@dataclass
class Routed:
    inprocess: InProcess
    replicas: dict[str, FakeModelClient]
    allowed: dict[str, str]  # Authorization header of a user on the allow-list of "big"
    other: dict[str, str]  # one who is not

    def post(self, path: str, headers: dict[str, str], **body: object) -> dict[str, object]:
        reply = self.inprocess.client.post(path, json=body, headers=headers)
        return {"status": reply.status_code, **reply.json()}


def _user(inprocess: InProcess) -> tuple[dict[str, str], str]:
    user = inprocess.client.post(
        "/v1/admin/users", json={"name": f"u{uuid.uuid4().hex[:12]}", "credits": 100}, headers=ADMIN
    ).json()
    key = inprocess.client.post("/v1/admin/keys", json={"user_id": user["id"]}, headers=ADMIN).json()
    return {"Authorization": f"Bearer {key['key']}"}, user["id"]


@pytest.fixture
def routed(inprocess: InProcess, tmp_path: Path) -> Iterator[Routed]:
    allowed, user_id = _user(inprocess)
    other, _ = _user(inprocess)
    data = _table(
        prices={"prompt_per_1k": 0.01, "completion_per_1k": 0.02},
        allow=[user_id],
    )
    data["models"][0]["fallbacks"] = ["big"]  # type: ignore[index]
    table = parse_model_table(data, "test")
    settings = GatewaySettings(data_dir=tmp_path, admin_key=SecretStr(ADMIN_KEY))
    replicas: dict[str, FakeModelClient] = {a: FakeModelClient() for a in ("a:1", "b:1", "c:1")}
    models = fake_router(settings, replicas, table)
    app = inprocess.client.app
    generation = GenerationService(settings, app.state.sessions, models, app.state.limiter)  # type: ignore[attr-defined]
    app.dependency_overrides[deps.get_models] = lambda: models  # type: ignore[attr-defined]
    app.dependency_overrides[deps.get_generation] = lambda: generation  # type: ignore[attr-defined]
    yield Routed(inprocess, replicas, allowed, other)


def _ids(routed: Routed, headers: dict[str, str]) -> dict[str, str]:
    cards = routed.inprocess.client.get("/v1/models", headers=headers).json()["data"]
    return {c["id"]: c["root"] for c in cards if c["mode"] == "chat"}  # embedders: test_embedding_models


def test_models_lists_every_name_and_alias_the_caller_may_use(routed: Routed) -> None:
    assert _ids(routed, routed.allowed) == {"small": "small", "tiny": "small", "big": "big"}
    assert _ids(routed, routed.other) == {"small": "small", "tiny": "small"}
    card = routed.inprocess.client.get("/v1/models/tiny", headers=routed.other).json()
    assert card["max_model_len"] == 4096 and card["dtype"] == "float32"
    hidden = routed.inprocess.client.get("/v1/models/big", headers=routed.other)
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses", "/tokenize"])
def test_an_unknown_or_forbidden_model_is_404_model_not_found(routed: Routed, path: str) -> None:
    body = {"input": "hi"} if path == "/v1/responses" else {"messages": HI}
    for model, headers in (("huge", routed.allowed), ("big", routed.other)):
        reply = routed.post(path, headers, model=model, **body)
        assert reply["status"] == 404, reply
        assert reply["error"]["code"] == "model_not_found" and reply["error"]["param"] == "model"  # type: ignore[index]


def test_requests_route_by_name_or_alias_and_are_billed_at_that_models_price(routed: Routed) -> None:
    by_alias = routed.post("/v1/chat/completions", routed.allowed, model="tiny", messages=HI)
    by_name = routed.post("/v1/completions", routed.allowed, model="big", prompt="hi there", max_tokens=5)
    assert by_alias["model"] == "small" and by_name["model"] == "big"
    assert sum(len(routed.replicas[a].requests) for a in ("a:1", "b:1")) == 1
    assert len(routed.replicas["c:1"].requests) == 1
    usage = routed.inprocess.client.get("/v1/usage", headers=routed.allowed).json()["data"]
    cost = {day["model"]: (day["prompt_tokens"], day["completion_tokens"], day["cost"]) for day in usage}
    prompt, completion, small_cost = cost["small"]
    assert small_cost == pytest.approx((prompt * 0.0005 + completion * 0.0015) / 1000, abs=1e-6)
    prompt, completion, big_cost = cost["big"]
    assert big_cost == pytest.approx((prompt * 0.01 + completion * 0.02) / 1000, abs=1e-6)


def test_the_tokenizer_routes_by_model_too(routed: Routed) -> None:
    reply = routed.post("/tokenize", routed.other, model="tiny", prompt="hey")
    assert reply["status"] == 200 and reply["tokens"] == [ord(c) for c in "hey"]


def test_when_every_replica_is_overloaded_a_fallback_takes_the_request_at_its_price(routed: Routed) -> None:
    for address in ("a:1", "b:1"):
        routed.replicas[address] = FlakyModelClient(refuse=Overloaded("full"))
    # The router holds its clients; swap the fakes in where it reaches them.
    models = routed.inprocess.client.app.dependency_overrides[deps.get_models]()  # type: ignore[attr-defined]
    for replica, address in zip(models.models[0].client.replicas.replicas, ("a:1", "b:1"), strict=True):
        replica.client = routed.replicas[address]
    before = metrics.MODEL_FALLBACKS.labels("small", "big")._value.get()
    reply = routed.post("/v1/chat/completions", routed.allowed, model="small", messages=HI)
    assert reply["status"] == 200 and reply["model"] == "big"
    assert metrics.MODEL_FALLBACKS.labels("small", "big")._value.get() == before + 1
    usage = routed.inprocess.client.get("/v1/usage", headers=routed.allowed).json()["data"]
    [day] = usage
    assert day["model"] == "big"
    assert day["cost"] == pytest.approx(
        (day["prompt_tokens"] * 0.01 + day["completion_tokens"] * 0.02) / 1000, abs=1e-6
    )
    # Someone who may not use the fallback gets the overload, not the other model.
    refused = routed.post("/v1/chat/completions", routed.other, model="small", messages=HI)
    assert refused["status"] == 503 and refused["error"]["code"] == "overloaded"  # type: ignore[index]


def test_readyz_names_the_models_with_no_healthy_replica(routed: Routed) -> None:
    models = routed.inprocess.client.app.dependency_overrides[deps.get_models]()  # type: ignore[attr-defined]
    small, big = (m.client.replicas for m in models.models)
    for replica in small.replicas:
        small.reported(replica, True)
    big.reported(big.replicas[0], False)
    ready = routed.inprocess.client.get("/readyz")
    assert ready.json()["unavailable_models"] == ["big"]
    assert ready.json()["checks"]["model"] is True
    small.reported(small.replicas[0], False)
    small.reported(small.replicas[1], False)
    ready = routed.inprocess.client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["unavailable_models"] == ["small", "big"]
