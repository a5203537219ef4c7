"""Three gateway replicas on one PostgreSQL, each with a data folder of its own — as the Helm chart
runs them — over the real retrieval service: uploaded files are one set for every replica and
outlive the replica that took them, and each vector store file is embedded and billed exactly once
however many ingestion workers compete for it, even when one dies holding some."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import openai
import pytest

from ragway.gateway.clients.retrieval import RetrievalClient
from ragway.gateway.rag.tokens import embedding_tokens
from tests.conftest import Gateway, RetrievalService, start_gateway
from tests.utils.db import fresh_postgres, rows
from tests.utils.factories import Account, make_account
from tests.utils.processes import free_port

LEASE_SECONDS = 4  # short, so a killed replica's files are taken over within the test
INGESTED = 180.0  # every file completed (the embedder on 2 shared cores)


@dataclass
class Replicas:
    gateways: list[Gateway]
    database_url: str
    retrieval: RetrievalService
    start: Callable[[int], Gateway]  # (re)start replica `index` on its own data folder


@pytest.fixture(scope="module")
def replicas(
    retrieval_service: RetrievalService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    url = fresh_postgres("ragway_replicated")
    nowhere = f"127.0.0.1:{free_port()}"  # files and ingestion need no model service
    folders = [tmp_path_factory.mktemp(f"replica-{i}") for i in range(3)]

    def start(index: int) -> Gateway:
        return start_gateway(
            f"gateway-replicated-{index}",
            folders[index],
            nowhere,
            retrieval_service.address,
            database_url=url,
            extra_env={"RAGWAY_INGEST_LEASE_SECONDS": str(LEASE_SECONDS)},
        )

    gateways = [start(0)]
    # The first start migrated the database and made the admin; the others share both.
    gateways += [start(i) for i in (1, 2)]
    held = Replicas(gateways, url, retrieval_service, start)
    try:
        yield held
    finally:
        for gateway in held.gateways:
            gateway.service.stop()


def sdk(gateway: Gateway, account: Account) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=account.key, max_retries=0)


def document(index: int, size: int = 6000) -> bytes:
    """A distinct text file of about `size` bytes."""
    words = [f"topic{index}", "replicas", "lease", "embedding", f"w{index * 7 % 13}", "ledger", "pods"]
    text = " ".join(words[(i * (index + 3)) % len(words)] for i in range(size // 8))
    return f"Document {index}.\n\n{text}\n".encode()


def wait_completed(client: openai.OpenAI, store_id: str, count: int) -> None:
    deadline = time.monotonic() + INGESTED
    while time.monotonic() < deadline:
        statuses = [f.status for f in client.vector_stores.files.list(vector_store_id=store_id, limit=100)]
        assert "failed" not in statuses, statuses
        if statuses.count("completed") == count:
            return
        time.sleep(0.5)
    raise AssertionError(f"not every file completed: {statuses}")


def tokens_written(replicas: Replicas, store_id: str, file_ids: list[str]) -> int:
    """The embedding tokens of every chunk the retrieval service holds for these files, once each."""
    [(store_name,)] = rows(
        replicas.database_url, "SELECT store_name FROM collections WHERE id = :i", i=store_id
    )

    async def count() -> int:
        client = RetrievalClient(replicas.retrieval.address, 30)
        try:
            total = 0
            for file_id in file_ids:
                doc = await client.get_document(store_name, file_id)
                total += embedding_tokens().count([text for _, text in doc.chunks])
            return total
        finally:
            await client.close()

    return asyncio.run(count())


def billed(replicas: Replicas, user_id: str) -> int:
    """Embedding tokens billed to `user_id` for ingestion."""
    [(tokens,)] = rows(
        replicas.database_url,
        "SELECT COALESCE(SUM(prompt_tokens), 0) FROM usage_records "
        "WHERE user_id = :u AND endpoint = 'vector_stores.ingest'",
        u=user_id,
    )
    return int(tokens)


def test_a_file_uploaded_through_one_replica_is_read_and_ingested_through_another_and_outlives_it(
    replicas: Replicas,
) -> None:
    first, second = replicas.gateways[0], replicas.gateways[1]
    account = make_account(first.url, first.admin_key)
    data = document(1) + "naïve – 中文 🙂\r\n".encode()  # the bytes come back exactly
    uploaded = sdk(first, account).files.create(file=("notes.txt", data), purpose="assistants")

    other = sdk(second, account)
    assert uploaded.id in [f.id for f in other.files.list()]
    assert other.files.content(uploaded.id).content == data
    store = other.vector_stores.create(name="shared")
    other.vector_stores.files.create(vector_store_id=store.id, file_id=uploaded.id)
    wait_completed(other, store.id, 1)

    # The replica that took the upload restarts (a new pod: its data folder is not what it had).
    first.service.stop()
    for path in first.data_dir.glob("files/*"):
        path.unlink()
    replicas.gateways[0] = replicas.start(0)
    assert sdk(replicas.gateways[0], account).files.content(uploaded.id).content == data


def test_every_file_is_embedded_and_billed_once_across_three_ingestion_workers(replicas: Replicas) -> None:
    gateway = replicas.gateways[0]
    account = make_account(gateway.url, gateway.admin_key, credits=1000)
    client = sdk(gateway, account)
    ids = [client.files.create(file=(f"doc{i}.txt", document(i)), purpose="assistants").id for i in range(12)]
    store = client.vector_stores.create(name="contended")
    # One file at a time, through every replica in turn: each wakes its own worker, all compete.
    for index, file_id in enumerate(ids):
        sdk(replicas.gateways[index % 3], account).vector_stores.files.create(
            vector_store_id=store.id, file_id=file_id
        )
    wait_completed(client, store.id, len(ids))
    assert billed(replicas, account.user_id) == tokens_written(replicas, store.id, ids)


def test_files_a_killed_replica_was_writing_are_finished_by_the_others_and_billed_once(
    replicas: Replicas,
) -> None:
    victim = replicas.gateways[2]
    account = make_account(victim.url, victim.admin_key, credits=1000)
    client = sdk(victim, account)
    ids = [
        client.files.create(file=(f"big{i}.txt", document(100 + i, 16000)), purpose="assistants").id
        for i in range(16)
    ]
    store = client.vector_stores.create(name="orphaned")
    client.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=ids)
    owner = f"{socket.gethostname()}:{victim.service.process.pid}:"
    deadline = time.monotonic() + 30
    held: list[object] = []
    while not held and time.monotonic() < deadline:
        held = rows(
            replicas.database_url,
            "SELECT id FROM documents WHERE status = 'in_progress' AND lease_owner LIKE :o",
            o=f"{owner}%",
        )
    assert held, "the replica that took the batch never claimed its files"
    victim.service.stop(signal.SIGKILL)  # SIGKILL mid-ingest: no lease is handed back
    replicas.gateways[2] = replicas.start(2)  # the pod comes back, later

    wait_completed(sdk(replicas.gateways[0], account), store.id, len(ids))
    assert billed(replicas, account.user_id) == tokens_written(replicas, store.id, ids)
