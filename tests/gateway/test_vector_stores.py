"""OpenAI's Files and Vector Stores APIs against the real stack, through the official SDK unchanged.

These routes need no model service, so the gateways here point their model address at nothing
and no vLLM engine starts: a real retrieval service (embedded Qdrant, the real embedder) and real
gateway processes on SQLite. Ingestion is the gateway's background worker, so the restart test
kills a gateway mid-batch and starts another on the same data folder.
"""

from __future__ import annotations

import asyncio
import io
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import openai
import pytest
from grpc_health.v1 import health_pb2

from ragway.v1 import retrieval_pb2, retrieval_pb2_grpc
from tests.conftest import Gateway, RetrievalService, start_gateway
from tests.utils.db import rows
from tests.utils.factories import Account, make_account
from tests.utils.metrics import metric
from tests.utils.processes import free_port, grpc_health, start, wait_until

NOWHERE = f"127.0.0.1:{free_port()}"  # no model service: these routes never call it
TOPICS = {
    "alpha": "Alpha reactors are cooled by liquid sodium flowing through the primary loop.",
    "bravo": "Bravo bridges carry freight trains across the northern estuary since 1911.",
    "charlie": "Charlie orchards grow pears and quinces on terraced volcanic slopes.",
    "delta": "Delta telescopes observe infrared light from distant dusty galaxies.",
}


