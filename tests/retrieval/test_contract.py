"""The retrieval contract, run against every vector store (see conftest.BACKENDS).

Each rule of the issue is checked through the service's own logic on a real store, and where the
rule is about what is stored, by counting points in the store itself.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from ragway.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from ragway.retrieval.config import RetrievalSettings
from ragway.retrieval.embedder import Embedder
from ragway.retrieval.fusion import RRF_K
from ragway.retrieval.service import DocumentInput, Mode, Retrieval, SearchOptions
from ragway.retrieval.sparse import NAME as SPARSE_ENCODER
from ragway.retrieval.stores.base import (
    CollectionSpec,
    Condition,
    Distance,
    Filter,
    Fusion,
    IndexParams,
    Range,
    VectorStore,
)
from tests.retrieval.conftest import Backend, load_corpus
from tests.retrieval.corpus import FOOD, SCIENCE, TOPICS

DENSE = SearchOptions(mode=Mode.DENSE)
SPARSE = SearchOptions(mode=Mode.SPARSE)
HYBRID = SearchOptions(mode=Mode.HYBRID)

# Three notes a dense embedder can hardly tell apart, told apart by one exact term each.
ERROR_NOTES = [
    ("printer_e1342", "Printer error E1342 appears when the paper tray sensor reports a jam that is not "
     "there; power-cycle the printer and clean the sensor."),
    ("printer_e2719", "Printer error E2719 appears when the toner cartridge chip cannot be read; reseat "
     "the cartridge or replace it."),
    ("printer_e5804", "Printer error E5804 appears when the fuser unit overheats; let the printer cool down "
     "for thirty minutes."),
]  # fmt: skip


def ids(hits: list) -> list[str]:
    return [h.document_id for h in hits]


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
        "corpus", "How is espresso coffee brewed?", 40, Filter(), score_threshold=0.5, options=DENSE
    )
    assert [h.document_id for h in hits] == ["espresso"]
    # Without a mode, a threshold keeps its cosine meaning: the search runs dense.
    result = await retrieval.run_search("corpus", "How is espresso coffee brewed?", 40, Filter(), 0.5)
    assert result.mode is Mode.DENSE and [h.document_id for h in result.hits] == ["espresso"]


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


# Hybrid search: sparse (BM25) vectors beside the dense ones, fused in the store.


async def load_errors(retrieval: Retrieval) -> None:
    await load_corpus(retrieval, "corpus")
    await retrieval.upsert(
        "corpus", [DocumentInput(i, t, metadata={"category": "howto"}) for i, t in ERROR_NOTES]
    )


async def test_new_collections_store_sparse_vectors(retrieval: Retrieval) -> None:
    await load_corpus(retrieval, "corpus")
    info = await retrieval.describe_collection("corpus")
    assert info.spec.sparse == SPARSE_ENCODER
    assert retrieval.describe_service().sparse_encoder == SPARSE_ENCODER


async def test_sparse_search_finds_the_exact_term(retrieval: Retrieval) -> None:
    await load_errors(retrieval)
    for doc_id, _ in ERROR_NOTES:
        code = doc_id.split("_")[1].upper()
        result = await retrieval.run_search(
            "corpus", f"my printer shows {code}, what now?", 5, Filter(), None, SPARSE
        )
        assert result.mode is Mode.SPARSE and not result.fallback_reason
        assert ids(result.hits)[0] == doc_id, (code, ids(result.hits))
        assert result.hits[0].score > result.hits[1].score > 0
        # The heavier weight of a rare term is the store's IDF at work: with all three notes
        # sharing "printer", the code decides.
        hybrid = await retrieval.run_search(
            "corpus", f"my printer shows {code}, what now?", 5, Filter(), None,
            SearchOptions(mode=Mode.HYBRID, sparse_weight=3.0),
        )  # fmt: skip
        assert hybrid.mode is Mode.HYBRID
        assert ids(hybrid.hits)[0] == doc_id, (code, ids(hybrid.hits))


async def test_hybrid_answers_paraphrases_like_dense(retrieval: Retrieval) -> None:
    await load_corpus(retrieval, "corpus")
    for topic, _, question in TOPICS:
        result = await retrieval.run_search("corpus", question, 3, Filter(), None, HYBRID)
        assert result.mode is Mode.HYBRID
        assert ids(result.hits)[0] == topic, (question, ids(result.hits))


async def test_hybrid_is_the_default_and_fuses_both_lists(retrieval: Retrieval) -> None:
    await load_errors(retrieval)
    question = "Printer error E5804: the fuser is too hot"
    default = await retrieval.run_search("corpus", question, 10, Filter())
    assert default.mode is Mode.HYBRID
    dense = ids(await retrieval.search("corpus", question, 10, Filter(), options=DENSE))
    sparse = ids(await retrieval.search("corpus", question, 10, Filter(), options=SPARSE))
    fused = ids(default.hits)
    assert set(fused) <= set(dense) | set(sparse)
    assert fused[0] == "printer_e5804"
    # RRF scores are sums of weight / (k + rank), ranks from 1, fused in the service on every
    # backend (retrieval/fusion.py): first in both lists is 2 / (k + 1).
    assert default.hits[0].score == pytest.approx(2 / (RRF_K + 1), rel=1e-3)
    # A zero weight leaves one list: the ranking is that list's.
    only_dense = SearchOptions(mode=Mode.HYBRID, sparse_weight=0.0)
    assert ids(await retrieval.search("corpus", question, 10, Filter(), options=only_dense)) == dense
    dbsf = await retrieval.run_search(
        "corpus", question, 10, Filter(), None, SearchOptions(mode=Mode.HYBRID, fusion=Fusion.DBSF)
    )
    assert dbsf.mode is Mode.HYBRID and ids(dbsf.hits)[0] == "printer_e5804"
    assert all(a.score >= b.score for a, b in zip(dbsf.hits, dbsf.hits[1:], strict=False))
    # Weights under score fusion: Milvus' WeightedRanker takes them; Qdrant's DBSF would drop them,
    # so there they are refused rather than accepted and ignored.
    weighted = SearchOptions(mode=Mode.HYBRID, fusion=Fusion.DBSF, dense_weight=3.0)
    if retrieval.store.weighted_score_fusion:
        heavy = await retrieval.run_search("corpus", question, 10, Filter(), None, weighted)
        assert heavy.mode is Mode.HYBRID and heavy.hits
    else:
        with pytest.raises(InvalidArgument, match="weights need fusion rrf") as refused:
            await retrieval.run_search("corpus", question, 10, Filter(), None, weighted)
        assert refused.value.field == "hybrid"


async def test_hybrid_and_sparse_obey_filters(retrieval: Retrieval) -> None:
    await load_errors(retrieval)
    science = Filter((Condition("category", "science"),))
    for options in (SPARSE, HYBRID):
        hits = await retrieval.search(
            "corpus", "printer error E2719 volcano lava", 40, science, options=options
        )
        assert hits and set(ids(hits)) <= SCIENCE
        assert ids(hits)[0] == "volcano"


async def test_sparse_search_of_stopwords_only_finds_nothing(retrieval: Retrieval) -> None:
    await load_corpus(retrieval, "corpus")
    assert await retrieval.search("corpus", "what is it and how", 5, Filter(), options=SPARSE) == []
    hybrid = await retrieval.search("corpus", "what is it and how", 5, Filter(), options=HYBRID)
    assert len(hybrid) == 5  # the dense half still answers


async def test_replaced_documents_leave_no_sparse_terms_behind(retrieval: Retrieval) -> None:
    await retrieval.create_collection("docs", Distance.COSINE, IndexParams())
    await retrieval.upsert("docs", [DocumentInput("doc", "The zebracorn manual explains flux capacitors.")])
    await retrieval.upsert("docs", [DocumentInput("other", "Bananas are yellow and sweet.")])
    assert ids(await retrieval.search("docs", "zebracorn", 5, Filter(), options=SPARSE)) == ["doc"]
    await retrieval.upsert("docs", [DocumentInput("doc", "A note about gardening tools.")])
    assert await retrieval.search("docs", "zebracorn", 5, Filter(), options=SPARSE) == []
    await retrieval.delete_documents("docs", ["doc"], Filter())
    assert await retrieval.search("docs", "gardening", 5, Filter(), options=SPARSE) == []


async def test_collections_without_sparse_vectors_keep_working(
    retrieval: Retrieval, store: VectorStore
) -> None:
    """A collection created before hybrid search (dense only) answers dense and hybrid searches,
    and says that hybrid fell back; sparse search there is refused with what to do."""
    await store.create_collection(CollectionSpec("legacy", 384, embedder=retrieval.embedder.name))
    await retrieval.upsert("legacy", [DocumentInput(t, text) for t, text, _ in TOPICS[:10]])
    assert (await retrieval.describe_collection("legacy")).spec.sparse == ""
    result = await retrieval.run_search("legacy", TOPICS[6][2], 3, Filter())
    assert result.mode is Mode.DENSE and "no sparse vectors" in result.fallback_reason
    assert ids(result.hits)[0] == TOPICS[6][0]
    with pytest.raises(FailedPrecondition, match="recreate"):
        await retrieval.search("legacy", TOPICS[6][2], 3, Filter(), options=SPARSE)


async def test_collections_keep_the_sparse_encoder_version_they_were_written_with(
    retrieval: Retrieval, store: VectorStore
) -> None:
    """A bm25-en-v1 collection is written and searched with v1, which keeps question words as
    terms; new collections get v2, which drops them (NLTK's stopwords)."""
    await store.create_collection(
        CollectionSpec("v1", 384, embedder=retrieval.embedder.name, sparse="bm25-en-v1")
    )
    await retrieval.create_collection("v2", Distance.COSINE, IndexParams())
    docs = [DocumentInput("howto", "How do I do what I should?"), DocumentInput("kiln", "A kiln fires clay.")]
    for name in ("v1", "v2"):
        await retrieval.upsert(name, docs)
    question_words = await retrieval.search("v1", "how should I", 2, Filter(), options=SPARSE)
    assert ids(question_words) == ["howto"]
    assert await retrieval.search("v2", "how should I", 2, Filter(), options=SPARSE) == []
    assert ids(await retrieval.search("v2", "firing clay", 2, Filter(), options=SPARSE)) == ["kiln"]


async def test_search_parameters_trade_recall_for_speed(retrieval: Retrieval) -> None:
    """ef (HNSW beam) and nprobe (IVF) are accepted on every backend; tiny values still answer."""
    await retrieval.create_collection("tuned", Distance.COSINE, IndexParams(hnsw_m=8, hnsw_ef_construct=32))
    await retrieval.upsert("tuned", [DocumentInput(t, text) for t, text, _ in TOPICS])
    info = await retrieval.describe_collection("tuned")
    if retrieval.store.backend == "qdrant":
        assert (info.spec.index.hnsw_m, info.spec.index.hnsw_ef_construct) == (8, 32)
    for options in (SearchOptions(mode=Mode.DENSE, ef=16, nprobe=4), SearchOptions(ef=4096, nprobe=64)):
        hits = await retrieval.search("tuned", TOPICS[3][2], 3, Filter(), options=options)
        assert ids(hits)[0] == TOPICS[3][0]
    with pytest.raises(InvalidArgument, match="ef"):
        await retrieval.search("tuned", "chess", 3, Filter(), options=SearchOptions(ef=100_000))
    with pytest.raises(InvalidArgument, match="index parameters"):
        await retrieval.create_collection("huge", Distance.COSINE, IndexParams(hnsw_m=1000))


async def test_vector_queries_are_dense_only(retrieval: Retrieval, embedder: Embedder) -> None:
    await load_corpus(retrieval, "corpus")
    vector = embedder.embed([TOPICS[0][2]])[0].tolist()
    result = await retrieval.run_search("corpus", vector, 1, Filter())
    assert result.mode is Mode.DENSE and ids(result.hits) == [TOPICS[0][0]]
    with pytest.raises(InvalidArgument, match="query text"):
        await retrieval.search("corpus", vector, 1, Filter(), options=HYBRID)


# -- boolean filters, evaluated by the store itself ----------------------------------------------


def eq(key: str, value: object) -> Condition:
    return Condition(key, equals=value)  # type: ignore[arg-type]


async def test_or_filters_match_either_side(retrieval: Retrieval) -> None:
    await load_corpus(retrieval, "corpus")
    either = Filter(should=(eq("category", "science"), eq("year", 2003)))
    hits = await retrieval.search("corpus", "anything at all", 40, either)
    assert {h.document_id for h in hits} == SCIENCE | {TOPICS[3][0]}
    # should beside must: the must holds and at least one should does.
    both = Filter(must=(eq("public", True),), should=(eq("category", "science"), eq("category", "food")))
    hits = await retrieval.search("corpus", "anything at all", 40, both)
    expected = {t for i, (t, _, _) in enumerate(TOPICS) if i % 2 == 0 and t in SCIENCE | FOOD}
    assert {h.document_id for h in hits} == expected


async def test_ne_and_nin_exclude_values_and_keep_missing_keys(retrieval: Retrieval) -> None:
    await load_corpus(retrieval, "corpus")
    await retrieval.upsert("corpus", [DocumentInput("untagged", "A note about food and science.")])
    everything = {t for t, _, _ in TOPICS} | {"untagged"}
    not_food = Filter(must_not=(eq("category", "food"),))
    assert {
        h.document_id for h in await retrieval.search("corpus", "food", 41, not_food)
    } == everything - FOOD
    nin = Filter(must_not=(Condition("category", any_of=("food", "science")),))
    found = {h.document_id for h in await retrieval.search("corpus", "science", 41, nin)}
    assert found == everything - FOOD - SCIENCE
    not_public = Filter(must_not=(eq("public", True),))  # booleans (Qdrant Edge: its flags)
    found = {h.document_id for h in await retrieval.search("corpus", "anything", 41, not_public)}
    assert found == {t for i, (t, _, _) in enumerate(TOPICS) if i % 2 == 1} | {"untagged"}
    not_years = Filter(must_not=(Condition("year", any_of=tuple(range(2000, 2038))),))
    found = {h.document_id for h in await retrieval.search("corpus", "anything", 41, not_years)}
    assert found == {t for t, _, _ in TOPICS[38:]} | {"untagged"}


async def test_nested_and_or_filters(retrieval: Retrieval) -> None:
    await load_corpus(retrieval, "corpus")
    # ((year >= 2010 and public) or category == food) and topic != TOPICS[12], and not
    # (category == science and year < 2020).
    where = Filter(
        must=(
            Filter(
                should=(
                    Filter(must=(Condition("year", range=Range(gte=2010)), eq("public", True))),
                    eq("category", "food"),
                )
            ),
        ),
        must_not=(
            eq("topic", TOPICS[12][0]),
            Filter(must=(eq("category", "science"), Condition("year", range=Range(lt=2020)))),
        ),
    )
    expected = set()
    for i, (topic, _, _) in enumerate(TOPICS):
        meta = {"year": 2000 + i, "public": i % 2 == 0, "category": "science" if topic in SCIENCE else ""}
        left = (meta["year"] >= 2010 and meta["public"]) or topic in FOOD
        right = topic != TOPICS[12][0] and not (meta["category"] == "science" and meta["year"] < 2020)
        if left and right:
            expected.add(topic)
    assert expected and len(expected) < len(TOPICS)
    hits = await retrieval.search("corpus", "anything at all", 40, where)
    assert {h.document_id for h in hits} == expected


async def test_filters_find_matches_beyond_the_first_hundred_candidates(retrieval: Retrieval) -> None:
    """A filter is part of the search, not a cut after it: when the only matches are the least
    similar of 162 chunks, every one of them is found."""
    await retrieval.create_collection("many", Distance.COSINE, IndexParams())
    near = [
        DocumentInput(f"near{i:03d}", f"Apple orchard note {i}: pruning apple trees in winter, row {i}.",
                      metadata={"kind": "near", "n": i})
        for i in range(150)
    ]  # fmt: skip
    far = [
        DocumentInput(
            f"far{i}", f"Submarine {i} dives under the arctic ice with sonar.", metadata={"kind": "far"}
        )
        for i in range(10)
    ] + [DocumentInput(f"bare{i}", f"Volcano {i} erupts basalt lava at night.") for i in range(2)]
    await retrieval.upsert("many", near + far)
    query = "How do I prune apple trees in winter?"
    top = await retrieval.search("many", query, 100, Filter(), options=DENSE)
    assert len(top) == 100 and all(h.document_id.startswith("near") for h in top), (
        "the matches must lie beyond the first 100 by vector score"
    )
    far_ids = {d.id for d in far}
    filters = {
        "or": (Filter(should=(eq("kind", "far"), eq("n", -1))), far_ids - {"bare0", "bare1"}),
        "ne": (Filter(must_not=(eq("kind", "near"),)), far_ids),
        "nin": (Filter(must_not=(Condition("kind", any_of=("near", "other")),)), far_ids),
        "nested": (
            Filter(should=(Filter(must=(eq("kind", "far"),)), Filter(must_not=(eq("kind", "near"),)))),
            far_ids,
        ),
    }
    for name, (where, expected) in filters.items():
        for options in (DENSE, SearchOptions()):
            hits = await retrieval.search("many", query, 20, where, options=options)
            assert {h.document_id for h in hits} == expected, (name, options)
