"""One metering path, generated from the gateway's route table.

Every route is classified in METERING below — it spends tokens, it is work counted against the
key's requests per minute, or it is free — and a route added to the app without a row fails
`test_every_route_is_classified`, so no route ships unmetered. Each spending route then has a
case: it sends one real request and the test checks that the request left usage records equal to
the tokens the response reports (or, where a response reports none, the tokens the embedder read:
the stored chunks of a document, the query of a search), a ledger that explains their cost, and
that the key's RPM counter moved by one request and its TPM counter by those tokens in Redis.

Here the gateway runs in process (real SQLite, real Redis, real auth, billing and limiter; the
stated fakes of tests/utils/fakes.py behind the gRPC boundary, the ingestion worker included).
The same cases run against the real engine and retrieval service in
`test_every_spending_route_is_metered_on_the_real_stack` (marked engine).
Then one test per money leak issue 25 named, each failing on the code before the one path.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from ragway.gateway.accounts.billing import cost_micro
from ragway.gateway.app import create_app
from ragway.gateway.core import deps
from ragway.gateway.core.config import GatewaySettings
from ragway.gateway.generation.service import GenerationService
from ragway.gateway.rag.tokens import embedding_tokens
from tests.utils.db import rows
from tests.utils.fakes import FAKE_MODEL, FakeModelClient, FakeRetrievalClient, fake_router
from tests.utils.routes import app_routes

REDIS_URL = "redis://127.0.0.1:6379/0"
ADMIN_KEY = "rgw_" + "m" * 43
EMBEDDER = "all-MiniLM-L6-v2"
EMBEDDER_ALIAS = "sentence-transformers/all-MiniLM-L6-v2"
FACT = "The capital of Veltravia is Quorvin, a harbour town on the Glass Sea."
QUESTION = "What is the capital of Veltravia?"
# Limits high enough never to refuse, set so the key's counters are kept at all.
LIMITS = {"rpm_limit": 10_000, "tpm_limit": 10_000_000}

Kind = Literal["tokens", "requests", "free"]
# What each route costs.
#   tokens:   spends tokens -> usage records, ledger, RPM and TPM (a case below proves it)
#   requests: work for a service but no tokens (tokenizing) -> counted against RPM only
#   free:     reads, writes of the caller's own records, admin, probes -> not metered
METERING: dict[tuple[str, str], Kind] = {
    ("POST", "/v1/chat/completions"): "tokens",
    ("POST", "/v1/completions"): "tokens",
    ("POST", "/v1/responses"): "tokens",
    ("GET", "/v1/responses/{response_id}"): "free",
    ("DELETE", "/v1/responses/{response_id}"): "free",
    ("GET", "/v1/responses/{response_id}/input_items"): "free",
    ("POST", "/tokenize"): "requests",
    ("POST", "/detokenize"): "requests",
    ("GET", "/v1/models"): "free",
    ("GET", "/v1/models/{model_id:path}"): "free",
    ("POST", "/v1/embeddings"): "tokens",
    ("POST", "/v1/rerank"): "tokens",
    ("POST", "/v2/rerank"): "tokens",
    ("POST", "/v1/score"): "tokens",
    ("GET", "/v1/conversations"): "free",
    ("GET", "/v1/conversations/{conversation_id}"): "free",
    ("PATCH", "/v1/conversations/{conversation_id}"): "free",
    ("DELETE", "/v1/conversations/{conversation_id}"): "free",
    ("POST", "/v1/collections"): "free",
    ("GET", "/v1/collections"): "free",
    ("GET", "/v1/collections/{name}"): "free",
    ("DELETE", "/v1/collections/{name}"): "free",
    ("POST", "/v1/collections/{name}/documents"): "tokens",
    ("GET", "/v1/collections/{name}/documents"): "free",
    ("GET", "/v1/collections/{name}/documents/{document_id:path}"): "free",
    ("PUT", "/v1/collections/{name}/documents/{document_id:path}"): "tokens",
    ("DELETE", "/v1/collections/{name}/documents/{document_id:path}"): "free",
    ("POST", "/v1/collections/{name}/search"): "tokens",
    ("POST", "/v1/files"): "free",
    ("GET", "/v1/files"): "free",
    ("GET", "/v1/files/{file_id}"): "free",
    ("GET", "/v1/files/{file_id}/content"): "free",
    ("DELETE", "/v1/files/{file_id}"): "free",
    ("POST", "/v1/vector_stores"): "tokens",  # with file_ids: they are ingested (embedded)
    ("GET", "/v1/vector_stores"): "free",
    ("GET", "/v1/vector_stores/{vector_store_id}"): "free",
    ("POST", "/v1/vector_stores/{vector_store_id}"): "free",
    ("DELETE", "/v1/vector_stores/{vector_store_id}"): "free",
    ("POST", "/v1/vector_stores/{vector_store_id}/search"): "tokens",
    ("POST", "/v1/vector_stores/{vector_store_id}/files"): "tokens",
    ("GET", "/v1/vector_stores/{vector_store_id}/files"): "free",
    ("GET", "/v1/vector_stores/{vector_store_id}/files/{file_id}"): "free",
    ("POST", "/v1/vector_stores/{vector_store_id}/files/{file_id}"): "tokens",  # re-embedded
    ("DELETE", "/v1/vector_stores/{vector_store_id}/files/{file_id}"): "free",
    ("GET", "/v1/vector_stores/{vector_store_id}/files/{file_id}/content"): "free",
    ("POST", "/v1/vector_stores/{vector_store_id}/file_batches"): "tokens",
    ("GET", "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}"): "free",
    ("POST", "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel"): "free",
    ("GET", "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/files"): "free",
    ("GET", "/v1/me"): "free",
    ("GET", "/v1/usage"): "free",
    ("GET", "/v1/admin/usage"): "free",
    ("POST", "/v1/admin/users"): "free",
    ("GET", "/v1/admin/users"): "free",
    ("GET", "/v1/admin/users/{user_id}"): "free",
    ("DELETE", "/v1/admin/users/{user_id}"): "free",
    ("POST", "/v1/admin/users/{user_id}/credits"): "free",
    ("POST", "/v1/admin/keys"): "free",
    ("GET", "/v1/admin/keys"): "free",
    ("PATCH", "/v1/admin/keys/{key_id}"): "free",
    ("DELETE", "/v1/admin/keys/{key_id}"): "free",
    ("GET", "/healthz"): "free",
    ("GET", "/readyz"): "free",
    ("GET", "/metrics"): "free",
}


def test_every_route_is_classified() -> None:
    routes = app_routes()
    missing = routes - set(METERING)
    assert not missing, f"routes with no row in METERING (do they spend tokens?): {sorted(missing)}"
    stale = set(METERING) - routes
    assert not stale, f"rows for routes that no longer exist: {sorted(stale)}"


def test_every_spending_route_has_a_case() -> None:
    spending = {route for route, kind in METERING.items() if kind == "tokens"}
    assert spending == set(CASES), f"spending routes without a case: {sorted(spending - set(CASES))}"


# -- the stacks --------------------------------------------------------------------------------------


@dataclass
class Account:
    user_id: str
    key_id: str
    headers: dict[str, str]


@dataclass
class Stack:
    """A gateway (in process or a live process) with its database and the Redis its limiter uses."""

    http: TestClient | httpx.Client
    admin_key: str
    database_url: str  # a synchronous SQLAlchemy URL
    model: str

    def account(self, **key_fields: Any) -> Account:
        admin = {"Authorization": f"Bearer {self.admin_key}"}
        user = self.http.post(
            "/v1/admin/users", json={"name": f"m{uuid.uuid4().hex[:12]}", "credits": 100}, headers=admin
        )
        assert user.status_code == 201, user.text
        key = self.http.post(
            "/v1/admin/keys", json={"user_id": user.json()["id"], **LIMITS, **key_fields}, headers=admin
        )
        assert key.status_code == 201, key.text
        return Account(user.json()["id"], key.json()["id"], {"Authorization": f"Bearer {key.json()['key']}"})

    def post(self, account: Account, path: str, body: dict[str, Any] | None = None, **kw: Any) -> Any:
        reply = self.http.post(path, json=body, headers=account.headers, **kw)
        assert reply.status_code in (200, 201), f"{path}: {reply.status_code} {reply.text}"
        return reply.json()

    def get(self, account: Account, path: str) -> Any:
        reply = self.http.get(path, headers=account.headers)
        assert reply.status_code == 200, f"{path}: {reply.status_code} {reply.text}"
        return reply.json()

    # what a case sets up (through routes measured before its one request)

    def collection(self, account: Account) -> str:
        name = f"c{uuid.uuid4().hex[:10]}"
        self.post(account, "/v1/collections", {"name": name})
        self.post(account, f"/v1/collections/{name}/documents", {"documents": [{"id": "fact", "text": FACT}]})
        return name

    def upload(self, account: Account, text: str = FACT) -> str:
        reply = self.http.post(
            "/v1/files",
            files={"file": (f"f{uuid.uuid4().hex[:6]}.txt", text.encode())},
            data={"purpose": "assistants"},
            headers=account.headers,
        )
        assert reply.status_code in (200, 201), reply.text
        return str(reply.json()["id"])

    def store(self, account: Account) -> str:
        return str(self.post(account, "/v1/vector_stores", {"name": "facts"})["id"])

    def ingested(self, account: Account, store_id: str, file_id: str) -> list[str]:
        """Wait until the file is ingested; the chunks the embedder read."""
        deadline = time.monotonic() + 60
        while True:
            status = self.get(account, f"/v1/vector_stores/{store_id}/files/{file_id}")["status"]
            if status == "completed":
                break
            assert status == "in_progress" and time.monotonic() < deadline, status
            time.sleep(0.1)
        content = self.get(account, f"/v1/vector_stores/{store_id}/files/{file_id}/content")
        return [part["text"] for part in content["data"]]

    def document_chunks(self, account: Account, collection: str, document_id: str) -> list[str]:
        doc = self.get(account, f"/v1/collections/{collection}/documents/{document_id}")
        return [c["text"] for c in doc["chunks"]]

    # what the test reads

    def counter(self, key_id: str, kind: str) -> int:
        """The key's RPM or TPM counter in Redis, over every window it has (a case may span two)."""
        client = redis.Redis.from_url(REDIS_URL)
        return sum(int(client.get(k) or 0) for k in client.keys(f"ragway:rl:{key_id}:{kind}:*"))

    def usage(self, user_id: str, after: int) -> list[Any]:
        return rows(
            self.database_url,
            "SELECT id, request_id, model, endpoint, prompt_tokens, completion_tokens, cached_tokens, "
            "cost, status FROM usage_records WHERE user_id = :u AND id > :a ORDER BY id",
            u=user_id,
            a=after,
        )

    def last_usage_id(self) -> int:
        return int(rows(self.database_url, "SELECT COALESCE(MAX(id), 0) FROM usage_records")[0][0])

    def ledger(self, request_id: str) -> int:
        return int(
            rows(
                self.database_url,
                "SELECT COALESCE(SUM(amount), 0) FROM credit_ledger WHERE request_id = :r",
                r=request_id,
            )[0][0]
        )


