"""Embedding models in /v1/models and /v1/embeddings, over the stated fake retrieval client
(tests/utils/fakes.py): the listing survives a retrieval service that is down. Routing by name
against the real retrieval service: tests/gateway/test_embedding_models.py."""

from __future__ import annotations

import pytest

from ragway.core.errors import Unavailable
from ragway.gateway.clients.retrieval import ServiceInfo
from tests.inprocess.conftest import InProcess


def _cards(inprocess: InProcess) -> dict[str, dict[str, object]]:
    headers = inprocess.account()
    reply = inprocess.client.get("/v1/models", headers=headers)
    assert reply.status_code == 200, reply.text
    return {c["id"]: c for c in reply.json()["data"]}


def test_models_lists_chat_and_embedding_models(inprocess: InProcess) -> None:
    modes = {card_id: card["mode"] for card_id, card in _cards(inprocess).items()}
    assert modes.pop("all-MiniLM-L6-v2") == "embedding"
    assert modes and set(modes.values()) == {"chat"}


def test_models_still_lists_chat_models_while_retrieval_is_down(
    inprocess: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(timeout: float | None = None) -> ServiceInfo:
        raise Unavailable("the retrieval service is unavailable; try again shortly")

    monkeypatch.setattr(inprocess.retrieval, "describe_service", down)
    cards = _cards(inprocess)
    assert cards and all(card["mode"] == "chat" for card in cards.values())
    embeddings = inprocess.client.post(
        "/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": "x"}, headers=inprocess.account()
    )
    assert embeddings.status_code == 503, "embeddings need the retrieval service; /v1/models does not"
