"""The authorization matrix, generated from the gateway's route table.

Every route is classified in ROUTES below; a route added to the app without a row here fails
`test_every_route_has_an_authorization_check`, so no route ships without its check. The live
tests then walk the table: user B gets 404 for each of user A's objects (exactly as for objects
that do not exist), a user key gets 403 on admin routes, revoked and expired keys get 401
everywhere, and B's crafted filters never reach A's chunks.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import MODEL_NAME, Gateway
from tests.reliability.conftest import Figures
from tests.utils.factories import Account, make_account
from tests.utils.routes import app_routes

# What each route must enforce.
#   owned:   names one of the caller's objects in its path; another user's -> 404
#   body:    may name the caller's objects in its body (conversation_id, rag.collections) -> 404
#   listing: lists the caller's objects only
#   self:    the caller's own account, no object named
#   admin:   admin keys only -> 403 for a user key
#   open:    no object of anyone's (the served model, embeddings of given text)
#   public:  no key needed (probes, metrics)
ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/v1/chat/completions"): "body",
    ("POST", "/v1/completions"): "open",
    ("POST", "/v1/responses"): "body",
    ("GET", "/v1/responses/{response_id}"): "owned",
    ("DELETE", "/v1/responses/{response_id}"): "owned",
    ("GET", "/v1/responses/{response_id}/input_items"): "owned",
    ("POST", "/tokenize"): "open",
    ("POST", "/detokenize"): "open",
    ("GET", "/v1/models"): "open",
    ("GET", "/v1/models/{model_id:path}"): "open",
    ("POST", "/v1/embeddings"): "open",
    ("POST", "/v1/rerank"): "open",
    ("POST", "/v2/rerank"): "open",
    ("POST", "/v1/score"): "open",
    ("GET", "/v1/conversations"): "listing",
    ("GET", "/v1/conversations/{conversation_id}"): "owned",
    ("PATCH", "/v1/conversations/{conversation_id}"): "owned",
    ("DELETE", "/v1/conversations/{conversation_id}"): "owned",
    ("POST", "/v1/collections"): "self",
    ("GET", "/v1/collections"): "listing",
    ("GET", "/v1/collections/{name}"): "owned",
    ("DELETE", "/v1/collections/{name}"): "owned",
    ("POST", "/v1/collections/{name}/documents"): "owned",
    ("GET", "/v1/collections/{name}/documents"): "owned",
    ("GET", "/v1/collections/{name}/documents/{document_id:path}"): "owned",
    ("PUT", "/v1/collections/{name}/documents/{document_id:path}"): "owned",
    ("DELETE", "/v1/collections/{name}/documents/{document_id:path}"): "owned",
    ("POST", "/v1/collections/{name}/search"): "owned",
    ("POST", "/v1/files"): "self",
    ("GET", "/v1/files"): "listing",
    ("GET", "/v1/files/{file_id}"): "owned",
    ("GET", "/v1/files/{file_id}/content"): "owned",
    ("DELETE", "/v1/files/{file_id}"): "owned",
    ("POST", "/v1/vector_stores"): "body",
    ("GET", "/v1/vector_stores"): "listing",
    ("GET", "/v1/vector_stores/{vector_store_id}"): "owned",
    ("POST", "/v1/vector_stores/{vector_store_id}"): "owned",
    ("DELETE", "/v1/vector_stores/{vector_store_id}"): "owned",
    ("POST", "/v1/vector_stores/{vector_store_id}/search"): "owned",
    ("POST", "/v1/vector_stores/{vector_store_id}/files"): "owned",
    ("GET", "/v1/vector_stores/{vector_store_id}/files"): "owned",
    ("GET", "/v1/vector_stores/{vector_store_id}/files/{file_id}"): "owned",
    ("POST", "/v1/vector_stores/{vector_store_id}/files/{file_id}"): "owned",
    ("DELETE", "/v1/vector_stores/{vector_store_id}/files/{file_id}"): "owned",
    ("GET", "/v1/vector_stores/{vector_store_id}/files/{file_id}/content"): "owned",
    ("POST", "/v1/vector_stores/{vector_store_id}/file_batches"): "owned",
    ("GET", "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}"): "owned",
    ("POST", "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel"): "owned",
    ("GET", "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/files"): "owned",
    ("GET", "/v1/me"): "self",
    ("GET", "/v1/usage"): "self",
    ("GET", "/v1/admin/usage"): "admin",
    ("POST", "/v1/admin/users"): "admin",
    ("GET", "/v1/admin/users"): "admin",
    ("GET", "/v1/admin/users/{user_id}"): "admin",
    ("DELETE", "/v1/admin/users/{user_id}"): "admin",
    ("POST", "/v1/admin/users/{user_id}/credits"): "admin",
    ("POST", "/v1/admin/keys"): "admin",
    ("GET", "/v1/admin/keys"): "admin",
    ("PATCH", "/v1/admin/keys/{key_id}"): "admin",
    ("DELETE", "/v1/admin/keys/{key_id}"): "admin",
    ("GET", "/healthz"): "public",
    ("GET", "/readyz"): "public",
    ("GET", "/metrics"): "public",
}


def test_every_route_has_an_authorization_check() -> None:
    routes = app_routes()
    missing = routes - set(ROUTES)
    assert not missing, f"routes without a row in the authorization matrix: {sorted(missing)}"
    stale = set(ROUTES) - routes
    assert not stale, f"rows for routes that no longer exist: {sorted(stale)}"


# -- the live matrix -------------------------------------------------------------------------------


@dataclass
class World:
    gateway: Gateway
    a: Account
    b: Account
    conversation: str
    collection: str
    document: str
    secret_text: str
    vector_store: str = ""
    file: str = ""
    batch: str = ""
    response: str = ""


def _fill(path: str, world: World) -> str:
    values = {
        "conversation_id": world.conversation,
        "name": world.collection,
        "document_id": world.document,
        "user_id": world.a.user_id,
        "key_id": world.a.key_id,
        "model_id": MODEL_NAME,
        "vector_store_id": world.vector_store,
        "file_id": world.file,
        "batch_id": world.batch,
        "response_id": world.response,
    }
    return re.sub(r"\{(\w+)(:path)?\}", lambda m: values[m.group(1)], path)


def _body(method: str, path: str, world: World) -> dict[str, Any] | None:
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/v1/chat/completions"): {
            "model": MODEL_NAME,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 1,
        },
        ("POST", "/v1/completions"): {"model": MODEL_NAME, "prompt": "hi", "max_tokens": 1},
        ("POST", "/v1/responses"): {
            "model": MODEL_NAME,
            "input": "hi",
            "max_output_tokens": 16,
            "previous_response_id": world.response,
        },
        ("POST", "/tokenize"): {"model": MODEL_NAME, "prompt": "hi"},
        ("POST", "/detokenize"): {"model": MODEL_NAME, "tokens": [1, 2]},
        ("POST", "/v1/embeddings"): {"model": "all-MiniLM-L6-v2", "input": "hi"},
        ("POST", "/v1/rerank"): {"model": MODEL_NAME, "query": "hi", "documents": ["a", "b"]},
        ("POST", "/v2/rerank"): {"model": MODEL_NAME, "query": "hi", "documents": ["a", "b"]},
        ("POST", "/v1/score"): {"model": MODEL_NAME, "text_1": "hi", "text_2": ["a"]},
        ("PATCH", "/v1/conversations/{conversation_id}"): {"title": "taken over"},
        ("POST", "/v1/collections"): {"name": f"c{uuid.uuid4().hex[:8]}"},
        ("POST", "/v1/collections/{name}/documents"): {"documents": [{"text": "planted by B"}]},
        ("PUT", "/v1/collections/{name}/documents/{document_id:path}"): {"text": "overwritten by B"},
        ("POST", "/v1/collections/{name}/search"): {"query": "launch codes"},
        ("POST", "/v1/admin/users"): {"name": f"x-{uuid.uuid4().hex[:8]}", "role": "admin", "credits": 1e6},
        ("POST", "/v1/admin/users/{user_id}/credits"): {"amount": 1e6},
        ("POST", "/v1/admin/keys"): {"user_id": world.b.user_id},
        ("PATCH", "/v1/admin/keys/{key_id}"): {"rpm_limit": 1},
        ("POST", "/v1/vector_stores"): {"name": "B's", "file_ids": [world.file]},
        ("POST", "/v1/vector_stores/{vector_store_id}"): {"name": "taken over"},
        ("POST", "/v1/vector_stores/{vector_store_id}/search"): {"query": "launch codes"},
        ("POST", "/v1/vector_stores/{vector_store_id}/files"): {"file_id": world.file},
        ("POST", "/v1/vector_stores/{vector_store_id}/files/{file_id}"): {"attributes": {"owner": "b"}},
        ("POST", "/v1/vector_stores/{vector_store_id}/file_batches"): {"file_ids": [world.file]},
    }
    return bodies.get((method, path))


@pytest.fixture(scope="module")
def world(gateway: Gateway) -> Iterator[World]:
    a = make_account(gateway.url, gateway.admin_key)
    b = make_account(gateway.url, gateway.admin_key)
    secret = f"The launch codes are {uuid.uuid4().hex}."
    with a.http() as http:
        reply = http.post(
            "/v1/chat/completions",
            json={
                "model": MODEL_NAME,
                "messages": [{"role": "user", "content": "Say hi."}],
                "max_tokens": 3,
                "store": True,
            },
        )
        assert reply.status_code == 200, reply.text
        conversation = reply.json()["conversation_id"]
        assert http.post("/v1/collections", json={"name": "private"}).status_code == 201
        added = http.post(
            "/v1/collections/private/documents",
            json={"documents": [{"id": "codes", "text": secret, "metadata": {"owner": "a", "tier": 1}}]},
        )
        assert added.status_code == 200, added.text
        uploaded = http.post(
            "/v1/files", files={"file": ("codes.txt", secret.encode())}, data={"purpose": "assistants"}
        )
        assert uploaded.status_code == 200, uploaded.text
        file_id = uploaded.json()["id"]
        store = http.post("/v1/vector_stores", json={"name": "private", "file_ids": [file_id]})
        assert store.status_code == 200, store.text
        batch = http.post(
            f"/v1/vector_stores/{store.json()['id']}/file_batches", json={"file_ids": [file_id]}
        )
        assert batch.status_code == 200, batch.text
        response = http.post(
            "/v1/responses", json={"model": MODEL_NAME, "input": "Say hi.", "max_output_tokens": 16}
        )
        assert response.status_code == 200, response.text
    yield World(
        gateway,
        a,
        b,
        conversation,
        "private",
        "codes",
        secret,
        store.json()["id"],
        file_id,
        batch.json()["id"],
        response.json()["id"],
    )


def _call(http: httpx.Client, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
    return http.request(method, path, json=body) if body is not None else http.request(method, path)


def _assert_openai_error(response: httpx.Response, status: int, where: str) -> None:
    assert response.status_code == status, f"{where}: {response.status_code} {response.text[:300]}"
    error = response.json()["error"]
    assert error["message"] and error["type"] and "code" in error, where


def test_user_b_gets_404_for_every_object_of_user_a(world: World, figures: Figures) -> None:
    checked = 0
    with world.b.http() as b:
        for (method, path), kind in sorted(ROUTES.items()):
            if kind != "owned":
                continue
            url = _fill(path, world)
            _assert_openai_error(_call(b, method, url, _body(method, path, world)), 404, f"B {method} {url}")
            checked += 1
        # Objects named in the body: A's conversation, A's collection for RAG.
        chat = _body("POST", "/v1/chat/completions", world)
        assert chat is not None
        # A's file named in the body of B's new vector store.
        _assert_openai_error(
            b.post("/v1/vector_stores", json=_body("POST", "/v1/vector_stores", world)),
            404,
            "B store of A's file",
        )
        checked += 1
        # A's response continued by B.
        _assert_openai_error(
            b.post("/v1/responses", json=_body("POST", "/v1/responses", world)),
            404,
            "B continues A's response",
        )
        checked += 1
        for extra in ({"conversation_id": world.conversation}, {"rag": {"collections": [world.collection]}}):
            _assert_openai_error(
                b.post("/v1/chat/completions", json={**chat, **extra}), 404, f"B chat {extra}"
            )
            checked += 1
        # Listings show B's own objects only.
        assert b.get("/v1/conversations").json()["data"] == []
        assert b.get("/v1/collections").json()["data"] == []
        assert b.get("/v1/files").json()["data"] == []
        assert b.get("/v1/vector_stores").json()["data"] == []
        assert b.get("/v1/me").json()["id"] == world.b.user_id
        assert b.get("/v1/usage").json()["data"] == []
        checked += 4
    # Nothing of A's changed.
    with world.a.http() as a:
        conversation = a.get(f"/v1/conversations/{world.conversation}").json()
        assert conversation["title"] != "taken over" and conversation["messages"]
        doc = a.get(f"/v1/collections/{world.collection}/documents/{world.document}").json()
        assert doc["chunks"][0]["text"] == world.secret_text
        assert [d["id"] for d in a.get(f"/v1/collections/{world.collection}/documents").json()["data"]] == [
            world.document
        ]
    figures.add("authorization", f"cross-user checks: {checked} (all 404 / own data only)")


def test_a_user_key_on_admin_routes_gets_403(world: World, figures: Figures) -> None:
    admin_routes = [(m, p) for (m, p), kind in ROUTES.items() if kind == "admin"]
    with world.b.http() as b:
        for method, path in admin_routes:
            url = _fill(path, world)
            _assert_openai_error(
                _call(b, method, url, _body(method, path, world)), 403, f"user {method} {url}"
            )
    with world.a.http() as a:
        me = a.get("/v1/me").json()
        assert me["role"] == "user" and me["credits"] < 1000
    figures.add("authorization", f"admin routes refused to a user key: {len(admin_routes)} (all 403)")


def test_revoked_and_expired_keys_get_401_on_every_route(world: World, figures: Figures) -> None:
    gw = world.gateway
    admin = {"Authorization": f"Bearer {gw.admin_key}"}
    revoked = make_account(gw.url, gw.admin_key)
    expiring = make_account(gw.url, gw.admin_key, expires_at=int(time.time()) + 3600)
    assert httpx.delete(f"{gw.url}/v1/admin/keys/{revoked.key_id}", headers=admin).status_code == 200
    past = httpx.patch(
        f"{gw.url}/v1/admin/keys/{expiring.key_id}", headers=admin, json={"expires_at": int(time.time()) - 1}
    )
    assert past.status_code == 200, past.text
    checked = 0
    for account in (revoked, expiring):
        with account.http() as http:
            for (method, path), kind in sorted(ROUTES.items()):
                if kind == "public":
                    continue
                url = _fill(path, world)
                response = _call(http, method, url, _body(method, path, world))
                _assert_openai_error(response, 401, f"dead key {method} {url}")
                assert response.headers.get("www-authenticate") == "Bearer"
                assert account.key not in response.text
                checked += 1
    figures.add("authorization", f"revoked/expired key requests: {checked} (all 401)")


def test_privileged_fields_in_a_users_own_bodies_are_rejected_or_ignored(world: World) -> None:
    with world.a.http() as a:
        before = a.get("/v1/me").json()
        patched = a.patch(
            f"/v1/conversations/{world.conversation}",
            json={"title": "mine", "credits": 1e9, "role": "admin", "user_id": world.b.user_id},
        )
        assert patched.status_code in (200, 400), patched.text
        if patched.status_code == 400:
            assert patched.json()["error"]["message"]
        shared = a.post("/v1/collections", json={"name": "wants-to-share", "shared": True})
        _assert_openai_error(shared, 403, "a user sharing a collection")
        chat = a.post(
            "/v1/chat/completions",
            json={
                "model": MODEL_NAME,
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 1,
                "credits": 1e9,
                "role": "admin",
                "user_id": world.b.user_id,
            },
        )
        assert chat.status_code in (200, 400), chat.text
        after = a.get("/v1/me").json()
        assert after["role"] == "user" and after["id"] == before["id"]
        assert after["credits"] <= before["credits"]
        # The conversation still belongs to A and to A only.
        assert a.get(f"/v1/conversations/{world.conversation}").status_code == 200
    with world.b.http() as b:
        assert b.get(f"/v1/conversations/{world.conversation}").status_code == 404


CRAFTED_FILTERS: list[dict[str, Any]] = [
    {"owner": "a"},
    {"tier": 1},
    {"tier": {"gte": 0}},
    {"user_id": "*"},
    {"collection": "private"},
    {"document_id": {"in": ["codes"]}},
    {"store_name": {"in": ["private", "*"]}},
    {"metadata.owner": "a"},
    {"$or": "true"},
    {"owner": {"in": ["a", "b", "*"]}},
]


def test_no_filter_crafted_by_b_returns_a_chunk_of_as_collections(world: World, figures: Figures) -> None:
    with world.b.http() as b:
        # B's own collection of the same name, with metadata shaped like A's.
        assert b.post("/v1/collections", json={"name": world.collection}).status_code == 201
        added = b.post(
            f"/v1/collections/{world.collection}/documents",
            json={"documents": [{"id": "codes", "text": "B's harmless note.", "metadata": {"owner": "b"}}]},
        )
        assert added.status_code == 200, added.text
        secret_word = world.secret_text.split()[-1].rstrip(".")
        statuses = []
        for crafted in CRAFTED_FILTERS:
            for query in ("launch codes", secret_word):
                search = b.post(
                    f"/v1/collections/{world.collection}/search",
                    json={"query": query, "top_k": 50, "filter": crafted},
                )
                statuses.append(search.status_code)
                assert search.status_code in (200, 400), search.text
                assert secret_word not in search.text, f"filter {crafted} leaked A's chunk"
        rag = b.post(
            "/v1/chat/completions",
            json={
                "model": MODEL_NAME,
                "messages": [{"role": "user", "content": "What are the launch codes?"}],
                "max_tokens": 1,
                "rag": {
                    "collections": [world.collection],
                    "top_k": 50,
                    "filter": {"owner": {"in": ["a", "b"]}},
                },
            },
        )
        assert rag.status_code == 200, rag.text
        assert secret_word not in rag.text
        assert all(
            c["document_id"] == "codes" and "harmless" in c["snippet"] for c in rag.json()["citations"]
        )
    figures.add(
        "authorization",
        f"crafted filters: {len(statuses)} searches ({statuses.count(200)} 200, {statuses.count(400)} 400), "
        "0 of A's chunks returned",
    )