@dataclass
class Snapshot:
    """The key's counters and the last usage record just before the case's one request."""

    rpm: int
    tpm: int
    usage_id: int


@dataclass
class Spent:
    """A usage record the request must leave."""

    endpoint: str
    prompt_tokens: int
    completion_tokens: int = 0
    model: str | None = None  # None: whatever the route served (a generation's model)


@dataclass
class Measured:
    before: Snapshot
    spent: list[Spent] = field(default_factory=list)


def snap(stack: Stack, account: Account) -> Snapshot:
    return Snapshot(
        stack.counter(account.key_id, "rpm"), stack.counter(account.key_id, "tpm"), stack.last_usage_id()
    )


def embedded(texts: list[str]) -> int:
    return embedding_tokens().count(texts)


# -- one case per spending route: set up, snapshot, send the one request, say what it spent -------


def chat(stack: Stack, a: Account) -> Measured:
    m = Measured(snap(stack, a))
    body = stack.post(
        a,
        "/v1/chat/completions",
        {"model": stack.model, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 8},
    )
    m.spent.append(
        Spent("chat.completions", body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"])
    )
    return m


def completion(stack: Stack, a: Account) -> Measured:
    m = Measured(snap(stack, a))
    body = stack.post(a, "/v1/completions", {"model": stack.model, "prompt": QUESTION, "max_tokens": 8})
    m.spent.append(Spent("completions", body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]))
    return m