@pytest.fixture(scope="module")
def stack(retrieval_service: RetrievalService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(
        "gateway-vector-stores",
        tmp_path_factory.mktemp("gateway-vs"),
        NOWHERE,
        retrieval_service.address,
        extra_env={
            "RAGWAY_MAX_FILE_BYTES": "200000",
            "RAGWAY_FILE_QUOTA_BYTES": "2000000",
            "RAGWAY_INGEST_POLL_SECONDS": "0.2",
        },
    )
    yield gateway
    gateway.service.stop()


@pytest.fixture
def account(stack: Gateway) -> Account:
    return make_account(stack.url, stack.admin_key)


def store_counts(retrieval: RetrievalService, store_name: str) -> tuple[int, int]:
    """(vectors, documents) in a retrieval-side collection."""
    with grpc.insecure_channel(retrieval.address) as channel:
        info = retrieval_pb2_grpc.RetrievalServiceStub(channel).DescribeCollection(
            retrieval_pb2.DescribeCollectionRequest(name=store_name)
        )
    return int(info.vector_count), int(info.document_count)


def store_name(account: Account, vector_store_id: str) -> str:
    return f"{account.user_id}__{vector_store_id}"


def text_file(name: str, text: str) -> tuple[str, bytes]:
    return (name, text.encode())


def long_text(topic: str, paragraphs: int) -> str:
    return "\n\n".join(
        f"{TOPICS[topic]} Paragraph {n} adds detail number {n} about the {topic} subject, "
        f"with words like {uuid.uuid4().hex[:8]} to keep it distinct." * 3
        for n in range(paragraphs)
    )


def test_upload_and_poll_then_search_with_compound_filter(
    account: Account, retrieval_service: RetrievalService
) -> None:
    client = account.openai()
    store = client.vector_stores.create(name="Support docs", metadata={"team": "ops"})
    assert store.id.startswith("vs_") and store.name == "Support docs" and store.status == "completed"
    years = {"alpha": 2019, "bravo": 2021, "charlie": 2023, "delta": 2024}
    for topic, text in TOPICS.items():
        done = client.vector_stores.files.upload_and_poll(
            vector_store_id=store.id, file=text_file(f"{topic}.txt", text)
        )
        assert done.status == "completed", done.last_error
        client.vector_stores.files.update(
            vector_store_id=store.id,
            file_id=done.id,
            attributes={"topic": topic, "year": years[topic], "public": topic != "delta"},
        )
    for vs_file in client.vector_stores.files.list(vector_store_id=store.id):
        assert client.vector_stores.files.poll(vs_file.id, vector_store_id=store.id).status == "completed"
    listed = client.vector_stores.files.list(vector_store_id=store.id, filter="completed")
    assert len(listed.data) == 4 and all(f.attributes and "topic" in f.attributes for f in listed.data)

    plain = client.vector_stores.search(vector_store_id=store.id, query="sodium cooled reactor")
    assert plain.data[0].filename == "alpha.txt" and plain.data[0].attributes == {
        "topic": "alpha",
        "year": 2019,
        "public": True,
    }
    assert plain.data[0].content[0].type == "text" and "sodium" in plain.data[0].content[0].text

    # (year >= 2021 and public) or topic == "delta", but never bravo: or + ne need the gateway.
    compound: Any = {
        "type": "and",
        "filters": [
            {
                "type": "or",
                "filters": [
                    {
                        "type": "and",
                        "filters": [
                            {"type": "gte", "key": "year", "value": 2021},
                            {"type": "eq", "key": "public", "value": True},
                        ],
                    },
                    {"type": "eq", "key": "topic", "value": "delta"},
                ],
            },
            {"type": "ne", "key": "topic", "value": "bravo"},
        ],
    }
    found = client.vector_stores.search(
        vector_store_id=store.id, query="what does the document say", filters=compound, max_num_results=10
    )
    assert {r.filename for r in found.data} == {"charlie.txt", "delta.txt"}
    store_side = client.vector_stores.search(
        vector_store_id=store.id,
        query="anything",
        filters={
            "type": "and",
            "filters": [
                {"type": "in", "key": "topic", "value": ["alpha", "bravo"]},
                {"type": "lt", "key": "year", "value": 2020},
            ],
        },
    )
    assert {r.filename for r in store_side.data} == {"alpha.txt"}
    none = client.vector_stores.search(
        vector_store_id=store.id,
        query="anything",
        filters={"type": "nin", "key": "topic", "value": list(TOPICS)},
    )
    assert none.data == []

    retrieved = client.vector_stores.retrieve(store.id)
    assert retrieved.file_counts.completed == 4 and retrieved.usage_bytes == sum(
        len(t) for t in TOPICS.values()
    )
    vectors, documents = store_counts(retrieval_service, store_name(account, store.id))
    assert documents == 4 and vectors >= 4


def test_file_batch_of_twenty_files_with_the_async_sdk(
    stack: Gateway, account: Account, retrieval_service: RetrievalService
) -> None:
    async def run() -> Any:
        client = account.async_openai()
        store = await client.vector_stores.create(
            name="twenty",
            chunking_strategy={
                "type": "static",
                "static": {"max_chunk_size_tokens": 64, "chunk_overlap_tokens": 16},
            },
        )
        files = [io.BytesIO(long_text(list(TOPICS)[n % 4], 3).encode()) for n in range(20)]
        for n, f in enumerate(files):
            f.name = f"doc{n:02d}.md"
        batch = await client.vector_stores.file_batches.upload_and_poll(vector_store_id=store.id, files=files)
        listed = await client.vector_stores.file_batches.list_files(
            batch_id=batch.id, vector_store_id=store.id, limit=100
        )
        return store, batch, listed

    written_before = metric(retrieval_service.metrics_url, "ragway_retrieval_chunks_ingested_total")
    store, batch, listed = asyncio.run(run())
    assert batch.status == "completed" and batch.file_counts.completed == 20 and batch.file_counts.total == 20
    assert len(listed.data) == 20
    assert all(
        f.chunking_strategy.type == "static" and f.chunking_strategy.static.max_chunk_size_tokens == 64  # type: ignore[union-attr]
        for f in listed.data
    )
    vectors, documents = store_counts(retrieval_service, store_name(account, store.id))
    assert documents == 20 and vectors > 20  # 64-token chunks: several per file
    # Each file is embedded and written once (and so billed once), not again with every later group.
    written = metric(retrieval_service.metrics_url, "ragway_retrieval_chunks_ingested_total") - written_before
    assert written == vectors, f"{written:.0f} chunks embedded for a store of {vectors}"
    billed = rows(
        stack.database_url,
        "SELECT sum(prompt_tokens) FROM usage_records"
        " WHERE user_id = :u AND endpoint = 'vector_stores.ingest'",
        u=account.user_id,
    )[0][0]
    with grpc.insecure_channel(retrieval_service.address) as channel:
        retrieval = retrieval_pb2_grpc.RetrievalServiceStub(channel)
        name = store_name(account, store.id)
        chunks = [
            c.text
            for f in listed.data
            for c in retrieval.GetDocument(retrieval_pb2.GetDocumentRequest(collection=name, id=f.id)).chunks
        ]
        embedded = retrieval.Embed(retrieval_pb2.EmbedRequest(texts=chunks)).total_tokens
    assert billed == embedded, "the batch bills the tokens of the chunks it embedded, once"


def test_deleting_a_file_removes_every_chunk(account: Account, retrieval_service: RetrievalService) -> None:
    client = account.openai()
    store = client.vector_stores.create(name="deletions")
    keep = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=text_file("keep.txt", long_text("alpha", 6))
    )
    drop = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=text_file("drop.txt", long_text("bravo", 6))
    )
    name = store_name(account, store.id)
    before, _ = store_counts(retrieval_service, name)
    content = client.vector_stores.files.content(file_id=drop.id, vector_store_id=store.id)
    dropped_chunks = len(list(content))
    assert dropped_chunks > 1

    assert client.files.delete(drop.id).deleted
    after, documents = store_counts(retrieval_service, name)
    assert (after, documents) == (before - dropped_chunks, 1)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(drop.id)
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(file_id=drop.id, vector_store_id=store.id)
    assert not any(
        r.file_id == drop.id
        for r in client.vector_stores.search(vector_store_id=store.id, query="bravo bridges freight").data
    )
    # Detaching keeps the file but removes its chunks; deleting the store removes the rest.
    client.vector_stores.files.delete(file_id=keep.id, vector_store_id=store.id)
    assert store_counts(retrieval_service, name) == (0, 0)
    assert client.files.retrieve(keep.id).bytes > 0
    assert client.vector_stores.delete(store.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(store.id)


def test_files_api_lists_pages_and_downloads(account: Account) -> None:
    client = account.openai()
    ids = [
        client.files.create(file=text_file(f"f{n}.txt", f"file number {n}"), purpose="user_data").id
        for n in range(3)
    ]
    other = client.files.create(file=text_file("a.txt", "assistants file"), purpose="assistants")
    first = client.files.list(limit=2, order="asc", purpose="user_data")
    assert [f.id for f in first.data] == ids[:2] and first.has_more
    second = client.files.list(limit=2, order="asc", purpose="user_data", after=ids[1])
    assert [f.id for f in second.data] == ids[2:] and not second.has_more
    assert other.id not in {f.id for f in client.files.list(purpose="user_data")}
    assert client.files.content(ids[0]).read() == b"file number 0"
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=text_file("x.txt", "x"), purpose="fine-tune")


