"""RAG through the gateway: real model, real retrieval service, real embedded Qdrant."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import httpx
import openai
import pytest

from ragway.v1 import retrieval_pb2, retrieval_pb2_grpc
from tests.conftest import MODEL_NAME, Gateway, RetrievalService
from tests.utils.db import rows
from tests.utils.documents import minimal_pdf
from tests.utils.factories import Account, make_account
from tests.utils.processes import RAGWAY

FACTS = {
    "veltravia": "Veltravia is a small island country in the Glass Sea. The capital of Veltravia is Quorvin.",
    "moonfish": "The moonfish of Lake Ardel glows green at night and eats only silver algae.",
    "tarnel": "Tarnel bread is baked with blue salt and is eaten only during the Festival of Lanterns.",
}


def ask(account: Account, question: str, collection: str, **rag: object) -> dict:  # type: ignore[type-arg]
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": question}],
        "temperature": 0,
        "max_tokens": 40,
        "rag": {"collections": [collection], "top_k": 2, **rag},
        "store": True,
    }
    with account.http() as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def ask_follow_up(account: Account, conversation_id: str, collection: str, **rag: object) -> dict:  # type: ignore[type-arg]
    """ "When is it eaten?" in a stored conversation, grounded on the one best chunk."""
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "When is it eaten?"}],
        "max_tokens": 30,
        "temperature": 0,
        "rag": {"collections": [collection], "top_k": 1, **rag},
        "conversation_id": conversation_id,
        "store": True,
    }
    with account.http() as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def new_collection(account: Account) -> str:
    name = f"facts-{uuid.uuid4().hex[:8]}"
    with account.http() as http:
        assert http.post("/v1/collections", json={"name": name}).status_code == 201
    return name


def add_facts(account: Account, collection: str) -> None:
    docs = [{"id": key, "text": text, "metadata": {"topic": key}} for key, text in FACTS.items()]
    with account.http() as http:
        written = http.post(f"/v1/collections/{collection}/documents", json={"documents": docs}).json()[
            "data"
        ]
    assert [d["status"] for d in written] == ["created"] * len(FACTS)


def store_counts(retrieval: RetrievalService, store_name: str) -> tuple[int, int]:
    with grpc.insecure_channel(retrieval.address) as channel:
        info = retrieval_pb2_grpc.RetrievalServiceStub(channel).DescribeCollection(
            retrieval_pb2.DescribeCollectionRequest(name=store_name)
        )
    return info.vector_count, info.document_count


@pytest.fixture
def account(gateway: Gateway) -> Account:
    return make_account(gateway.url, gateway.admin_key)


def test_answer_is_grounded_updated_and_forgotten(
    account: Account, retrieval_service: RetrievalService
) -> None:
    collection = new_collection(account)
    add_facts(account, collection)
    store_name = f"{account.user_id}__{collection}"
    assert store_counts(retrieval_service, store_name) == (3, 3)

    answer = ask(account, "What is the capital of Veltravia?", collection)
    assert "Quorvin" in answer["choices"][0]["message"]["content"]
    assert answer["citations"][0]["document_id"] == "veltravia"
    assert answer["citations"][0]["index"] == 1 and "Quorvin" in answer["citations"][0]["snippet"]

    with account.http() as http:
        replaced = http.put(
            f"/v1/collections/{collection}/documents/veltravia",
            json={"text": FACTS["veltravia"].replace("Quorvin", "Marbeck")},
        )
    assert replaced.json()["status"] == "updated"
    answer = ask(account, "What is the capital of Veltravia?", collection)
    assert "Marbeck" in answer["choices"][0]["message"]["content"]
    assert "Quorvin" not in str(answer["citations"])
    assert store_counts(retrieval_service, store_name) == (3, 3), "the old version left orphan chunks"

    with account.http() as http:
        assert http.delete(f"/v1/collections/{collection}/documents/veltravia").status_code == 200
        assert http.get(f"/v1/collections/{collection}/documents/veltravia").status_code == 404
    answer = ask(account, "What is the capital of Veltravia?", collection)
    assert all(c["document_id"] != "veltravia" for c in answer["citations"])
    assert store_counts(retrieval_service, store_name) == (2, 2)


def test_history_keeps_citations(account: Account) -> None:
    collection = new_collection(account)
    add_facts(account, collection)
    answer = ask(account, "What does the moonfish eat?", collection)
    with account.http() as http:
        stored = http.get(f"/v1/conversations/{answer['conversation_id']}").json()["messages"][-1]
    assert stored["citations"] == answer["citations"]


def test_a_rag_conversation_reuses_the_prefix_cache_turn_after_turn(account: Account) -> None:
    """Turn N+1's prompt begins with exactly what turn N sent plus its answer, so vLLM's prefix
    cache serves it: turn 3 finds at least 90% of turn 2's prompt already computed. The system
    prompt is long, as a deployment's house rules are: vLLM caches whole blocks (128 tokens on the
    CPU), so on a 300-token prompt the last partial block alone would be more than 10%."""
    system = " ".join(
        f"Rule {n}: answer briefly, cite the sources you use, and stay polite." for n in range(80)
    )
    collection = new_collection(account)
    add_facts(account, collection)
    conversation = None
    usages = []
    for question in ("Where is Veltravia?", "What is its capital?", "And what does the moonfish eat?"):
        body = {
            "model": MODEL_NAME,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": question},
            ],
            "temperature": 0,
            "max_tokens": 24,
            "rag": {"collections": [collection], "top_k": 2},
            "store": True,
        }
        if conversation:
            body["conversation_id"] = conversation
        with account.http() as http:
            reply = http.post("/v1/chat/completions", json=body)
        assert reply.status_code == 200, reply.text
        conversation = reply.json()["conversation_id"]
        usages.append(reply.json()["usage"])
    turn2, turn3 = usages[1], usages[2]
    assert turn3["prompt_tokens"] > turn2["prompt_tokens"]
    assert turn3["prompt_tokens_details"]["cached_tokens"] >= 0.9 * turn2["prompt_tokens"], usages


def test_a_follow_up_question_finds_the_page_its_conversation_is_about(account: Account) -> None:
    """ "When is it eaten?" names nothing; the turn before it named tarnel bread."""
    collection = new_collection(account)
    foods = {
        "tarnel": "Tarnel bread is baked with blue salt. People eat it only during the Festival of Lanterns.",
        "sorvel": "When is sorvel cheese eaten? It is eaten at breakfast in the northern valleys.",
        "plum": "Plum dumplings: when are they eaten? They are eaten cold, on summer afternoons.",
    }
    with account.http() as http:
        added = http.post(
            f"/v1/collections/{collection}/documents",
            json={"documents": [{"id": k, "text": v} for k, v in foods.items()]},
        )
        assert added.status_code == 200, added.text
        alone = http.post(
            f"/v1/collections/{collection}/search", json={"query": "When is it eaten?", "top_k": 1}
        )
    assert alone.json()["data"][0]["document_id"] != "tarnel", "the follow-up alone must not find the page"
    first = ask(account, "Tell me about tarnel bread.", collection, top_k=1)
    follow = ask_follow_up(account, first["conversation_id"], collection)
    assert [c["document_id"] for c in follow["citations"]] == ["tarnel"]


def test_the_models_query_rewrite_is_billed_to_the_caller(gateway: Gateway, account: Account) -> None:
    """rewrite_query runs the served model on the caller's behalf: in chat's `rag` and in a vector
    store search, it is reserved and billed like the caller's own requests, under its own label."""
    collection = new_collection(account)
    add_facts(account, collection)
    first = ask(account, "Tell me about tarnel bread.", collection, top_k=1)
    ask_follow_up(account, first["conversation_id"], collection, rewrite_query=True)
    with account.http() as http:
        store = http.post("/v1/vector_stores", json={"name": "rewrites"}).json()["id"]
        found = http.post(
            f"/v1/vector_stores/{store}/search", json={"query": "tarnel bread, when?", "rewrite_query": True}
        )
    assert found.status_code == 200, found.text
    assert len(found.json()["search_query"]) == 1 and found.json()["search_query"][0].strip()
    rewrites = rows(
        gateway.database_url,
        "SELECT prompt_tokens, completion_tokens, cost FROM usage_records"
        " WHERE user_id = :u AND endpoint = 'query_rewrite'",
        u=account.user_id,
    )
    assert len(rewrites) == 2, rewrites
    assert all(prompt > 10 and completion > 0 and cost > 0 for prompt, completion, cost in rewrites)