def response(stack: Stack, a: Account) -> Measured:
    m = Measured(snap(stack, a))
    body = stack.post(
        a, "/v1/responses", {"model": stack.model, "input": QUESTION, "max_output_tokens": 16, "store": False}
    )
    m.spent.append(Spent("responses", body["usage"]["input_tokens"], body["usage"]["output_tokens"]))
    return m


def embeddings(stack: Stack, a: Account) -> Measured:
    m = Measured(snap(stack, a))
    body = stack.post(a, "/v1/embeddings", {"model": EMBEDDER_ALIAS, "input": [FACT, QUESTION]})
    m.spent.append(Spent("embeddings", body["usage"]["prompt_tokens"], model=EMBEDDER))
    return m


def reranking(path: str) -> Callable[[Stack, Account], Measured]:
    def case(stack: Stack, a: Account) -> Measured:
        m = Measured(snap(stack, a))
        body = stack.post(a, path, {"model": stack.model, "query": QUESTION, "documents": [FACT, "moonfish"]})
        m.spent.append(Spent("rerank", body["usage"]["prompt_tokens"]))
        return m

    return case


def score(stack: Stack, a: Account) -> Measured:
    m = Measured(snap(stack, a))
    body = stack.post(a, "/v1/score", {"model": stack.model, "text_1": QUESTION, "text_2": [FACT]})
    m.spent.append(Spent("score", body["usage"]["prompt_tokens"]))
    return m


