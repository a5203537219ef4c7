"""Hybrid RRF by document (retrieval/fusion.py), as pure logic on ranked chunk lists. The real
stores' hybrid searches go through it in test_contract.py and tests/rag/test_search_modes.py."""

from __future__ import annotations

from itertools import pairwise

import pytest

from ragway.retrieval.fusion import fuse_by_document
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


def test_a_document_both_lists_find_through_different_chunks_leads() -> None:
    # "right" is 1st for dense (its chunk 0) and 2nd for sparse (its chunk 5); the filler and
    # "generic:3" chunks are in both lists, lower. Chunk-level RRF ranks every one of those above
    # right:0 (e.g. 1/66 + 1/67 > 1/61); by document, "right" is what both retrievers found.
    filler = [f"f{n}:0" for n in range(4)]
    dense = chunks("right:0", *filler, "generic:3")
    sparse = chunks("other:0", "right:5", *filler[::-1], "generic:3")
    fused = fuse_by_document(dense, sparse, (1.0, 1.0), 10)
    assert keys(fused)[0] == "right:0"
    assert fused[0].score == pytest.approx(1 / 61 + 1 / 62)
    assert keys(fused).index("right:5") > keys(fused).index("generic:3")


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
        {"x:0": 1 / 61 + 1 / 63, "y:0": 2 / 62, "z:0": 1 / 63 + 1 / 61}
    )
    leaning_sparse = fuse_by_document(dense, sparse, (1.0, 3.0), 3)
    assert keys(leaning_sparse) == ["z:0", "y:0", "x:0"]
    assert keys(fuse_by_document(dense, sparse, (1.0, 1.0), 1)) == ["x:0"]
