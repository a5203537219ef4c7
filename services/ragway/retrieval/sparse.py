"""The sparse (lexical) encoder: BM25 term weights for hybrid search, corpus-independent.

Text is tokenized by bm25s (its word splitter, lower-casing and NLTK's English stopword list) and
stemmed by PyStemmer's Snowball English stemmer, so "connections" matches "connection" and
"SIGKILL" stays one term. Each stemmed term becomes a 31-bit id (blake2b of the term: stable
across processes and versions, and small enough for every backend's sparse index).

A document's weight for a term is BM25's saturated term frequency

    tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / AVG_LEN))

and a query's weight is 1 per distinct term; the inverse document frequency is the store's
job (Qdrant's IDF modifier computes it from the collection as it is at query time), so the
dot product of the two is the BM25 score. This is the scheme fastembed's "Qdrant/bm25" uses;
keeping IDF out of the stored vectors is what makes the encoder independent of the corpus:
nothing has to be refitted when documents come and go. AVG_LEN is a constant for the same
reason.

Encoders are versioned by name, and a collection records the one its vectors were written with:
term ids and weights of two versions do not mix, so every write and query of a collection uses
its own version (`encoder_named`), and new collections get the newest.

- bm25-en-v1: bm25s's short English list (33 words: articles, "is", "of", ...), AVG_LEN 100.
  It keeps the words questions are made of ("how", "do", "I", "what", "which", "can", "does").
  Documents rarely contain them, so their IDF is high and BM25 ranked chunks that happen to say
  "what" or "how do I" above the ones about the question's subject, which pulled hybrid search
  below dense search alone on natural-language questions.
- bm25-en-v2 (default): NLTK's English list (179 words, bm25s's "en_plus"), which drops those;
  AVG_LEN 50, the measured mean of a default chunk (200 embedder tokens: 53 terms on the Python
  documentation, 45-60 on prose) instead of v1's guess of 100.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import bm25s
import Stemmer

from ragway.retrieval.stores.base import SparseVector

K1 = 1.2
B = 0.75


@dataclass(frozen=True)
class Version:
    stopwords: str  # a bm25s stopword list
    avg_len: float  # BM25's average document length, in terms


VERSIONS = {
    "bm25-en-v1": Version(stopwords="en", avg_len=100.0),
    "bm25-en-v2": Version(stopwords="en_plus", avg_len=50.0),
}
NAME = "bm25-en-v2"  # what new collections get


@lru_cache(maxsize=1 << 18)
def term_id(term: str) -> int:
    """A stable 31-bit id for a stemmed term (collisions are rare and only merge two terms)."""
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "little") & 0x7FFFFFFF


class SparseEncoder:
    """Texts to BM25 sparse vectors (documents) and term sets (queries) of one version; thread-safe."""

    def __init__(self, name: str = NAME) -> None:
        self.name = name
        self.version = VERSIONS[name]
        self._stemmer = Stemmer.Stemmer("english")

    def terms(self, texts: Sequence[str]) -> list[list[str]]:
        """Stemmed terms of each text, stopwords removed, in order."""
        tokenized = bm25s.tokenize(
            list(texts),
            stopwords=self.version.stopwords,
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=False,
        )
        return [list(terms) for terms in tokenized]

    def documents(self, texts: Sequence[str]) -> list[SparseVector]:
        return [_weights(Counter(terms), len(terms), self.version.avg_len) for terms in self.terms(texts)]

    def query(self, text: str) -> SparseVector:
        distinct = set(self.terms([text])[0])
        return _vector({term_id(t): 1.0 for t in distinct})


@lru_cache(maxsize=len(VERSIONS))
def encoder_named(name: str) -> SparseEncoder | None:
    """The encoder of a collection's recorded version; None for "" (no sparse vectors) or a
    version this service does not know."""
    return SparseEncoder(name) if name in VERSIONS else None


def _weights(counts: Counter[str], length: int, avg_len: float) -> SparseVector:
    norm = K1 * (1 - B + B * length / avg_len)
    weights: dict[int, float] = {}
    for term, tf in counts.items():
        key = term_id(term)
        weights[key] = weights.get(key, 0.0) + tf * (K1 + 1) / (tf + norm)
    return _vector(weights)


def _vector(weights: dict[int, float]) -> SparseVector:
    ordered = sorted(weights.items())
    return SparseVector(tuple(k for k, _ in ordered), tuple(v for _, v in ordered))