def add_documents(stack: Stack, a: Account) -> Measured:
    name = f"c{uuid.uuid4().hex[:10]}"
    stack.post(a, "/v1/collections", {"name": name})
    m = Measured(snap(stack, a))
    stack.post(a, f"/v1/collections/{name}/documents", {"documents": [{"id": "fact", "text": FACT}]})
    m.spent.append(
        Spent("collections.documents", embedded(stack.document_chunks(a, name, "fact")), model=EMBEDDER)
    )
    return m


def replace_document(stack: Stack, a: Account) -> Measured:
    name = stack.collection(a)
    m = Measured(snap(stack, a))
    stack.http.put(
        f"/v1/collections/{name}/documents/fact", json={"text": QUESTION + " " + FACT}, headers=a.headers
    ).raise_for_status()
    m.spent.append(
        Spent("collections.documents", embedded(stack.document_chunks(a, name, "fact")), model=EMBEDDER)
    )
    return m


def search_collection(stack: Stack, a: Account) -> Measured:
    name = stack.collection(a)
    m = Measured(snap(stack, a))
    stack.post(a, f"/v1/collections/{name}/search", {"query": QUESTION})
    m.spent.append(Spent("collections.search", embedded([QUESTION]), model=EMBEDDER))
    return m


def create_store_with_files(stack: Stack, a: Account) -> Measured:
    file_id = stack.upload(a)
    m = Measured(snap(stack, a))
    store_id = stack.post(a, "/v1/vector_stores", {"name": "facts", "file_ids": [file_id]})["id"]
    chunks = stack.ingested(a, store_id, file_id)
    m.spent.append(Spent("vector_stores.ingest", embedded(chunks), model=EMBEDDER))
    return m


