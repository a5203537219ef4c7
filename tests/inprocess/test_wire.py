"""The rules every API of the gateway shares (gateway/wire.py): each request body, to its deepest
nested object, refuses a field it does not know, and `metadata` has OpenAI's limits wherever an
API takes it. Generated from the route table, so a new route or body model is covered or fails."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel

from ragway.gateway.app import create_app
from ragway.gateway.core.config import GatewaySettings
from ragway.gateway.core.wire import StrictModel
from ragway.gateway.rerank.protocol import RerankDocument
from ragway.gateway.responses.protocol import InputImage
from tests.inprocess.conftest import InProcess
from tests.utils.fakes import FAKE_MODEL

# Objects that keep what they do not read, by design: a Cohere / Jina document's other keys, and
# an image part, parsed only so its refusal can name it.
OPEN_MODELS = {RerankDocument, InputImage}
TOO_MANY = {f"k{n}": "v" for n in range(17)}
KEY_TOO_LONG = {"k" * 65: "v"}
VALUE_TOO_LONG = {"k": "v" * 513}


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models(arg)


def _body_models() -> set[type[BaseModel]]:
    """Every model a route's JSON body holds, nested ones included."""
    found: set[type[BaseModel]] = set()
    todo = [
        route.body_field.field_info.annotation
        for route in create_app(GatewaySettings()).routes
        if isinstance(route, APIRoute) and route.body_field is not None
    ]
    while todo:
        for model in _models(todo.pop()):
            if model not in found:
                found.add(model)
                todo.extend(field.annotation for field in model.model_fields.values())
    return found


def test_every_request_object_refuses_unknown_fields() -> None:
    loose = {m.__name__ for m in _body_models() - OPEN_MODELS if not issubclass(m, StrictModel)}
    assert not loose, f"request models that would accept and ignore a field: {sorted(loose)}"


@pytest.mark.parametrize("metadata", [TOO_MANY, KEY_TOO_LONG, VALUE_TOO_LONG])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "Hi"}]}),
        ("/v1/responses", {"model": FAKE_MODEL, "input": "Hi"}),
        ("/v1/vector_stores", {"name": "notes"}),
        ("/v1/vector_stores/{store}", {"name": "notes"}),
    ],
)
def test_metadata_beyond_openais_limits_is_a_400_naming_it(
    inprocess: InProcess, path: str, body: dict[str, Any], metadata: dict[str, str]
) -> None:
    headers = inprocess.account()
    if "{store}" in path:
        store = inprocess.client.post("/v1/vector_stores", json={"name": "notes"}, headers=headers)
        assert store.status_code == 200, store.text
        path = path.format(store=store.json()["id"])
    reply = inprocess.client.post(path, json={**body, "metadata": metadata}, headers=headers)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == "metadata" and "up to 16 pairs" in error["message"]


@pytest.mark.parametrize("path", ["/v1/responses", "/v1/vector_stores"])
def test_metadata_within_openais_limits_is_kept(inprocess: InProcess, path: str) -> None:
    metadata = {f"k{n}": "v" * 512 for n in range(15)} | {"k" * 64: "v"}
    body = {"model": FAKE_MODEL, "input": "Hi"} if path == "/v1/responses" else {"name": "notes"}
    reply = inprocess.client.post(path, json={**body, "metadata": metadata}, headers=inprocess.account())
    assert reply.status_code == 200, reply.text
    assert reply.json()["metadata"] == metadata