def test_file_size_limit_is_413_and_quota_is_429(stack: Gateway) -> None:
    account = make_account(stack.url, stack.admin_key)
    client = account.openai()
    with pytest.raises(openai.APIStatusError) as too_big:
        client.files.create(file=("big.txt", b"x" * 200_001), purpose="assistants")
    assert too_big.value.status_code == 413 and "200000" in too_big.value.message
    for n in range(10):
        client.files.create(file=(f"q{n}.txt", b"y" * 199_000), purpose="assistants")
    with pytest.raises(openai.RateLimitError) as over:
        client.files.create(file=("one-more.txt", b"z" * 199_000), purpose="assistants")
    assert over.value.status_code == 429 and "quota" in over.value.message
    assert over.value.body["code"] == "storage_quota_exceeded"  # type: ignore[index]


def test_another_users_store_and_file_are_404_everywhere(stack: Gateway, account: Account) -> None:
    owner = account.openai()
    store = owner.vector_stores.create(name="private")
    vs_file = owner.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=text_file("s.txt", "secret")
    )
    batch = owner.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=[vs_file.id])
    intruder = make_account(stack.url, stack.admin_key)
    paths = [
        ("GET", f"/v1/files/{vs_file.id}", None),
        ("GET", f"/v1/files/{vs_file.id}/content", None),
        ("DELETE", f"/v1/files/{vs_file.id}", None),
        ("GET", f"/v1/vector_stores/{store.id}", None),
        ("POST", f"/v1/vector_stores/{store.id}", {"name": "mine"}),
        ("DELETE", f"/v1/vector_stores/{store.id}", None),
        ("POST", f"/v1/vector_stores/{store.id}/search", {"query": "secret"}),
        ("GET", f"/v1/vector_stores/{store.id}/files", None),
        ("POST", f"/v1/vector_stores/{store.id}/files", {"file_id": vs_file.id}),
        ("GET", f"/v1/vector_stores/{store.id}/files/{vs_file.id}", None),
        ("POST", f"/v1/vector_stores/{store.id}/files/{vs_file.id}", {"attributes": {"a": "b"}}),
        ("DELETE", f"/v1/vector_stores/{store.id}/files/{vs_file.id}", None),
        ("GET", f"/v1/vector_stores/{store.id}/files/{vs_file.id}/content", None),
        ("POST", f"/v1/vector_stores/{store.id}/file_batches", {"file_ids": [vs_file.id]}),
        ("GET", f"/v1/vector_stores/{store.id}/file_batches/{batch.id}", None),
        ("POST", f"/v1/vector_stores/{store.id}/file_batches/{batch.id}/cancel", None),
        ("GET", f"/v1/vector_stores/{store.id}/file_batches/{batch.id}/files", None),
    ]
    with intruder.http() as http:
        for method, path, body in paths:
            reply = http.request(method, path, json=body) if body is not None else http.request(method, path)
            assert reply.status_code == 404, f"{method} {path}: {reply.status_code} {reply.text}"
            assert reply.json()["error"]["type"] == "invalid_request_error"
        # B's own store cannot take A's file either.
        own = http.post("/v1/vector_stores", json={"name": "b"}).json()["id"]
        assert http.post(f"/v1/vector_stores/{own}/files", json={"file_id": vs_file.id}).status_code == 404
        assert http.get("/v1/files").json()["data"] == []
        assert [s["id"] for s in http.get("/v1/vector_stores").json()["data"]] == [own]
    # The batch re-ingests the file; nothing B did changed it.
    assert (
        owner.vector_stores.file_batches.poll(batch.id, vector_store_id=store.id).file_counts.completed == 1
    )