def attach_file(stack: Stack, a: Account) -> Measured:
    store_id, file_id = stack.store(a), stack.upload(a)
    m = Measured(snap(stack, a))
    stack.post(a, f"/v1/vector_stores/{store_id}/files", {"file_id": file_id})
    m.spent.append(
        Spent("vector_stores.ingest", embedded(stack.ingested(a, store_id, file_id)), model=EMBEDDER)
    )
    return m


def update_file(stack: Stack, a: Account) -> Measured:
    store_id, file_id = stack.store(a), stack.upload(a)
    stack.post(a, f"/v1/vector_stores/{store_id}/files", {"file_id": file_id})
    stack.ingested(a, store_id, file_id)
    m = Measured(snap(stack, a))
    stack.post(a, f"/v1/vector_stores/{store_id}/files/{file_id}", {"attributes": {"topic": "geography"}})
    m.spent.append(
        Spent("vector_stores.ingest", embedded(stack.ingested(a, store_id, file_id)), model=EMBEDDER)
    )
    return m


def file_batch(stack: Stack, a: Account) -> Measured:
    store_id, file_id = stack.store(a), stack.upload(a)
    m = Measured(snap(stack, a))
    stack.post(a, f"/v1/vector_stores/{store_id}/file_batches", {"file_ids": [file_id]})
    m.spent.append(
        Spent("vector_stores.ingest", embedded(stack.ingested(a, store_id, file_id)), model=EMBEDDER)
    )
    return m


def search_store(stack: Stack, a: Account) -> Measured:
    store_id, file_id = stack.store(a), stack.upload(a)
    stack.post(a, f"/v1/vector_stores/{store_id}/files", {"file_id": file_id})
    stack.ingested(a, store_id, file_id)
    m = Measured(snap(stack, a))
    stack.post(a, f"/v1/vector_stores/{store_id}/search", {"query": QUESTION})
    m.spent.append(Spent("vector_stores.search", embedded([QUESTION]), model=EMBEDDER))
    return m


CASES: dict[tuple[str, str], Callable[[Stack, Account], Measured]] = {
    ("POST", "/v1/chat/completions"): chat,
    ("POST", "/v1/completions"): completion,
    ("POST", "/v1/responses"): response,
    ("POST", "/v1/embeddings"): embeddings,
    ("POST", "/v1/rerank"): reranking("/v1/rerank"),
    ("POST", "/v2/rerank"): reranking("/v2/rerank"),
    ("POST", "/v1/score"): score,
    ("POST", "/v1/collections/{name}/documents"): add_documents,
    ("PUT", "/v1/collections/{name}/documents/{document_id:path}"): replace_document,
    ("POST", "/v1/collections/{name}/search"): search_collection,
    ("POST", "/v1/vector_stores"): create_store_with_files,
    ("POST", "/v1/vector_stores/{vector_store_id}/search"): search_store,
    ("POST", "/v1/vector_stores/{vector_store_id}/files"): attach_file,
    ("POST", "/v1/vector_stores/{vector_store_id}/files/{file_id}"): update_file,
    ("POST", "/v1/vector_stores/{vector_store_id}/file_batches"): file_batch,
}
SPENDING = sorted(route for route, kind in METERING.items() if kind == "tokens")


