"""Embedding models are models too, through the gateway: /v1/embeddings routes by model name to
the retrieval service's embedders, /v1/models lists them as embedding models, and an unknown one is
404 model_not_found. A real gateway on a real retrieval service with two embedders
(tests/utils/embedders.py). No engine: embeddings never reach a model service, so the gateway is
pointed at an address where none listens, and /v1/models still lists the embedders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ragway.retrieval.embedder import DEFAULT_NAME
from tests.conftest import Gateway, start_gateway
from tests.utils.embedders import SECOND, second_embedder, start_retrieval
from tests.utils.factories import Account, make_account
from tests.utils.processes import free_port

CHAT = "chat-model"


@pytest.fixture(scope="module")
def embedding_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("embedding-models")
    retrieval, address = start_retrieval(
        "retrieval-embedding-models", root / "retrieval", [second_embedder(root)]
    )
    # A chat model by name, so /v1/models lists it while no model service answers.
    models_file = root / "models.yaml"
    models_file.write_text(f"models:\n  - name: {CHAT}\n    replicas: ['127.0.0.1:{free_port()}']\n")
    try:
        gateway = start_gateway(
            "gateway-embedding-models",
            root / "gateway",
            f"127.0.0.1:{free_port()}",
            address,
            extra_env={"RAGWAY_MODELS_FILE": str(models_file)},
        )
        yield gateway
        gateway.service.stop()
    finally:
        retrieval.stop()


@pytest.fixture(scope="module")
def account(embedding_gateway: Gateway) -> Account:
    return make_account(embedding_gateway.url, embedding_gateway.admin_key)


def test_embeddings_route_by_model_name(account: Account) -> None:
    client = account.openai()
    for name in (DEFAULT_NAME, SECOND, f"sentence-transformers/{DEFAULT_NAME}"):
        reply = client.embeddings.create(model=name, input=["a teal vault door", "a red barn"])
        assert reply.model == name
        assert [len(d.embedding) for d in reply.data] == [384, 384]
        assert reply.usage.prompt_tokens > 0


def test_an_unknown_embedding_model_is_404_model_not_found(account: Account) -> None:
    with account.http() as http:
        reply = http.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"})
    assert reply.status_code == 404
    error = reply.json()["error"]
    assert (error["code"], error["param"]) == ("model_not_found", "model")
    assert DEFAULT_NAME in error["message"] and SECOND in error["message"], "the message names those served"


def test_models_lists_the_embedding_models(account: Account) -> None:
    with account.http() as http:
        cards = {c["id"]: c for c in http.get("/v1/models").json()["data"]}
        one = http.get(f"/v1/models/{SECOND}").json()
    for name in (DEFAULT_NAME, SECOND):
        card = cards[name]
        assert (card["object"], card["mode"], card["dimensions"], card["max_model_len"]) == (
            "model",
            "embedding",
            384,
            254,
        )
    assert one["id"] == SECOND and one["mode"] == "embedding"
    assert (cards[CHAT]["mode"], cards[CHAT]["dimensions"]) == ("chat", None)


def test_embeddings_are_billed_under_the_model_used(account: Account) -> None:
    account.openai().embeddings.create(model=SECOND, input="count me")
    with account.http() as http:
        usage = http.get("/v1/usage").json()
    assert SECOND in str(usage), "the usage records name the embedding model"


def test_a_collection_is_built_with_an_embedding_model_and_searched_only_with_it(account: Account) -> None:
    with account.http() as http:
        created = http.post("/v1/collections", json={"name": "second-built", "embedding_model": SECOND})
        assert created.status_code == 201, created.text
        assert created.json()["embedding_model"] == SECOND
        plain = http.post("/v1/collections", json={"name": "default-built"}).json()
        assert plain["embedding_model"] == DEFAULT_NAME
        docs = {"documents": [{"id": "d1", "text": "The vault door is painted teal."}]}
        assert http.post("/v1/collections/second-built/documents", json=docs).status_code == 200
        query = {"query": "what colour is the vault door"}
        for meant in ({}, {"embedding_model": SECOND}):
            hits = http.post("/v1/collections/second-built/search", json={**query, **meant})
            assert hits.status_code == 200 and hits.json()["data"][0]["document_id"] == "d1"
        other = http.post(
            "/v1/collections/second-built/search", json={**query, "embedding_model": DEFAULT_NAME}
        )
        assert other.status_code == 400
        error = other.json()["error"]
        assert (
            error["param"] == "embedding_model"
            and f"built with the embedding model {SECOND!r}" in error["message"]
        )
        unknown = http.post("/v1/collections", json={"name": "nope", "embedding_model": "bge-m3"})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
        assert http.get("/v1/collections/nope").status_code == 404, "nothing was created for an unknown model"


def test_a_search_is_billed_under_the_embedder_its_collection_was_built_with(
    embedding_gateway: Gateway,
) -> None:
    fresh = make_account(embedding_gateway.url, embedding_gateway.admin_key)

    def requests_by_model(http) -> dict[str, int]:  # type: ignore[no-untyped-def]
        return {row["model"]: row["requests"] for row in http.get("/v1/usage").json()["data"]}

    with fresh.http() as http:
        assert http.post(
            "/v1/collections", json={"name": "billed-second", "embedding_model": SECOND}
        ).is_success
        docs = {"documents": [{"id": "d1", "text": "The lighthouse keeper logs the fog."}]}
        assert http.post("/v1/collections/billed-second/documents", json=docs).status_code == 200
        before = requests_by_model(http)
        assert http.post("/v1/collections/billed-second/search", json={"query": "who logs fog"}).is_success
        after = requests_by_model(http)
    assert after.get(SECOND, 0) == before.get(SECOND, 0) + 1, after
    assert DEFAULT_NAME not in after, "the query was embedded by the collection's embedder, and billed so"
