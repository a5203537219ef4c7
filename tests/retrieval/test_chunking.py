"""Token-aware chunking, measured with the embedder's real tokenizer."""

from __future__ import annotations

import itertools

from ragway.retrieval.chunking import BLOCK_CHARS, chunk_sections
from ragway.retrieval.embedder import Embedder
from ragway.retrieval.parsing import Section


def words(n: int) -> str:
    return " ".join(f"word{i}" for i in range(n))


def test_chunks_respect_the_token_budget_and_overlap(embedder: Embedder) -> None:
    chunks = list(chunk_sections([Section("", words(2000))], embedder, 100, 20))
    assert len(chunks) > 10
    for chunk in chunks:
        assert len(embedder.token_offsets(chunk)) <= 100
    for a, b in itertools.pairwise(chunks):
        shared = set(a.split()) & set(b.split())
        assert shared, "consecutive chunks share their overlap"
    # Every word survives, whole, in some chunk.
    assert set(" ".join(chunks).split()) == set(words(2000).split())


def test_headings_prefix_every_chunk_of_their_section(embedder: Embedder) -> None:
    chunks = list(chunk_sections([Section("Guide > Install", words(600))], embedder, 64, 8))
    assert len(chunks) > 3
    assert all(c.startswith("Guide > Install\n\n") for c in chunks)
    assert all(len(embedder.token_offsets(c)) <= 64 for c in chunks)


def test_a_short_text_is_one_chunk(embedder: Embedder) -> None:
    assert list(chunk_sections([Section("", "Just one line.")], embedder, 200, 40)) == ["Just one line."]


def test_long_texts_are_tokenized_block_by_block_without_losing_words(embedder: Embedder) -> None:
    text = words(4 * BLOCK_CHARS // 8)  # several blocks of text
    calls: list[int] = []

    class Counting:
        def token_offsets(self, piece: str) -> list[tuple[int, int]]:
            calls.append(len(piece))
            return embedder.token_offsets(piece)

    chunks = list(chunk_sections([Section("", text)], Counting(), 200, 40))
    assert max(calls) <= BLOCK_CHARS
    assert len(calls) > 3
    assert set(" ".join(chunks).split()) == set(text.split())


def test_a_giant_word_is_still_cut_into_bounded_chunks(embedder: Embedder) -> None:
    giant = "x" * (3 * BLOCK_CHARS)
    chunks = list(chunk_sections([Section("", f"start {giant} end")], embedder, 200, 40))
    assert "".join(chunks).replace("start", "").replace("end", "").strip() == giant
    assert all(len(c) <= 16_000 for c in chunks)
