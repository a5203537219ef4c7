"""Token-aware chunking with overlap: cut sections into windows of embedder tokens.

Windows are counted in the embedder's own tokens, so a chunk never exceeds what the model reads
(all-MiniLM-L6-v2 truncates at 256), and consecutive chunks share `overlap` tokens so a sentence
cut at a boundary is whole in one of them. Window ends snap back to a word start, so no word is
split between chunks. Text is tokenized block by block: a 20 MB document is never tokenized (or
held as token offsets) all at once, and chunks come out as a stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from ragway.retrieval.parsing import Section

BLOCK_CHARS = 32_000
# A chunk's text is capped in characters too: a "token" can be a huge unknown word, and Milvus
# keeps at most 65,535 bytes of text per chunk (4 bytes per character at worst).
MAX_CHUNK_CHARS = 16_000
_HEADING_SEPARATOR = "\n\n"


class Tokenizer(Protocol):
    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """(start, end) character offsets of each token of `text`, without special tokens."""
        ...


def _starts_word(offsets: list[tuple[int, int]], k: int) -> bool:
    return k == 0 or k >= len(offsets) or offsets[k][0] > offsets[k - 1][1]


def _snap(offsets: list[tuple[int, int]], k: int, lowest: int) -> int:
    """Move k back to the nearest word start, but not below `lowest`."""
    j = k
    while j > lowest and not _starts_word(offsets, j):
        j -= 1
    return j if j > lowest else k


def _windows(text: str, tokenizer: Tokenizer, size: int, overlap: int) -> Iterator[str]:
    """Yield windows of `size` tokens of `text`, consecutive ones sharing about `overlap` tokens."""
    pos, block = 0, BLOCK_CHARS
    while pos < len(text):
        end = min(len(text), pos + block)
        if end < len(text):
            cut = text.rfind(" ", pos + block // 2, end)
            cut = max(cut, text.rfind("\n", pos + block // 2, end))
            end = cut if cut > pos else end
        last = end >= len(text)
        offsets = tokenizer.token_offsets(text[pos:end])
        if not offsets:
            return
        i, emitted = 0, False
        while True:
            if i + size >= len(offsets) and not last:
                # The window runs into the next block: carry it over, tokenized with that block.
                break
            j = len(offsets) if i + size >= len(offsets) else _snap(offsets, i + size, i + size // 2)
            yield text[pos + offsets[i][0] : pos + offsets[j - 1][1]]
            emitted = True
            if j >= len(offsets):
                return
            i = max(_snap(offsets, j - overlap, i + 1) if overlap else j, i + 1)
        if emitted:
            pos, block = pos + offsets[i][0], BLOCK_CHARS
        else:
            block *= 2  # A block with fewer than `size` tokens (huge words): read a larger one.


def _split_long(text: str) -> Iterator[str]:
    for start in range(0, len(text), MAX_CHUNK_CHARS):
        yield text[start : start + MAX_CHUNK_CHARS]


def chunk_sections(
    sections: Iterable[Section], tokenizer: Tokenizer, chunk_tokens: int, overlap_tokens: int
) -> Iterator[str]:
    """Chunk texts in document order, each prefixed with its section's heading path."""
    for section in sections:
        prefix = section.heading + _HEADING_SEPARATOR if section.heading else ""
        budget = chunk_tokens - len(tokenizer.token_offsets(prefix)) if prefix else chunk_tokens
        if budget < chunk_tokens // 2:  # A heading path longer than half a chunk is not repeated.
            prefix, budget = "", chunk_tokens
        overlap = min(overlap_tokens, budget // 2)
        for window in _windows(section.text, tokenizer, budget, overlap):
            for piece in _split_long(window.strip()):
                if piece:
                    yield prefix + piece