def test_admin_shared_store_is_readable_by_all_and_writable_by_admins(
    stack: Gateway, account: Account
) -> None:
    admin = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.admin_key, max_retries=0)
    shared = admin.vector_stores.create(name="handbook", extra_body={"shared": True})
    admin.vector_stores.files.upload_and_poll(
        vector_store_id=shared.id, file=text_file("h.txt", TOPICS["charlie"])
    )
    user = account.openai()
    assert user.vector_stores.retrieve(shared.id).file_counts.completed == 1
    assert user.vector_stores.search(vector_store_id=shared.id, query="pears").data[0].filename == "h.txt"
    with pytest.raises(openai.PermissionDeniedError):
        user.vector_stores.update(shared.id, name="taken")
    with pytest.raises(openai.PermissionDeniedError):
        user.vector_stores.create(name="mine", extra_body={"shared": True})
    admin.vector_stores.delete(shared.id)


def test_a_vector_store_is_a_collection(account: Account) -> None:
    """One model of the data: the same row through /v1/collections and /v1/vector_stores."""
    client = account.openai()
    store = client.vector_stores.create(name="one model")
    client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=text_file("d.txt", TOPICS["delta"])
    )
    with account.http() as http:
        collection = http.get(f"/v1/collections/{store.id}").json()
        assert collection["document_count"] == 1
        hits = http.post(f"/v1/collections/{store.id}/search", json={"query": "infrared galaxies"}).json()[
            "data"
        ]
        assert hits[0]["metadata"]["filename"] == "d.txt"
        assert http.post("/v1/collections", json={"name": "legacy"}).status_code == 201
        http.post(
            "/v1/collections/legacy/documents", json={"documents": [{"id": "n1", "text": TOPICS["alpha"]}]}
        )
        legacy = next(s for s in http.get("/v1/vector_stores").json()["data"] if s["name"] == "legacy")
    assert client.vector_stores.retrieve(legacy["id"]).file_counts.completed == 1
    assert client.vector_stores.search(vector_store_id=legacy["id"], query="sodium").data[0].file_id == "n1"


