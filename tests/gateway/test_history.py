"""Conversations: continuing one, listing, renaming, deleting, and never seeing another user's.

Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import grpc
import openai
import pytest

from ragway.v1 import model_pb2 as pb
from ragway.v1 import model_pb2_grpc
from tests.conftest import MODEL_NAME, Gateway, ModelService
from tests.utils.factories import make_account


def ask(client: openai.OpenAI, text: str, **extra: object):  # type: ignore[no-untyped-def]
    options = {"temperature": 0, "max_tokens": 30, "store": True, **extra}
    return client.chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": text}], **options
    )


def chat_tokens(address: str, messages: list[tuple[str, str]]) -> int:
    with grpc.insecure_channel(address) as channel:
        chat = pb.ChatInput(messages=[pb.ChatMessage(role=r, content=c) for r, c in messages])
        return int(model_pb2_grpc.ModelServiceStub(channel).Tokenize(pb.TokenizeRequest(chat=chat)).count)


def test_continuing_a_conversation_sends_the_history(
    any_gateway: Gateway, model_service: ModelService
) -> None:
    account = make_account(any_gateway.url, any_gateway.admin_key)
    client = account.openai()
    first = ask(client, "My cat is called Zorblax. Please remember that name.")
    conversation_id = first.model_extra["conversation_id"]  # type: ignore[index]
    follow = ask(client, "What is my cat called?", extra_body={"conversation_id": conversation_id})
    # The model saw exactly the earlier turns followed by the new one (the 135M test model is too
    # small to rely on its memory, so count the prompt the model service received instead).
    conversation = [
        ("user", "My cat is called Zorblax. Please remember that name."),
        ("assistant", first.choices[0].message.content),
        ("user", "What is my cat called?"),
    ]
    assert follow.usage.prompt_tokens == chat_tokens(model_service.address, conversation)
    assert follow.model_extra["conversation_id"] == conversation_id  # type: ignore[index]
    with account.http() as http:
        detail = http.get(f"/v1/conversations/{conversation_id}").json()
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant", "user", "assistant"]
    assert detail["messages"][-1]["usage"]["completion_tokens"] == follow.usage.completion_tokens
    assert detail["messages"][-1]["finish_reason"] == follow.choices[0].finish_reason


def test_new_conversation_id_comes_back_in_header_and_body(any_gateway: Gateway) -> None:
    account = make_account(any_gateway.url, any_gateway.admin_key)
    raw = account.openai().chat.completions.with_raw_response.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "Hello!"}], max_tokens=5, store=True
    )
    assert raw.headers["x-conversation-id"] == raw.parse().model_extra["conversation_id"]  # type: ignore[index]


def test_list_paginate_rename_delete(any_gateway: Gateway) -> None:
    account = make_account(any_gateway.url, any_gateway.admin_key)
    ids = [
        ask(account.openai(), f"Say the number {i}.", max_tokens=3).model_extra["conversation_id"]
        for i in range(3)
    ]  # type: ignore[index]
    with account.http() as http:
        page1 = http.get("/v1/conversations", params={"limit": 2}).json()
        assert page1["has_more"] is True and len(page1["data"]) == 2
        page2 = http.get("/v1/conversations", params={"limit": 2, "after": page1["last_id"]}).json()
        listed = [c["id"] for c in page1["data"] + page2["data"]]
        assert listed == list(reversed(ids)) and page2["has_more"] is False
        renamed = http.patch(f"/v1/conversations/{ids[0]}", json={"title": "Numbers"})
        assert renamed.status_code == 200 and renamed.json()["title"] == "Numbers"
        assert http.delete(f"/v1/conversations/{ids[1]}").json()["deleted"] is True
        assert http.get(f"/v1/conversations/{ids[1]}").status_code == 404


def test_another_users_conversation_is_not_found(any_gateway: Gateway) -> None:
    alice = make_account(any_gateway.url, any_gateway.admin_key)
    bob = make_account(any_gateway.url, any_gateway.admin_key)
    conversation_id = ask(alice.openai(), "A secret: the code is 4471.").model_extra["conversation_id"]  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        bob.openai().get(f"/conversations/{conversation_id}", cast_to=object)
    with pytest.raises(openai.NotFoundError):
        ask(bob.openai(), "What was the code?", extra_body={"conversation_id": conversation_id})
    with bob.http() as http:
        assert http.patch(f"/v1/conversations/{conversation_id}", json={"title": "mine"}).status_code == 404
        assert http.delete(f"/v1/conversations/{conversation_id}").status_code == 404
        assert conversation_id not in {c["id"] for c in http.get("/v1/conversations").json()["data"]}
    with alice.http() as http:
        assert http.get(f"/v1/conversations/{conversation_id}").status_code == 200


def test_exchanges_are_not_stored_unless_asked(gateway: Gateway) -> None:
    """As in OpenAI's API, `store` defaults to false: no conversation, no history."""
    account = make_account(gateway.url, gateway.admin_key)
    reply = account.openai().chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "Hello"}], max_tokens=3
    )
    assert "conversation_id" not in (reply.model_extra or {})
    with account.http() as http:
        assert http.get("/v1/conversations").json()["data"] == []


def test_store_false_keeps_no_history(gateway: Gateway) -> None:
    account = make_account(gateway.url, gateway.admin_key)
    reply = ask(account.openai(), "Hello", extra_body={"store": False})
    assert "conversation_id" not in (reply.model_extra or {})
    with account.http() as http:
        assert http.get("/v1/conversations").json()["data"] == []