def check_metered(stack: Stack, route: tuple[str, str]) -> None:
    account = stack.account()
    measured = CASES[route](stack, account)
    records = stack.usage(account.user_id, measured.before.usage_id)
    got = sorted((r.endpoint, r.prompt_tokens, r.completion_tokens) for r in records)
    want = sorted((s.endpoint, s.prompt_tokens, s.completion_tokens) for s in measured.spent)
    assert got == want, f"{route}: usage records {got}, the response reported {want}"
    settings = GatewaySettings()
    for record, spent in zip(
        sorted(records, key=lambda r: r.endpoint),
        sorted(measured.spent, key=lambda s: s.endpoint),
        strict=True,
    ):
        assert record.status == "ok"
        if spent.model is not None:
            assert record.model == spent.model, f"{route}: billed under {record.model!r}"
        price = settings.price(record.model)
        assert record.cost == cost_micro(
            price, record.prompt_tokens, record.completion_tokens, record.cached_tokens
        )
        assert record.cost > 0, f"{route}: {record.prompt_tokens} tokens cost nothing"
        # The ledger explains the bill: what was reserved, less what was refunded.
        assert stack.ledger(record.request_id) == -record.cost
    tokens = sum(s.prompt_tokens + s.completion_tokens for s in measured.spent)
    after = snap(stack, account)
    assert after.rpm - measured.before.rpm == 1, (
        f"{route}: counted {after.rpm - measured.before.rpm} requests"
    )
    assert after.tpm - measured.before.tpm == tokens, (
        f"{route}: TPM moved by {after.tpm - measured.before.tpm}"
    )


# -- in process ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inprocess_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp_path: Path = tmp_path_factory.mktemp("metering")
    settings = GatewaySettings(
        data_dir=tmp_path,
        admin_key=SecretStr(ADMIN_KEY),
        frontend_dir=tmp_path / "none",
        redis_url=SecretStr(REDIS_URL),
        ingest_poll_seconds=0.1,
    )
    app = create_app(settings)
    model, retrieval = FakeModelClient(), FakeRetrievalClient()
    with TestClient(app) as client:
        models = fake_router(settings, {model.address: model})
        generation = GenerationService(settings, app.state.sessions, models, app.state.limiter)
        app.dependency_overrides[deps.get_models] = lambda: models
        app.dependency_overrides[deps.get_retrieval_client] = lambda: retrieval
        app.dependency_overrides[deps.get_generation] = lambda: generation
        app.state.ingestion.retrieval = retrieval  # the worker writes to the fake store too
        url = settings.sqlalchemy_url().replace("+aiosqlite", "")
        yield Stack(client, ADMIN_KEY, url, FAKE_MODEL)


@pytest.mark.parametrize("route", SPENDING, ids=lambda r: f"{r[0]} {r[1]}")
def test_every_spending_route_is_metered(inprocess_stack: Stack, route: tuple[str, str]) -> None:
    check_metered(inprocess_stack, route)


# -- the money leaks of issue 25, each failing before the one path -----------------------------------


def test_a_document_write_and_a_search_show_in_usage(inprocess_stack: Stack) -> None:
    stack, a = inprocess_stack, inprocess_stack.account()
    name = stack.collection(a)
    stack.post(a, f"/v1/collections/{name}/search", {"query": QUESTION})
    usage = stack.get(a, "/v1/usage")
    assert sum(d["requests"] for d in usage["data"]) == 2, usage
    assert sum(d["prompt_tokens"] for d in usage["data"]) > 0, usage
    assert stack.counter(a.key_id, "rpm") == 2


def test_document_writes_and_searches_are_refused_past_the_rpm_limit(inprocess_stack: Stack) -> None:
    stack, a = inprocess_stack, inprocess_stack.account(rpm_limit=2)
    name = f"c{uuid.uuid4().hex[:10]}"
    stack.post(a, "/v1/collections", {"name": name})  # free: not counted
    stack.post(a, f"/v1/collections/{name}/documents", {"documents": [{"text": FACT}]})
    stack.post(a, f"/v1/collections/{name}/search", {"query": QUESTION})
    refused = stack.http.post(f"/v1/collections/{name}/search", json={"query": QUESTION}, headers=a.headers)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"


def test_a_vector_store_written_through_collections_is_billed(inprocess_stack: Stack) -> None:
    stack, a = inprocess_stack, inprocess_stack.account()
    store_id = stack.store(a)
    before = stack.last_usage_id()
    stack.post(a, f"/v1/collections/{store_id}/documents", {"documents": [{"id": "fact", "text": FACT}]})
    (record,) = stack.usage(a.user_id, before)
    assert record.endpoint == "collections.documents"
    assert record.prompt_tokens == embedded(stack.document_chunks(a, store_id, "fact")) > 0


