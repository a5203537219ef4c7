"""Hybrid RRF by document (retrieval/fusion.py), as pure logic on ranked chunk lists. The real
stores' hybrid searches go through it in test_contract.py and tests/rag/test_search_modes.py."""

from __future__ import annotations

from itertools import pairwise

import pytest

from ragway.retrieval.fusion import RRF_K, fuse_by_document
from ragway.retrieval.stores.base import StoredChunk


def chunks(*keys: str) -> list[StoredChunk]:
    """Ranked chunks named "doc:index"."""
    out = []
    for key in keys:
        doc, index = key.split(":")
        out.append(StoredChunk(doc, int(index), 1, key))
    return out


def keys(hits: list[StoredChunk]) -> list[str]:
    return [h.text for h in hits]


def rr(*ranks: int) -> float:
    return sum(1 / (RRF_K + r) for r in ranks)


def test_a_document_both_lists_find_through_different_chunks_leads() -> None:
    # "right" is 1st for dense (its chunk 0) and 2nd for sparse (its chunk 5); the filler and
    # "generic:3" chunks are in both lists, lower. Chunk-level RRF ranks filler chunks above
    # right:0 (f0:0 is 2nd and 6th: 1/7 + 1/11 > 1/6); by document, "right" is what both found.
    filler = [f"f{n}:0" for n in range(4)]
    dense = chunks("right:0", *filler, "generic:3")
    sparse = chunks("other:0", "right:5", *filler[::-1], "generic:3")
    fused = fuse_by_document(dense, sparse, (1.0, 1.0), 10)
    assert keys(fused)[0] == "right:0"
    assert fused[0].score == pytest.approx(rr(1, 2))
    assert keys(fused).index("right:5") > keys(fused).index("generic:3")


def test_a_document_ranks_where_its_best_chunk_is_in_the_chunk_list() -> None:
    # The failure of the former default (issue 26, bench/rag_eval.py --corpus-name git|flask):
    # "answer" is dense's 1st chunk and not in the sparse list; a long "manual" has a chunk 9th in
    # both lists. Ranked among *documents* (manual 3rd for dense, behind answer and a; 2nd for
    # sparse, behind b) with k = 60, manual scored 1/63 + 1/62 > answer's 1/61 and took the lead.
    # At its chunks' places (9th and 9th) with k = 5, it scores 2/14 < 1/6.
    dense = chunks("answer:0", *(f"a:{i}" for i in range(7)), "manual:2")
    sparse = chunks(*(f"b:{i}" for i in range(8)), "manual:7")
    fused = fuse_by_document(dense, sparse, (1.0, 1.0), 20)
    by_key = {h.text: h.score for h in fused}
    assert by_key["answer:0"] == pytest.approx(rr(1))
    assert by_key["manual:2"] == pytest.approx(rr(9, 9))
    assert keys(fused).index("answer:0") < keys(fused).index("manual:2")


def test_a_documents_nth_chunk_scores_its_documents_score_over_n() -> None:
    dense = chunks("a:0", "a:1", "a:2", "b:0")
    fused = fuse_by_document(dense, chunks("b:0"), (1.0, 1.0), 10)
    by_key = {h.text: h.score for h in fused}
    assert by_key["a:1"] == pytest.approx(by_key["a:0"] / 2)
    assert by_key["a:2"] == pytest.approx(by_key["a:0"] / 3)
    # b is 2nd for dense and 1st for sparse: it leads; a's later chunks follow b.
    assert keys(fused) == ["b:0", "a:0", "a:1", "a:2"]
    assert all(x.score >= y.score for x, y in pairwise(fused))


def test_single_chunk_documents_fuse_as_plain_weighted_rrf() -> None:
    dense, sparse = chunks("x:0", "y:0", "z:0"), chunks("z:0", "y:0", "x:0")
    even = fuse_by_document(dense, sparse, (1.0, 1.0), 3)
    assert {h.text: h.score for h in even} == pytest.approx(
        {"x:0": rr(1, 3), "y:0": rr(2, 2), "z:0": rr(3, 1)}
    )
    leaning_sparse = fuse_by_document(dense, sparse, (1.0, 3.0), 3)
    assert keys(leaning_sparse) == ["z:0", "y:0", "x:0"]
    assert keys(fuse_by_document(dense, sparse, (1.0, 1.0), 1)) == ["x:0"]
