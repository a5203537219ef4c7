"""The retrieval service down: RAG answers 503 naming it; plain chat and history keep working."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import MODEL_NAME, Gateway, ModelService, start_gateway
from tests.utils.db import rows
from tests.utils.factories import make_account
from tests.utils.processes import free_port


@pytest.fixture(scope="module")
def gateway_without_retrieval(
    model_service: ModelService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gw = start_gateway(
        "gateway-no-retrieval",
        tmp_path_factory.mktemp("gw-no-retrieval"),
        model_service.address,
        f"127.0.0.1:{free_port()}",  # nothing listens there
    )
    yield gw
    gw.service.stop()


def test_rag_is_503_and_plain_chat_works(gateway_without_retrieval: Gateway) -> None:
    account = make_account(gateway_without_retrieval.url, gateway_without_retrieval.admin_key)
    with account.http() as http:
        create = http.post("/v1/collections", json={"name": "docs"})
        assert create.status_code == 503 and "retrieval service" in create.json()["error"]["message"]
        # A collection made while the service was up, as the database remembers it.
        rows(
            gateway_without_retrieval.database_url,
            "INSERT INTO collections (id, user_id, name, store_name, shared, created_at) "
            "VALUES ('col_down', :u, 'docs', :s, false, 0) RETURNING id",
            u=account.user_id,
            s=f"{account.user_id}__docs",
        )
        rag = http.post(
            "/v1/chat/completions",
            json={
                "model": MODEL_NAME,
                "messages": [{"role": "user", "content": "What do the docs say?"}],
                "rag": {"collections": ["docs"]},
            },
        )
        assert rag.status_code == 503 and "retrieval service" in rag.json()["error"]["message"]
        search = http.post("/v1/collections/docs/search", json={"query": "x"})
        assert search.status_code == 503
        plain = http.post(
            "/v1/chat/completions",
            json={
                "model": MODEL_NAME,
                "messages": [{"role": "user", "content": "Say hi."}],
                "max_tokens": 5,
                "store": True,
            },
        )
        assert plain.status_code == 200
        assert http.get("/v1/conversations").json()["data"]
        embeddings = http.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": "x"})
        assert embeddings.status_code == 503 and "retrieval service" in embeddings.json()["error"]["message"]
        assert http.get("/readyz").json()["checks"]["retrieval"] is False