def test_streamed_rag_answer_sends_citations_before_done(account: Account) -> None:
    collection = new_collection(account)
    add_facts(account, collection)
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "How is tarnel bread baked?"}],
        "max_tokens": 20,
        "stream": True,
        "rag": {"collections": [collection], "top_k": 1},
    }
    with account.http() as http, http.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert '"citations"' in lines[-2] and '"document_id":"tarnel"' in lines[-2]


def test_no_hits_says_no_sources_were_used(account: Account) -> None:
    collection = new_collection(account)
    add_facts(account, collection)
    answer = ask(account, "What is the capital of Veltravia?", collection, min_score=0.99)
    assert answer["citations"] == []


def test_search_with_filters(account: Account) -> None:
    collection = new_collection(account)
    add_facts(account, collection)
    with account.http() as http:
        hits = http.post(
            f"/v1/collections/{collection}/search", json={"query": "capital city", "top_k": 3}
        ).json()
        assert hits["data"][0]["document_id"] == "veltravia"
        only = http.post(
            f"/v1/collections/{collection}/search",
            json={"query": "capital city", "top_k": 3, "filter": {"topic": {"in": ["moonfish", "tarnel"]}}},
        ).json()
        assert {h["document_id"] for h in only["data"]} <= {"moonfish", "tarnel"}
        bad = http.post(
            f"/v1/collections/{collection}/search", json={"query": "x", "filter": {"topic": {"regex": "."}}}
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "filter"


def test_uploads_of_every_supported_type(account: Account) -> None:
    collection = new_collection(account)
    files = [
        ("files", ("notes.txt", b"The Zelk river flows north into the Amber Bay.", "text/plain")),
        ("files", ("guide.md", b"# Brewing\n\n## Kettles\n\nCopper kettles hum at dawn.", "text/markdown")),
        (
            "files",
            (
                "page.html",
                b"<html><body><h1>Orchard</h1><script>evil()</script>"
                b"<p>Plum trees bloom in May.</p></body></html>",
                "text/html",
            ),
        ),
        ("files", ("report.pdf", minimal_pdf("The Horvath glacier melts every autumn."), "application/pdf")),
    ]
    with account.http() as http:
        written = http.post(f"/v1/collections/{collection}/documents", files=files)
        assert written.status_code == 200, written.text
        assert all(d["chunks"] >= 1 for d in written.json()["data"])
        html = http.get(f"/v1/collections/{collection}/documents/page.html").json()
        assert "Plum trees bloom" in html["chunks"][0]["text"] and "evil()" not in html["chunks"][0]["text"]
        pdf = http.get(f"/v1/collections/{collection}/documents/report.pdf").json()
        assert "Horvath glacier" in pdf["chunks"][0]["text"]
        listed = http.get(f"/v1/collections/{collection}/documents").json()["data"]
        assert sorted(d["id"] for d in listed) == ["guide.md", "notes.txt", "page.html", "report.pdf"]


def test_upload_limits_and_types(gateway: Gateway, account: Account) -> None:
    collection = new_collection(account)
    with account.http() as http:
        exe = http.post(
            f"/v1/collections/{collection}/documents",
            files=[("files", ("tool.exe", b"MZ", "application/octet-stream"))],
        )
        assert exe.status_code == 415 and ".pdf" in exe.json()["error"]["message"]
        big = http.post(
            f"/v1/collections/{collection}/documents",
            files=[("files", ("big.txt", b"a" * (21 * 1024 * 1024), "text/plain"))],
        )
        assert big.status_code == 413 and "bytes" in big.json()["error"]["message"]
        many = [("files", (f"f{i}.txt", b"text", "text/plain")) for i in range(21)]
        too_many = http.post(f"/v1/collections/{collection}/documents", files=many)
        assert too_many.status_code == 413 and "20 files" in too_many.json()["error"]["message"]


def test_another_users_collection_is_not_found_on_every_route(gateway: Gateway, account: Account) -> None:
    collection = new_collection(account)
    add_facts(account, collection)
    other = make_account(gateway.url, gateway.admin_key)
    base = f"/v1/collections/{collection}"
    with other.http() as http:
        attempts = [
            http.get(base),
            http.delete(base),
            http.get(f"{base}/documents"),
            http.post(f"{base}/documents", json={"documents": [{"text": "x"}]}),
            http.get(f"{base}/documents/veltravia"),
            http.put(f"{base}/documents/veltravia", json={"text": "x"}),
            http.delete(f"{base}/documents/veltravia"),
            http.post(f"{base}/search", json={"query": "capital"}),
            http.post(
                "/v1/chat/completions",
                json={
                    "model": MODEL_NAME,
                    "messages": [{"role": "user", "content": "hi"}],
                    "rag": {"collections": [collection]},
                },
            ),
        ]
        assert [r.status_code for r in attempts] == [404] * len(attempts)
        assert collection not in str(http.get("/v1/collections").json())
        # Their own collection of the same name is theirs alone.
        assert http.post("/v1/collections", json={"name": collection}).status_code == 201
        assert http.get(f"{base}/documents").json()["data"] == []


def test_embeddings_through_the_openai_sdk(account: Account) -> None:
    reply = account.openai().embeddings.create(model="all-MiniLM-L6-v2", input=["hello world", "goodbye"])
    assert len(reply.data) == 2 and all(len(d.embedding) == 384 for d in reply.data)
    assert reply.usage.prompt_tokens > 0
    floats = account.openai().embeddings.create(
        model="all-MiniLM-L6-v2", input="hello world", encoding_format="float"
    )
    assert floats.data[0].embedding == pytest.approx(reply.data[0].embedding, abs=1e-5)
    with pytest.raises(openai.NotFoundError):
        account.openai().embeddings.create(model="text-embedding-3-small", input="x")


def test_ragway_ingest_skips_unchanged_files(gateway: Gateway, account: Account, tmp_path: Path) -> None:
    import subprocess

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# Alpha\n\nThe alpha station orbits Veltra.")
    (folder / "b.txt").write_text("Beta crystals hum at night.")
    collection = f"ingest-{uuid.uuid4().hex[:8]}"

    def run() -> str:
        result = subprocess.run(
            [
                RAGWAY,
                "ingest",
                str(folder),
                "--collection",
                collection,
                "--url",
                gateway.url,
                "--api-key",
                account.key,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "2 written" in run()
    assert "0 written (0 chunks), 2 unchanged" in run()
    (folder / "b.txt").write_text("Beta crystals are silent now.")
    assert "1 written" in run()
    with httpx.Client(base_url=gateway.url, headers=account.headers) as http:
        chunks = http.get(f"/v1/collections/{collection}/documents/b.txt").json()["chunks"]
    assert [c["text"] for c in chunks] == ["Beta crystals are silent now."]