def test_an_unchanged_document_costs_nothing(inprocess_stack: Stack) -> None:
    stack, a = inprocess_stack, inprocess_stack.account()
    name = stack.collection(a)
    before = stack.last_usage_id()
    again = stack.post(a, f"/v1/collections/{name}/documents", {"documents": [{"id": "fact", "text": FACT}]})
    assert again["data"][0]["status"] == "unchanged"
    assert stack.usage(a.user_id, before) == []


def test_chat_rag_bills_its_query_embedding(inprocess_stack: Stack) -> None:
    stack, a = inprocess_stack, inprocess_stack.account()
    name = stack.collection(a)
    before = snap(stack, a)
    body = stack.post(
        a,
        "/v1/chat/completions",
        {
            "model": stack.model,
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": 8,
            "rag": {"collections": [name]},
        },
    )
    records = {r.endpoint: r for r in stack.usage(a.user_id, before.usage_id)}
    assert set(records) == {"chat.completions", "rag.search"}
    assert records["rag.search"].prompt_tokens == embedded([QUESTION])
    assert records["rag.search"].model == EMBEDDER and records["rag.search"].cost > 0
    assert records["chat.completions"].prompt_tokens == body["usage"]["prompt_tokens"]
    after = snap(stack, a)
    assert after.rpm - before.rpm == 1, "one request, counted once"
    assert after.tpm - before.tpm == embedded([QUESTION]) + body["usage"]["total_tokens"]


def test_tokenize_counts_against_the_rpm_limit(inprocess_stack: Stack) -> None:
    stack, a = inprocess_stack, inprocess_stack.account(rpm_limit=2)
    before = stack.last_usage_id()
    for _ in range(2):
        stack.post(a, "/tokenize", {"model": stack.model, "prompt": "hi"})
    refused = stack.http.post("/tokenize", json={"model": stack.model, "prompt": "hi"}, headers=a.headers)
    assert refused.status_code == 429 and "retry-after" in refused.headers
    assert stack.usage(a.user_id, before) == [], "tokenizing is not billed"
    assert stack.counter(a.key_id, "tpm") == 0


def test_embeddings_are_billed_under_the_model_that_ran(inprocess_stack: Stack) -> None:
    stack, a = inprocess_stack, inprocess_stack.account()
    before = stack.last_usage_id()
    stack.post(a, "/v1/embeddings", {"model": EMBEDDER_ALIAS, "input": FACT})
    (record,) = stack.usage(a.user_id, before)
    assert record.model == EMBEDDER


def test_vector_store_ingestion_holds_and_settles_tpm(inprocess_stack: Stack) -> None:
    stack, a = inprocess_stack, inprocess_stack.account()
    store_id, file_id = stack.store(a), stack.upload(a)
    stack.post(a, f"/v1/vector_stores/{store_id}/files", {"file_id": file_id})
    chunks = stack.ingested(a, store_id, file_id)
    assert stack.counter(a.key_id, "tpm") == embedded(chunks) > 0


def test_ingestion_waits_for_a_full_tpm_window_instead_of_failing(inprocess_stack: Stack) -> None:
    stack, a = inprocess_stack, inprocess_stack.account(tpm_limit=50)
    store_id, file_id = stack.store(a), stack.upload(a)
    if time.time() % 60 > 55:  # the window must not end while the file waits in it
        time.sleep(60 - time.time() % 60)
    window = int(time.time() // 60)
    # One token short of full: the request is admitted, the file's hold does not fit.
    redis.Redis.from_url(REDIS_URL).set(f"ragway:rl:{a.key_id}:tpm:{window}", 49, ex=120)
    stack.post(a, f"/v1/vector_stores/{store_id}/files", {"file_id": file_id})
    time.sleep(1.0)
    row = stack.get(a, f"/v1/vector_stores/{store_id}/files/{file_id}")
    assert row["status"] == "in_progress", row  # waiting for the window, not failed
    assert stack.usage(a.user_id, 0) == [], "nothing billed while it waits"