def test_one_store_through_both_search_apis_with_one_filter_language(account: Account) -> None:
    """The vector store route's `or` filter and the collections route's JSON filter run the one
    search path (rag.search): both reach the store whole and agree on the same row's chunks."""
    client = account.openai()
    store = client.vector_stores.create(name="one path")
    years = {"alpha": 2019, "bravo": 2021, "charlie": 2023}
    for topic, year in years.items():
        done = client.vector_stores.files.upload_and_poll(
            vector_store_id=store.id,
            file=text_file(f"{topic}.txt", TOPICS[topic]),
            attributes={"topic": topic, "year": year},
        )
        assert done.status == "completed", done.last_error
    either: Any = {
        "type": "and",
        "filters": [
            {
                "type": "or",
                "filters": [
                    {"type": "eq", "key": "topic", "value": "alpha"},
                    {"type": "gte", "key": "year", "value": 2021},
                ],
            },
            {"type": "nin", "key": "topic", "value": ["bravo"]},
        ],
    }
    found = client.vector_stores.search(
        vector_store_id=store.id, query="freight trains", filters=either, max_num_results=10
    )
    assert {r.filename for r in found.data} == {"alpha.txt", "charlie.txt"}
    with account.http() as http:
        reply = http.post(
            f"/v1/collections/{store.id}/search",
            json={"query": "freight trains", "top_k": 10, "filter": {"topic": {"in": ["alpha", "charlie"]}}},
        )
        assert reply.status_code == 200, reply.text
        assert {h["metadata"]["filename"] for h in reply.json()["data"]} == {"alpha.txt", "charlie.txt"}
        bad = http.post(
            f"/v1/collections/{store.id}/search", json={"query": "x", "filter": {"year": {"ne": 1}}}
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "filter"


def test_bad_input_is_a_clear_4xx(account: Account) -> None:
    client = account.openai()
    store = client.vector_stores.create(name="validation")
    bad_filters: list[Any] = [
        {"type": "xor", "key": "a", "value": 1},
        {"type": "gt", "key": "year", "value": "2020"},
        {"type": "in", "key": "t", "value": []},
        {"type": "and", "filters": []},
        {"type": "eq", "key": "bad key", "value": 1},
    ]
    for spec in bad_filters:
        with pytest.raises(openai.BadRequestError) as err:
            client.vector_stores.search(vector_store_id=store.id, query="q", filters=spec)
        assert err.value.body["param"] == "filters"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.search(
            vector_store_id=store.id, query="q", ranking_options={"ranker": "mystery"}
        )  # type: ignore[typeddict-item]
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.create(
            chunking_strategy={
                "type": "static",
                "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 80},
            }
        )
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.create(vector_store_id=store.id, file_id="file-doesnotexist")
    bad = client.files.create(file=("data.bin", b"\x00\x01binary"), purpose="assistants")
    failed = client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=bad.id)
    assert failed.status == "failed" and failed.last_error and failed.last_error.code == "unsupported_file"
    with httpx.Client(base_url=account.base_url, headers=account.headers) as http:
        reply = http.post("/v1/files", json={"purpose": "assistants"})
        assert reply.status_code == 415 and reply.json()["error"]["message"]
        reply = http.post("/v1/files", files={"file": ("a.txt", b"a")})
        assert reply.status_code == 400 and reply.json()["error"]["param"] == "purpose"


