"""The retrieval contract, run against every vector store (see conftest.BACKENDS).

Each rule of the issue is checked through the service's own logic on a real store, and where the
rule is about what is stored, by counting points in the store itself.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from ragway.core.errors import AlreadyExists, InvalidArgument, NotFound
from ragway.retrieval.config import RetrievalSettings
from ragway.retrieval.embedder import Embedder
from ragway.retrieval.service import DocumentInput, Retrieval
from ragway.retrieval.stores.base import Condition, Distance, Filter, IndexParams, Range, VectorStore
from tests.retrieval.conftest import Backend, load_corpus
from tests.retrieval.corpus import FOOD, SCIENCE, TOPICS


def long_text(word: str, sentences: int) -> str:
    """A document of distinct sentences about `word`, long enough for many chunks."""
    return " ".join(
        f"Sentence {i} about {word} number {i * 7} in the long document." for i in range(sentences)
    )


async def test_each_topic_question_returns_its_paragraph_first(retrieval: Retrieval) -> None:
    await load_corpus(retrieval, "corpus")
    for topic, text, question in TOPICS:
        hits = await retrieval.search("corpus", question, 3, Filter())
        assert hits[0].document_id == topic, f"{question!r} found {[h.document_id for h in hits]}"
        assert hits[0].text == text
        assert hits[0].score > hits[1].score


async def test_filters_restrict_results(retrieval: Retrieval) -> None:
    await load_corpus(retrieval, "corpus")
    science = await retrieval.search(
        "corpus", "food and drink", 40, Filter((Condition("category", "science"),))
    )
    assert {h.document_id for h in science} == SCIENCE
    any_of = Filter((Condition("category", any_of=("food", "science")),))
    assert {h.document_id for h in await retrieval.search("corpus", "nature", 40, any_of)} == SCIENCE | FOOD
    years = Filter((Condition("year", range=Range(gte=2010, lt=2015)),))
    hits = await retrieval.search("corpus", "history", 40, years)
    assert sorted(h.metadata["year"] for h in hits) == [2010, 2011, 2012, 2013, 2014]
    both = Filter((Condition("public", True), Condition("category", "food")))
    hits = await retrieval.search("corpus", "breakfast", 40, both)
    assert hits and all(h.metadata["public"] is True and h.metadata["category"] == "food" for h in hits)
    by_int = Filter((Condition("year", 2003),))
    assert [h.document_id for h in await retrieval.search("corpus", "anything", 5, by_int)] == [TOPICS[3][0]]


async def test_score_threshold_drops_weak_hits(retrieval: Retrieval) -> None:
    await load_corpus(retrieval, "corpus")
    hits = await retrieval.search(
        "corpus", "How is espresso coffee brewed?", 40, Filter(), score_threshold=0.5
    )
    assert [h.document_id for h in hits] == ["espresso"]


async def test_search_by_vector_matches_search_by_text(retrieval: Retrieval, embedder: Embedder) -> None:
    await load_corpus(retrieval, "corpus")
    vector = embedder.embed(["Which rover is looking for ancient life?"])[0]
    hits = await retrieval.search("corpus", vector.tolist(), 1, Filter())
    assert hits[0].document_id == "mars_rover"


async def test_reupsert_with_fewer_chunks_leaves_none_of_the_old(
    retrieval: Retrieval, store: VectorStore
) -> None:
    await retrieval.create_collection("docs", Distance.COSINE, IndexParams())
    [(_, first)] = await retrieval.upsert("docs", [DocumentInput("doc", long_text("apples", 120))])
    assert first > 5
    assert await store.count("docs", ["doc"]) == first
    [(_, second)] = await retrieval.upsert("docs", [DocumentInput("doc", "A single short note about pears.")])
    assert second == 1
    assert await store.count("docs", ["doc"]) == 1
    assert await store.count("docs") == 1
    doc = await retrieval.get_document("docs", "doc")
    assert [c.text for c in doc.chunks] == ["A single short note about pears."]


async def test_search_never_mixes_two_versions(retrieval: Retrieval, embedder: Embedder) -> None:
    await retrieval.create_collection("docs", Distance.COSINE, IndexParams())
    await retrieval.upsert("docs", [DocumentInput("doc", long_text("apples", 400), metadata={"k": "v"})])
    query = embedder.embed(["sentence about fruit"])[0].tolist()
    seen: list[set[int]] = []
    upsert = asyncio.create_task(retrieval.upsert("docs", [DocumentInput("doc", long_text("pears", 300))]))
    while not upsert.done():
        hits = await retrieval.search("docs", query, 100, Filter())
        seen.append({h.version for h in hits})
        await asyncio.sleep(0)
    await upsert
    seen.append({h.version for h in await retrieval.search("docs", query, 100, Filter())})
    assert len(seen) > 3, "the searches should have overlapped the rewrite"
    assert all(len(versions) == 1 for versions in seen), [(i, v) for i, v in enumerate(seen) if len(v) != 1]
    assert seen[0] != seen[-1]


async def test_deleting_a_document_removes_every_chunk(retrieval: Retrieval, store: VectorStore) -> None:
    await retrieval.create_collection("docs", Distance.COSINE, IndexParams())
    await retrieval.upsert(
        "docs",
        [
            DocumentInput("a", long_text("apples", 60), metadata={"team": "red"}),
            DocumentInput("b", long_text("bananas", 60), metadata={"team": "blue"}),
            DocumentInput("c", long_text("cherries", 60), metadata={"team": "red"}),
        ],
    )
    in_a = await store.count("docs", ["a"])
    assert await retrieval.delete_documents("docs", ["a"], Filter()) == in_a
    assert await store.count("docs", ["a"]) == 0
    with pytest.raises(NotFound):
        await retrieval.get_document("docs", "a")
    in_c = await store.count("docs", ["c"])
    assert await retrieval.delete_documents("docs", [], Filter((Condition("team", "red"),))) == in_c
    assert await store.count("docs") == await store.count("docs", ["b"]) > 0
    hits = await retrieval.search("docs", "cherries", 10, Filter())
    assert {h.document_id for h in hits} == {"b"}


async def test_deleting_a_collection_removes_everything(retrieval: Retrieval, store: VectorStore) -> None:
    await load_corpus(retrieval, "corpus")
    assert await retrieval.delete_collection("corpus") == len(TOPICS)
    with pytest.raises(NotFound):
        await retrieval.describe_collection("corpus")
    with pytest.raises(NotFound):
        await retrieval.search("corpus", "volcano", 5, Filter())
    await retrieval.create_collection("corpus", Distance.COSINE, IndexParams())
    assert await store.count("corpus") == 0
    assert (await retrieval.describe_collection("corpus")).document_count == 0


async def test_writes_survive_a_restart(
    backend: Backend, store: VectorStore, embedder: Embedder, settings: RetrievalSettings
) -> None:
    retrieval = Retrieval(store, embedder, settings)
    await load_corpus(retrieval, "corpus")
    await retrieval.upsert("corpus", [DocumentInput("long", long_text("kiwis", 100))])
    before = await store.count("corpus")
    await store.close()
    reopened = backend.open()
    try:
        again = Retrieval(reopened, embedder, settings)
        info = await again.describe_collection("corpus")
        assert (info.vector_count, info.document_count) == (before, len(TOPICS) + 1)
        assert info.spec.dimension == 384 and info.spec.embedder == embedder.name
        hits = await again.search("corpus", "Which bases pair together in DNA?", 1, Filter())
        assert hits[0].document_id == "dna"
    finally:
        await reopened.close()
    # The fixture closes `store` again; every backend must take that quietly.
    backend_store_closed_twice_is_fine = True
    assert backend_store_closed_twice_is_fine


async def test_concurrent_upserts_of_one_id_end_with_one_complete_version(
    retrieval: Retrieval, store: VectorStore
) -> None:
    await retrieval.create_collection("docs", Distance.COSINE, IndexParams())
    texts = [long_text(fruit, n) for fruit, n in (("apples", 90), ("pears", 30), ("plums", 150), ("figs", 5))]
    results = await asyncio.gather(*(retrieval.upsert("docs", [DocumentInput("doc", t)]) for t in texts))
    counts = [r[0][1] for r in results]
    assert len(set(counts)) == len(texts)
    doc = await retrieval.get_document("docs", "doc")
    stored = await store.chunks("docs", "doc")
    assert len({c.version for c in stored}) == 1
    assert len(stored) == len(doc.chunks) in counts
    assert [c.index for c in doc.chunks] == list(range(len(doc.chunks)))
    winner = texts[counts.index(len(doc.chunks))]
    assert doc.chunks[0].text.split()[:4] == winner.split()[:4]


async def test_list_documents_pages_by_id(retrieval: Retrieval) -> None:
    await load_corpus(retrieval, "corpus")
    ids: list[str] = []
    after = ""
    while True:
        page, after = await retrieval.list_documents("corpus", 15, after)
        ids += [d.id for d in page]
        assert all(d.chunks == 1 for d in page)
        if not after:
            break
    assert ids == sorted(topic for topic, _, _ in TOPICS)


async def test_euclid_and_dot_collections_rank_closest_first(retrieval: Retrieval) -> None:
    for distance in (Distance.EUCLID, Distance.DOT):
        name = f"corpus-{distance.value}"
        await retrieval.create_collection(name, distance, IndexParams(hnsw_m=8, hnsw_ef_construct=64))
        await retrieval.upsert(name, [DocumentInput(t, text) for t, text, _ in TOPICS[:10]])
        hits = await retrieval.search(name, TOPICS[6][2], 3, Filter())
        assert hits[0].document_id == TOPICS[6][0]
        assert hits[0].score > hits[1].score >= hits[2].score
        assert (await retrieval.describe_collection(name)).spec.distance is distance


async def test_bad_input_is_refused_precisely(retrieval: Retrieval) -> None:
    await load_corpus(retrieval, "corpus")
    with pytest.raises(NotFound):
        await retrieval.upsert("missing", [DocumentInput("a", "text")])
    with pytest.raises(AlreadyExists):
        await retrieval.create_collection("corpus", Distance.COSINE, IndexParams())
    with pytest.raises(InvalidArgument, match="no text"):
        await retrieval.upsert("corpus", [DocumentInput("a", "   \n ")])
    with pytest.raises(InvalidArgument, match="unsupported content type"):
        await retrieval.upsert("corpus", [DocumentInput("a", b"\x00\x01", "image/png")])
    with pytest.raises(InvalidArgument, match="384"):
        await retrieval.search("corpus", [0.1] * 10, 5, Filter())
    with pytest.raises(InvalidArgument, match="collection name"):
        await retrieval.create_collection("bad name!", Distance.COSINE, IndexParams())
    with pytest.raises(InvalidArgument, match="top_k"):
        await retrieval.search("corpus", "volcano", 1000, Filter())
    # Nothing of the refused writes reached the store.
    assert (await retrieval.describe_collection("corpus")).vector_count == len(TOPICS)


async def test_a_failed_batch_writes_nothing(retrieval: Retrieval, store: VectorStore) -> None:
    await retrieval.create_collection("docs", Distance.COSINE, IndexParams())
    with pytest.raises(InvalidArgument) as raised:
        await retrieval.upsert(
            "docs", [DocumentInput("ok", "fine text"), DocumentInput("bad", b"x", "image/png")]
        )
    assert raised.value.field == "documents[1].content_type"
    assert await store.count("docs") == 0


def test_backends_agree_on_point_ids(tmp_path: Path) -> None:
    """Point ids are derived, not random: a retried write overwrites itself on every backend."""
    from ragway.retrieval.stores.qdrant_common import point_id

    assert point_id("doc", 1, 0) == point_id("doc", 1, 0) != point_id("doc", 2, 0)
    assert np.unique([point_id("d", 1, i) for i in range(1000)]).size == 1000