def test_ingestion_and_search_embedding_tokens_are_billed(stack: Gateway, account: Account) -> None:
    client = account.openai()
    store = client.vector_stores.create(name="billing")
    client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=text_file("b.txt", long_text("bravo", 2))
    )
    client.vector_stores.search(vector_store_id=store.id, query="freight trains estuary")
    records = rows(
        stack.database_url,
        "SELECT endpoint, model, prompt_tokens, cost, status FROM usage_records"
        " WHERE user_id = :u ORDER BY id",
        u=account.user_id,
    )
    by_endpoint = {r[0]: r for r in records}
    ingest, search = by_endpoint["vector_stores.ingest"], by_endpoint["vector_stores.search"]
    assert ingest[1] == search[1] == "all-MiniLM-L6-v2"
    assert ingest[2] > 50 and ingest[3] > 0 and ingest[4] == "ok"
    assert 5 <= search[2] <= 12 and search[3] > 0 and search[4] == "ok"  # [CLS] + a few words + [SEP]


def own_retrieval(data_dir: Path, port: int, name: str) -> RetrievalService:
    """A retrieval service of this test's own, so killing it disturbs no other test."""
    service = start(
        name,
        "retrieval",
        {
            "RAGWAY_DATA_DIR": str(data_dir),
            "RAGWAY_RETRIEVAL_PORT": str(port),
            "RAGWAY_RETRIEVAL_METRICS_PORT": str(free_port()),
        },
    )
    address = f"127.0.0.1:{port}"
    wait_until(service, lambda: grpc_health(address) == health_pb2.HealthCheckResponse.SERVING, 300)
    return RetrievalService(address, "", data_dir, service)


def test_restarting_the_whole_stack_mid_batch_finishes_it_and_loses_no_completed_file(
    tmp_path: Path,
) -> None:
    env = {"RAGWAY_INGEST_BATCH_FILES": "1", "RAGWAY_INGEST_POLL_SECONDS": "0.2"}
    port = free_port()
    retrieval = own_retrieval(tmp_path / "retrieval", port, "retrieval-vs-restart-1")
    first = start_gateway("gateway-vs-restart-1", tmp_path / "gw", NOWHERE, retrieval.address, extra_env=env)
    account = make_account(first.url, first.admin_key)
    client = account.openai()
    store = client.vector_stores.create(name="restart")
    ids = [
        client.files.create(
            file=text_file(f"r{n:02d}.txt", long_text(list(TOPICS)[n % 4], 12)), purpose="assistants"
        ).id
        for n in range(20)
    ]
    batch = client.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=ids)
    deadline = time.monotonic() + 300
    completed: set[str] = set()
    while time.monotonic() < deadline:
        listed = client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id, limit=100)
        completed = {f.id for f in listed.data if f.status == "completed"}
        if completed:
            break
        time.sleep(0.05)
    assert completed, "no file completed before the kill"
    # The whole stack dies at once, in the middle of the batch (a write may be in flight).
    first.service.stop(signal.SIGKILL)
    retrieval.service.stop(signal.SIGKILL)
    assert len(completed) < 20, "the batch finished before the kill; make the files larger"

    retrieval = own_retrieval(tmp_path / "retrieval", port, "retrieval-vs-restart-2")
    second = start_gateway("gateway-vs-restart-2", tmp_path / "gw", NOWHERE, retrieval.address, extra_env=env)
    try:
        again = openai.OpenAI(base_url=f"{second.url}/v1", api_key=account.key, max_retries=0)
        done = again.vector_stores.file_batches.poll(batch.id, vector_store_id=store.id)
        assert done.status == "completed" and done.file_counts.completed == 20, done.file_counts
        after = again.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id, limit=100)
        assert completed <= {f.id for f in after.data if f.status == "completed"}
        vectors, documents = store_counts(retrieval, store_name(account, store.id))
        chunk_rows = rows(
            second.database_url,
            "SELECT COALESCE(SUM(chunks), 0) FROM documents WHERE collection_id = :c",
            c=store.id,
        )
        # Every file whole, once: no half-written or duplicated document stays.
        assert (documents, vectors) == (20, chunk_rows[0][0])
        hits = again.vector_stores.search(vector_store_id=store.id, query="sodium primary loop reactors")
        assert hits.data and hits.data[0].filename.startswith("r")
    finally:
        second.service.stop()
        retrieval.service.stop()
